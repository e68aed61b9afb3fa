package sim

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
)

// probeGuest creates and starts a Probe guest with vcpus vCPUs and attaches
// a pager to it.
func probeGuest(t *testing.T, vcpus int, opts ...Option) (*Host, hypervisor.DomID, hypervisor.Pager) {
	t.Helper()
	h := newTestHost(t, opts...)
	id := create(t, h, testSpec(Probe, vcpus))
	must(t, "Unpause", h.Unpause(id))
	p, err := h.EnablePaging(id)
	must(t, "EnablePaging", err)
	return h, id, p
}

func TestEvictAfterTouch(t *testing.T) {
	const g = hypervisor.GFN(0x123)
	for _, tt := range []struct {
		name  string
		touch bool // the guest touches g between Nominate and Evict
		write bool
		want  error
	}{
		{name: "untouched", want: nil},
		{name: "read", touch: true, want: hypervisor.ErrBusy},
		{name: "written", touch: true, write: true, want: hypervisor.ErrBusy},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, id, p := probeGuest(t, 1)
			must(t, "Nominate", p.Nominate(g))
			var reqs []hypervisor.Request
			if tt.touch {
				must(t, "Touch", h.Touch(id, 0, g, tt.write))
				reqs = requests(t, p, 1)
				want := hypervisor.Request{VCPU: 0, GFN: g, Flags: hypervisor.FlagVCPUPaused, PagingFlags: hypervisor.PagingEvictFail}
				if reqs[0] != want {
					t.Errorf("request after touching a nominated gfn = %+v, want %+v", reqs[0], want)
				}
			}
			if err := p.Evict(g); !errors.Is(err, tt.want) {
				t.Errorf("Evict(%#x) = %v, want %v", g, err, tt.want)
			}
			if tt.touch {
				must(t, "Resume", p.Resume(reqs...))
				waitSteps(t, h, id, 0, 1)
				if err := p.Evict(g); !errors.Is(err, hypervisor.ErrBusy) {
					t.Errorf("Evict(%#x) after resume = %v, want %v", g, err, hypervisor.ErrBusy)
				}
				must(t, "Close", p.Close())
			}
		})
	}
}

func TestEvictNotNominated(t *testing.T) {
	_, _, p := probeGuest(t, 1)
	for _, tt := range []struct {
		gfn  hypervisor.GFN
		want error
	}{
		{0x10, hypervisor.ErrInvalid},       // RAM, never nominated
		{0xa10, hypervisor.ErrNotPopulated}, // in the hole
		{0x100000, hypervisor.ErrInvalid},   // beyond the gfn space
	} {
		if err := p.Evict(tt.gfn); !errors.Is(err, tt.want) {
			t.Errorf("Evict(%#x) = %v, want %v", tt.gfn, err, tt.want)
		}
	}
}

func TestFaultLoadResume(t *testing.T) {
	const g = hypervisor.GFN(0x345)
	h, id, p := probeGuest(t, 2)
	content := evict(t, h, id, p, g)
	if info, err := h.Info(id); err != nil || info.PagedPages != 1 {
		t.Errorf("Info().PagedPages = %d, %v, want 1, nil", info.PagedPages, err)
	}
	must(t, "Touch", h.Touch(id, 1, g, false))
	reqs := requests(t, p, 1)
	want := hypervisor.Request{VCPU: 1, GFN: g, Flags: hypervisor.FlagVCPUPaused}
	if reqs[0] != want {
		t.Fatalf("Requests() = %+v, want [%+v]", reqs, want)
	}
	time.Sleep(time.Millisecond)
	if n := steps(t, h, id, 1); n != 0 {
		t.Errorf("steps of the faulting vCPU before the response = %d, want 0", n)
	}
	must(t, "Load", p.Load(g, content))
	must(t, "Resume", p.Resume(reqs...))
	waitSteps(t, h, id, 1, 1)
	got := make([]byte, hypervisor.PageSize)
	must(t, "ReadPages", h.ReadPages(id, []hypervisor.GFN{g}, got))
	if !bytes.Equal(got, content) {
		t.Errorf("content of gfn %#x after load differs from before eviction", g)
	}
	prog, err := h.Progress(id)
	must(t, "Progress", err)
	if prog.Blocked[1] <= 0 || prog.Blocked[0] != 0 {
		t.Errorf("Progress().Blocked = %v, want [0, >0]", prog.Blocked)
	}
	must(t, "Close", p.Close())
}

func TestOneLoadResumesAll(t *testing.T) {
	const g, vcpus = hypervisor.GFN(0x400), 4
	h, id, p := probeGuest(t, vcpus)
	content := evict(t, h, id, p, g)
	for v := range vcpus {
		must(t, "Touch", h.Touch(id, v, g, v%2 == 0))
	}
	reqs := requests(t, p, vcpus)
	var who []int
	for _, r := range reqs {
		if r.GFN != g || r.Flags != hypervisor.FlagVCPUPaused {
			t.Errorf("request %+v, want gfn %#x with FlagVCPUPaused", r, g)
		}
		who = append(who, int(r.VCPU))
	}
	slices.Sort(who)
	if !slices.Equal(who, []int{0, 1, 2, 3}) {
		t.Errorf("vCPUs of the requests = %v, want [0 1 2 3]", who)
	}
	must(t, "Load", p.Load(g, content))
	must(t, "Resume", p.Resume(reqs...))
	for v := range vcpus {
		waitSteps(t, h, id, v, 1)
	}
	must(t, "Close", p.Close())
}

func TestRingSlots(t *testing.T) {
	const vcpus = hypervisor.RingSlots + 1
	h, id, p := probeGuest(t, vcpus)
	gfns := make([]hypervisor.GFN, vcpus)
	for v := range gfns {
		gfns[v] = hypervisor.GFN(0x200 + v)
	}
	content := evict(t, h, id, p, gfns...)
	for v, g := range gfns {
		must(t, "Touch", h.Touch(id, v, g, false))
	}
	first := requests(t, p, hypervisor.RingSlots)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if more, err := p.Requests(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Requests() with a full ring = %+v, %v, want %v", more, err, context.DeadlineExceeded)
	}
	waiting := map[uint32]bool{}
	for v := range vcpus {
		waiting[uint32(v)] = true
	}
	for _, r := range first {
		delete(waiting, r.VCPU)
	}
	if len(waiting) != 1 {
		t.Fatalf("vCPUs without a request = %v, want exactly one", waiting)
	}
	// Answering one request frees its slot for the waiting vCPU.
	r := first[0]
	must(t, "Load", p.Load(r.GFN, content[int(r.VCPU)*hypervisor.PageSize:][:hypervisor.PageSize]))
	must(t, "Resume", p.Resume(r))
	ninth := requests(t, p, 1)[0]
	if !waiting[ninth.VCPU] {
		t.Errorf("request after a slot was freed from vCPU %d, want the waiting one %v", ninth.VCPU, waiting)
	}
	rest := append(first[1:], ninth)
	for _, r := range rest {
		must(t, "Load", p.Load(r.GFN, content[int(r.VCPU)*hypervisor.PageSize:][:hypervisor.PageSize]))
	}
	must(t, "Resume", p.Resume(rest...))
	for v := range vcpus {
		waitSteps(t, h, id, v, 1)
	}
	must(t, "Close", p.Close())
}

func TestTouchPagedWithoutPagerCrashes(t *testing.T) {
	const g = hypervisor.GFN(0x77)
	h, id, p := probeGuest(t, 1)
	evict(t, h, id, p, g)
	if err := p.Close(); !errors.Is(err, hypervisor.ErrBusy) {
		t.Errorf("Close() with a paged gfn = %v, want %v", err, hypervisor.ErrBusy)
	}
	must(t, "ForceDisablePaging", h.ForceDisablePaging(id))
	must(t, "Touch", h.Touch(id, 0, g, false))
	waitFor(t, "crash", func() bool {
		info, err := h.Info(id)
		return err == nil && info.State == hypervisor.StateCrashed
	})
	if err := h.Unpause(id); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Errorf("Unpause() of a crashed domain = %v, want %v", err, hypervisor.ErrInvalid)
	}
	must(t, "Destroy", h.Destroy(id))
}

func TestPagerErrors(t *testing.T) {
	const paged, ram = hypervisor.GFN(0x300), hypervisor.GFN(0x301)
	h, id, p := probeGuest(t, 1)
	content := evict(t, h, id, p, paged)
	buf := make([]byte, hypervisor.PageSize)
	for _, tt := range []struct {
		name string
		err  error
		want error
	}{
		{"second EnablePaging", func() error { _, err := h.EnablePaging(id); return err }(), hypervisor.ErrBusy},
		{"Load of a RAM gfn", p.Load(ram, buf), hypervisor.ErrNotPopulated},
		{"Load of a short page", p.Load(paged, buf[:10]), hypervisor.ErrInvalid},
		{"Nominate of a paged gfn", p.Nominate(paged), hypervisor.ErrBusy},
		{"Nominate of a hole", p.Nominate(0xa20), hypervisor.ErrNotPopulated},
		{"WritePages of a paged gfn", h.WritePages(id, []hypervisor.GFN{paged}, buf), hypervisor.ErrPaged},
		{"Resume of an unknown request", p.Resume(hypervisor.Request{GFN: ram, Flags: hypervisor.FlagVCPUPaused}), hypervisor.ErrInvalid},
		{"Populate of a paged gfn", h.Populate(id, []hypervisor.GFN{paged}), hypervisor.ErrBusy},
	} {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s = %v, want %v", tt.name, tt.err, tt.want)
		}
	}
	// The foreign map above posted one request, pausing nothing.
	err := h.ReadPages(id, []hypervisor.GFN{paged}, buf)
	var pe *hypervisor.PageError
	if !errors.As(err, &pe) || pe.GFN != paged || !errors.Is(err, hypervisor.ErrPaged) {
		t.Errorf("ReadPages(paged) = %v, want a *PageError for gfn %#x wrapping %v", err, paged, hypervisor.ErrPaged)
	}
	reqs := requests(t, p, 1)
	if want := (hypervisor.Request{GFN: paged, Flags: hypervisor.FlagForeign}); reqs[0] != want {
		t.Errorf("request of a foreign map = %+v, want %+v", reqs[0], want)
	}
	must(t, "Load", p.Load(paged, content))
	must(t, "Resume", p.Resume(reqs...))
	must(t, "Close", p.Close())
	if _, err := p.Requests(context.Background()); !errors.Is(err, hypervisor.ErrClosed) {
		t.Errorf("Requests() after Close = %v, want %v", err, hypervisor.ErrClosed)
	}
	if err := p.Nominate(ram); !errors.Is(err, hypervisor.ErrClosed) {
		t.Errorf("Nominate() after Close = %v, want %v", err, hypervisor.ErrClosed)
	}
}

func TestSaveCPUBusyWhileFaulting(t *testing.T) {
	const g = hypervisor.GFN(0x500)
	h, id, p := probeGuest(t, 2)
	content := evict(t, h, id, p, g)
	must(t, "Touch", h.Touch(id, 1, g, true))
	reqs := requests(t, p, 1)
	must(t, "Pause", h.Pause(id))
	if _, err := h.SaveCPU(id); !errors.Is(err, hypervisor.ErrBusy) {
		t.Errorf("SaveCPU() with a vCPU blocked on a fault = %v, want %v", err, hypervisor.ErrBusy)
	}
	must(t, "Load", p.Load(g, content))
	must(t, "Resume", p.Resume(reqs...))
	time.Sleep(time.Millisecond)
	if n := steps(t, h, id, 1); n != 0 {
		t.Errorf("steps of a resumed vCPU of a paused domain = %d, want 0", n)
	}
	must(t, "Unpause", h.Unpause(id))
	waitSteps(t, h, id, 1, 1)
	must(t, "Pause", h.Pause(id))
	if _, err := h.SaveCPU(id); err != nil {
		t.Errorf("SaveCPU() with every vCPU parked = %v, want nil", err)
	}
}

// TestPagerRequestsContext checks that Requests honours its context.
func TestPagerRequestsContext(t *testing.T) {
	_, _, p := probeGuest(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Requests(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Requests(cancelled) = %v, want %v", err, context.Canceled)
	}
}
