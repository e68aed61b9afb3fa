package sim

import (
	"bytes"
	"slices"
	"testing"

	"github.com/xenmig/xenmig/hypervisor"
)

func TestDirtyLogExact(t *testing.T) {
	h := newTestHost(t)
	id := create(t, h, testSpec(Probe, 2))
	must(t, "Unpause", h.Unpause(id))
	must(t, "EnableLogDirty", h.EnableLogDirty(id))
	if err := h.EnableLogDirty(id); err == nil {
		t.Errorf("second EnableLogDirty() = nil, want an error")
	}
	var done [2]uint64
	for _, tt := range []struct {
		name   string
		writes []hypervisor.GFN // by vCPU i%2
		reads  []hypervisor.GFN
		clean  bool
		want   []hypervisor.GFN
	}{
		{name: "first round", writes: []hypervisor.GFN{1, 64, 65, 0xfff}, reads: []hypervisor.GFN{2, 3}, clean: true, want: []hypervisor.GFN{1, 64, 65, 0xfff}},
		{name: "nothing written", reads: []hypervisor.GFN{1, 64}, clean: true, want: nil},
		{name: "peek", writes: []hypervisor.GFN{7, 7, 8}, clean: false, want: []hypervisor.GFN{7, 8}},
		{name: "peek keeps the log", writes: []hypervisor.GFN{9}, clean: true, want: []hypervisor.GFN{7, 8, 9}},
		{name: "after clean", writes: []hypervisor.GFN{100}, clean: true, want: []hypervisor.GFN{100}},
	} {
		for i, g := range tt.writes {
			must(t, "Touch", h.Touch(id, i%2, g, true))
			done[i%2]++
		}
		for i, g := range tt.reads {
			must(t, "Touch", h.Touch(id, i%2, g, false))
			done[i%2]++
		}
		waitSteps(t, h, id, 0, done[0])
		waitSteps(t, h, id, 1, done[1])
		log, err := h.DirtyLog(id, tt.clean)
		must(t, "DirtyLog", err)
		if got := log.GFNs(); !slices.Equal(got, tt.want) && len(got)+len(tt.want) > 0 {
			t.Errorf("%s: DirtyLog(%v) = %v, want %v", tt.name, tt.clean, got, tt.want)
		}
	}
	must(t, "DisableLogDirty", h.DisableLogDirty(id))
	if _, err := h.DirtyLog(id, true); err == nil {
		t.Errorf("DirtyLog() after DisableLogDirty = nil error, want one")
	}
}

// TestDirtyLogMissesNothing runs a writing workload while cleaning the log
// over and over: every page whose content changed must have been reported.
func TestDirtyLogMissesNothing(t *testing.T) {
	h := newTestHost(t)
	spec := testSpec(Stress, 2)
	spec.Workload.WritePercent = 100
	spec.Workload.Random = true
	spec.StopAt = 20000
	id := create(t, h, spec)
	pop, err := h.Populated(id)
	must(t, "Populated", err)
	gfns := pop.GFNs()
	before := make([]byte, len(gfns)*hypervisor.PageSize)
	must(t, "ReadPages", h.ReadPages(id, gfns, before))
	must(t, "EnableLogDirty", h.EnableLogDirty(id))
	must(t, "Unpause", h.Unpause(id))
	seen := hypervisor.NewBitmap(uint64(len(pop.Words())) * 64)
	rounds := 0
	for ; ; rounds++ {
		p, err := h.Progress(id)
		must(t, "Progress", err)
		log, err := h.DirtyLog(id, true)
		must(t, "DirtyLog", err)
		log.ForEach(seen.Set)
		if p.Done {
			break
		}
	}
	must(t, "Pause", h.Pause(id))
	log, err := h.DirtyLog(id, true)
	must(t, "DirtyLog", err)
	log.ForEach(seen.Set)
	after := make([]byte, len(before))
	must(t, "ReadPages", h.ReadPages(id, gfns, after))
	changed := 0
	for i, g := range gfns {
		off := i * hypervisor.PageSize
		if !bytes.Equal(before[off:off+hypervisor.PageSize], after[off:off+hypervisor.PageSize]) {
			changed++
			if !seen.Test(g) {
				t.Errorf("gfn %#x changed but was never reported dirty", g)
			}
		}
	}
	if changed == 0 {
		t.Errorf("no page changed: the workload wrote nothing")
	}
	t.Logf("%d pages changed, %d reported over %d rounds", changed, seen.Count(), rounds)
}
