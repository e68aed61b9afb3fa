package sim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
)

// workloads is every workload model with parameters that exercise it in a
// few thousand steps.
var workloads = []struct {
	name string
	w    WorkloadSpec
}{
	{"idle", WorkloadSpec{Kind: Idle}},
	{"stress-seq", WorkloadSpec{Kind: Stress, WorkingSet: 1024, WritePercent: 70}},
	{"stress-random", WorkloadSpec{Kind: Stress, WorkingSet: 2048, Random: true, WritePercent: 30}},
	{"kcompile", WorkloadSpec{Kind: KernelCompile}},
	{"web", WorkloadSpec{Kind: WebServer, WorkingSet: 512}},
	{"qsort", WorkloadSpec{Kind: Quicksort, WorkingSet: 8}},
}

const (
	detVCPUs = 3    // vCPUs of the determinism guests
	detSteps = 3000 // steps each vCPU runs
	detSplit = 1100 // step at which a run is migrated
)

// detSpec is the guest of the determinism tests.
func detSpec(w WorkloadSpec, stopAt uint64) GuestSpec {
	s := testSpec(w.Kind, detVCPUs)
	s.Workload = w
	s.StopAt = stopAt
	return s
}

// runDone unpauses id and waits until it reaches its StopAt.
func runDone(t testing.TB, h *Host, id hypervisor.DomID) {
	t.Helper()
	must(t, "Unpause", h.Unpause(id))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must(t, "WaitDone", h.WaitDone(ctx, id))
}

// reference runs spec uninterrupted to its StopAt and returns its digest.
func reference(t testing.TB, spec GuestSpec) hypervisor.Digest {
	t.Helper()
	dg, err := ReferenceDigest(context.Background(), spec)
	must(t, "ReferenceDigest", err)
	return dg
}

func TestDeterministicRuns(t *testing.T) {
	for _, tt := range workloads {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spec := detSpec(tt.w, detSteps)
			a, b := reference(t, spec), reference(t, spec)
			if a != b {
				t.Errorf("digests of two runs: %v and %v, want equal", a, b)
			}
			spec.Seed++
			if c := reference(t, spec); c == a {
				t.Errorf("digest with another seed = %v, want a different one", c)
			}
		})
	}
}

// TestBalloonKeepsDigest lowers the balloon target while the guest runs:
// ballooning releases only free (zero) pages, so the digest is unchanged.
func TestBalloonKeepsDigest(t *testing.T) {
	for _, tt := range workloads {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spec := detSpec(tt.w, detSteps)
			want := reference(t, spec)
			h := newTestHost(t)
			id := create(t, h, spec)
			must(t, "Unpause", h.Unpause(id))
			home, _ := h.DomainPath(id)
			before, err := h.Info(id)
			must(t, "Info", err)
			must(t, "StoreWrite", h.StoreWrite(home+"/memory/target", fmt.Sprint(2500*4)))
			waitFor(t, "balloon inflated", func() bool {
				info, err := h.Info(id)
				return err == nil && info.TotPages < before.TotPages
			})
			must(t, "WaitDone", h.WaitDone(context.Background(), id))
			if got, err := h.Digest(id); err != nil || got != want {
				t.Errorf("Digest() of a ballooned run = %v, %v, want %v, nil", got, err, want)
			}
		})
	}
}

// source runs spec to detSplit steps and returns it paused with its context.
func source(t testing.TB, spec GuestSpec) (*Host, hypervisor.DomID, hypervisor.CPUState) {
	t.Helper()
	h := newTestHost(t)
	spec.StopAt = detSplit
	id := create(t, h, spec)
	runDone(t, h, id)
	must(t, "Suspend", h.Suspend(context.Background(), id, 10*time.Second))
	cpu, err := h.SaveCPU(id)
	must(t, "SaveCPU", err)
	return h, id, cpu
}

// shell creates the destination of src's domain on a new host, with
// gfns that src has not populated depopulated, and src's context loaded. It
// returns the gfns whose pages migrate: src's populated ones but the
// toolstack's ring pages.
func shell(t testing.TB, src *Host, sid hypervisor.DomID, cpu hypervisor.CPUState) (*Host, hypervisor.DomID, *hypervisor.Bitmap) {
	t.Helper()
	cfg, err := src.Config(sid)
	must(t, "Config", err)
	dst := newTestHost(t)
	did, err := dst.CreateShell(cfg)
	must(t, "CreateShell", err)
	srcPop, err := src.Populated(sid)
	must(t, "Populated(src)", err)
	dstPop, err := dst.Populated(did)
	must(t, "Populated(dst)", err)
	extra := dstPop.Clone()
	extra.AndNot(srcPop)
	must(t, "Depopulate", dst.Depopulate(did, extra.GFNs()))
	must(t, "RestoreCPU", dst.RestoreCPU(did, cpu))
	must(t, "SetStopAt", dst.SetStopAt(did, detSteps))
	for _, g := range cfg.SpecialPages {
		srcPop.Clear(g)
	}
	return dst, did, srcPop
}

// TestDeterministicMigration pauses a run at detSplit, copies its memory and
// context to a shell on a second host, and runs that on to detSteps.
func TestDeterministicMigration(t *testing.T) {
	for _, tt := range workloads {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spec := detSpec(tt.w, detSteps)
			want := reference(t, spec)
			src, sid, cpu := source(t, spec)
			dst, did, pop := shell(t, src, sid, cpu)
			gfns := pop.GFNs()
			buf := make([]byte, len(gfns)*hypervisor.PageSize)
			must(t, "ReadPages", src.ReadPages(sid, gfns, buf))
			must(t, "WritePages", dst.WritePages(did, gfns, buf))
			runDone(t, dst, did)
			if got, err := dst.Digest(did); err != nil || got != want {
				t.Errorf("Digest() after migration = %v, %v, want %v, nil", got, err, want)
			}
		})
	}
}

// TestDeterministicPostCopy is the post-copy model in miniature: the shell
// has every gfn evicted, a fault server loads the pages the guest touches
// from the source, and a background loop pushes the rest.
func TestDeterministicPostCopy(t *testing.T) {
	for _, tt := range workloads {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spec := detSpec(tt.w, detSteps)
			want := reference(t, spec)
			src, sid, cpu := source(t, spec)
			dst, did, pop := shell(t, src, sid, cpu)
			p, err := dst.EnablePaging(did)
			must(t, "EnablePaging", err)
			gfns := pop.GFNs()
			for _, g := range gfns {
				must(t, "Nominate", p.Nominate(g))
				must(t, "Evict", p.Evict(g))
			}
			if _, err := dst.Digest(did); !errors.Is(err, hypervisor.ErrPaged) {
				t.Errorf("Digest() of an evicted shell = %v, want %v", err, hypervisor.ErrPaged)
			}

			var loaded sync.Map // gfn -> struct{}: claimed by a loader
			load := func(g hypervisor.GFN) error {
				if _, dup := loaded.LoadOrStore(g, struct{}{}); dup {
					return nil
				}
				page := make([]byte, hypervisor.PageSize)
				if err := src.ReadPages(sid, []hypervisor.GFN{g}, page); err != nil {
					return err
				}
				return p.Load(g, page)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var faults atomic.Int64
			serveErr := make(chan error, 1)
			go func() {
				for {
					reqs, err := p.Requests(ctx)
					if err != nil {
						serveErr <- err
						return
					}
					for _, r := range reqs {
						faults.Add(1)
						if err := load(r.GFN); err != nil {
							serveErr <- err
							return
						}
					}
					// A gfn claimed by the pusher may not be loaded yet:
					// resuming early only makes the vCPU fault again.
					if err := p.Resume(reqs...); err != nil {
						serveErr <- err
						return
					}
				}
			}()
			pushErr := make(chan error, 1)
			go func() {
				// Start late and from the top, so the guest faults often.
				time.Sleep(20 * time.Millisecond)
				for i := len(gfns) - 1; i >= 0; i-- {
					if err := load(gfns[i]); err != nil {
						pushErr <- err
						return
					}
				}
				pushErr <- nil
			}()
			runDone(t, dst, did)
			must(t, "push", <-pushErr)
			waitFor(t, "every gfn loaded", func() bool {
				info, err := dst.Info(did)
				return err == nil && info.PagedPages == 0
			})
			waitFor(t, "pager detached", func() bool { return p.Close() == nil })
			cancel()
			if err := <-serveErr; !errors.Is(err, hypervisor.ErrClosed) && !errors.Is(err, context.Canceled) {
				t.Errorf("fault server: %v", err)
			}
			if got, err := dst.Digest(did); err != nil || got != want {
				t.Errorf("Digest() after post-copy = %v, %v, want %v, nil", got, err, want)
			}
			t.Logf("%d faults served", faults.Load())
		})
	}
}
