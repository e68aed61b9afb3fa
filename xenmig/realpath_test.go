package xenmig_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenctrl/sim"
	"github.com/xenmig/xenmig/xenmig"
)

// What a real Xen host expects of a migration (docs/XEN.md), on the
// simulator's model of it.

// countingHost counts the suspends asked of it and can fail a restore or
// report a device model.
type countingHost struct {
	*sim.Host
	suspends    atomic.Int64
	failRestore bool
	deviceModel bool
	slowPaging  time.Duration // EnablePaging takes this long first, as a real shell's preparation does
}

func (h *countingHost) EnablePaging(id hypervisor.DomID) (hypervisor.Pager, error) {
	time.Sleep(h.slowPaging)
	return h.Host.EnablePaging(id)
}

func (h *countingHost) Suspend(ctx context.Context, id hypervisor.DomID, timeout time.Duration) error {
	h.suspends.Add(1)
	return h.Host.Suspend(ctx, id, timeout)
}

func (h *countingHost) RestoreCPU(id hypervisor.DomID, s hypervisor.CPUState) error {
	if h.failRestore {
		return errors.New("injected restore failure")
	}
	return h.Host.RestoreCPU(id, s)
}

func (h *countingHost) Info(id hypervisor.DomID) (hypervisor.DomainInfo, error) {
	info, err := h.Host.Info(id)
	info.DeviceModel = h.deviceModel
	return info, err
}

// TestSameHostMigration: source and destination are one host, as in `xl
// migrate` to localhost: the incoming copy is NAME--incoming until the
// switchover, then takes the name; the memory is exactly the unmigrated run's.
func TestSameHostMigration(t *testing.T) {
	spec := guest("local", sim.KernelCompile, 3000)
	want := reference(t, spec)
	for _, mode := range []xenmig.Mode{xenmig.PreCopy, xenmig.PostCopy, xenmig.Hybrid} {
		t.Run(string(mode), func(t *testing.T) {
			h := sim.NewHost()
			defer h.Close()
			dom := boot(t, h, spec, 300)
			dst := receiveOn(t, h, xenmig.Transport{})
			res := dst.migrate(t, h, dom, plan(mode, xenmig.PushPrepaging), "")
			checkDigest(t, res, want)
			id, err := h.Lookup(spec.Name)
			if err != nil || id != dst.inc.Domain || id == dom {
				t.Errorf("Lookup(%q) = %d, %v; want the incoming domain %d", spec.Name, id, err, dst.inc.Domain)
			}
			if _, err := h.Lookup(spec.Name + xenmig.IncomingSuffix); !errors.Is(err, hypervisor.ErrNotFound) {
				t.Errorf("Lookup(%q) = %v, want ErrNotFound", spec.Name+xenmig.IncomingSuffix, err)
			}
		})
	}
}

// TestRefusedUpFront: a guest the migration cannot move, or a destination
// that cannot run it, is refused before the source suspends anything.
func TestRefusedUpFront(t *testing.T) {
	spec := guest("refused", sim.Idle, 2000)
	for _, tc := range []struct {
		name     string
		src      func(*testing.T, *countingHost)
		dst      []sim.Option
		want     error
		connects bool // the sender gets as far as the destination
	}{
		{"HVM guest with a device model", func(_ *testing.T, h *countingHost) { h.deviceModel = true }, nil, hypervisor.ErrGuestUnsupported, false},
		{"an earlier migration's source copy holds the away name", func(t *testing.T, h *countingHost) {
			away := spec
			away.Name += xenmig.MigratedAwaySuffix
			if _, err := h.CreateDomain(away); err != nil {
				t.Fatalf("CreateDomain(%s) = %v", away.Name, err)
			}
		}, nil, hypervisor.ErrBusy, false},
		{"destination lacks a CPU feature", nil, []sim.Option{sim.WithCPUFeatures(1)}, hypervisor.ErrIncompatible, true},
		{"post-copy to a hypervisor without mem_paging", nil, []sim.Option{sim.WithoutPaging()}, hypervisor.ErrPagingUnsupported, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &countingHost{Host: sim.NewHost()}
			defer src.Close()
			dom := boot(t, src.Host, spec, 100)
			if tc.src != nil {
				tc.src(t, src)
			}
			// A slow preparation lets the early push fill the connections
			// before the destination refuses: its abort must still arrive.
			dstHost := &countingHost{Host: sim.NewHost(tc.dst...), slowPaging: 300 * time.Millisecond}
			defer dstHost.Close()
			dst := receiveOn(t, dstHost, xenmig.Transport{})
			_, err := xenmig.Migrate(context.Background(), src, dom, dst.addr, plan(xenmig.PostCopy, xenmig.PushPrepaging), testLog("src"))
			if !errors.Is(err, tc.want) || errors.Is(err, xenmig.ErrCommitted) {
				t.Errorf("Migrate() = %v, want %v before the switchover", err, tc.want)
			}
			if n := src.suspends.Load(); n != 0 {
				t.Errorf("the source was asked to suspend %d times, want 0", n)
			}
			if tc.connects {
				dst.wait(t)
			}
			if doms, _ := dstHost.Domains(); len(doms) != 0 {
				t.Errorf("the destination kept %d domains, want none", len(doms))
			}
			src.deviceModel = false
			runsOnSource(t, src.Host, dom, spec)
		})
	}
}

// TestFailureAfterSuspend: the destination fails after the guest suspended
// (restoring its vCPU state): the suspend is cancelled and the guest goes on
// at the source with its memory intact.
func TestFailureAfterSuspend(t *testing.T) {
	spec := guest("cancel", sim.KernelCompile, 3000)
	for _, mode := range []xenmig.Mode{xenmig.PreCopy, xenmig.PostCopy} {
		t.Run(string(mode), func(t *testing.T) {
			src := &countingHost{Host: sim.NewHost()}
			defer src.Close()
			dom := boot(t, src.Host, spec, 300)
			dstHost := &countingHost{Host: sim.NewHost(), failRestore: true}
			defer dstHost.Close()
			dst := receiveOn(t, dstHost, xenmig.Transport{})
			_, err := xenmig.Migrate(context.Background(), src, dom, dst.addr, plan(mode, xenmig.PushPrepaging), testLog("src"))
			if err == nil || errors.Is(err, xenmig.ErrCommitted) {
				t.Fatalf("Migrate() = %v, want a failure before the switchover", err)
			}
			if n := src.suspends.Load(); n != 1 {
				t.Errorf("suspends = %d, want 1", n)
			}
			runsOnSource(t, src.Host, dom, spec)
		})
	}
}

// TestGuestIgnoresSuspend: a guest that never suspends (no PV drivers) is
// left running, and the migration fails saying so.
func TestGuestIgnoresSuspend(t *testing.T) {
	spec := guest("deaf", sim.Idle, 3000)
	spec.NoSuspend = true
	src := sim.NewHost()
	defer src.Close()
	dom := boot(t, src, spec, 100)
	dst := receiveOne(t, xenmig.Transport{})
	p := plan(xenmig.PreCopy, xenmig.PushPrepaging)
	p.SuspendTimeout = 100 * time.Millisecond
	_, err := xenmig.Migrate(context.Background(), src, dom, dst.addr, p, testLog("src"))
	if !errors.Is(err, hypervisor.ErrNotSuspended) || errors.Is(err, xenmig.ErrCommitted) {
		t.Errorf("Migrate() = %v, want %v before the switchover", err, hypervisor.ErrNotSuspended)
	}
	runsOnSource(t, src, dom, spec)
}

// busyPager refuses to page out some gfns, as Xen's nominate does for pages
// a dom0 process holds mapped.
type busyPager struct {
	hypervisor.Pager
	busy func(hypervisor.GFN) bool
}

func (p busyPager) Nominate(g hypervisor.GFN) error {
	if p.busy(g) {
		return &hypervisor.PageError{Op: "nominate", GFN: g, Err: hypervisor.ErrBusy}
	}
	return p.Pager.Nominate(g)
}

type busyHost struct {
	*sim.Host
	busy func(hypervisor.GFN) bool
}

func (h busyHost) EnablePaging(id hypervisor.DomID) (hypervisor.Pager, error) {
	p, err := h.Host.EnablePaging(id)
	if err != nil {
		return nil, err
	}
	return busyPager{p, h.busy}, nil
}

// TestUnpageableGFNs: gfns the destination cannot page out are not a failure:
// they come in the downtime, and the memory is exactly right.
func TestUnpageableGFNs(t *testing.T) {
	spec := guest("busy", sim.Stress, 4000)
	want := reference(t, spec)
	for _, mode := range []xenmig.Mode{xenmig.PostCopy, xenmig.Hybrid} {
		t.Run(string(mode), func(t *testing.T) {
			src := sim.NewHost()
			defer src.Close()
			dom := boot(t, src, spec, 500)
			dstHost := busyHost{Host: sim.NewHost(), busy: func(g hypervisor.GFN) bool { return g%97 == 5 }}
			defer dstHost.Close()
			dst := receiveOn(t, dstHost, xenmig.Transport{})
			res := dst.migrate(t, src, dom, plan(mode, xenmig.PushPrepaging), "")
			checkDigest(t, res, want)
		})
	}
}

// TestResumeSet: a guest that registers its vcpu_info again as it resumes
// (every Linux PVH guest on real Xen: the lab saw one panic in
// register_vcpu_info on a paged-out gfn) moves in every mode: the pages its
// suspend wrote are installed in the downtime, before it runs.
func TestResumeSet(t *testing.T) {
	spec := guest("resumeset", sim.KernelCompile, 3000)
	spec.PVResume = true
	want := reference(t, spec)
	for _, tc := range []struct {
		name  string
		mode  xenmig.Mode
		early bool
	}{
		{"precopy", xenmig.PreCopy, false},
		{"postcopy", xenmig.PostCopy, false},
		{"postcopy-early", xenmig.PostCopy, true},
		{"hybrid", xenmig.Hybrid, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := sim.NewHost()
			defer src.Close()
			dom := boot(t, src, spec, 300)
			dstHost := sim.NewHost()
			defer dstHost.Close()
			dst := receiveOn(t, dstHost, xenmig.Transport{})
			p := plan(tc.mode, xenmig.PushPrepaging)
			p.EarlyPush = tc.early
			res := dst.migrate(t, src, dom, p, "")
			checkDigest(t, res, want)
			switch paging := tc.mode != xenmig.PreCopy; {
			case paging && res.ResumePages == 0:
				t.Errorf("ResumePages = 0, want the pages the suspend wrote")
			case !paging && res.ResumePages != 0:
				t.Errorf("ResumePages = %d, want 0 in pre-copy (its stop-and-copy sends them)", res.ResumePages)
			}
		})
	}
}

// crashingHost crashes each domain it unpauses, as a guest that panics in
// its resume path does: the vCPU touches a hole, and Unpause returns once
// Xen has crashed the domain.
type crashingHost struct {
	*sim.Host
	hole hypervisor.GFN
}

func (h crashingHost) Unpause(id hypervisor.DomID) error {
	if err := h.Host.Unpause(id); err != nil {
		return err
	}
	if err := h.Touch(id, 0, h.hole, false); err != nil {
		return err
	}
	for {
		if info, err := h.Info(id); err != nil || info.State == hypervisor.StateCrashed {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGuestCrashOnDestination: a guest that dies on the destination during
// post-copy ends the migration at once, with an error that says so on both
// sides, rather than a post-copy into a dead domain.
func TestGuestCrashOnDestination(t *testing.T) {
	spec := guest("crash", sim.Probe, 0)
	src := sim.NewHost()
	defer src.Close()
	dom := boot(t, src, spec, 0)
	dstHost := crashingHost{Host: sim.NewHost(), hole: hypervisor.GFN(spec.Holes[0].Start)}
	defer dstHost.Close()
	dst := receiveOn(t, dstHost, xenmig.Transport{})
	p := plan(xenmig.PostCopy, xenmig.PushSequential)
	p.ReportGuest = false
	_, err := xenmig.Migrate(context.Background(), src, dom, dst.addr, p, testLog("src"))
	if !errors.Is(err, xenmig.ErrCommitted) || !errors.Is(err, xenmig.ErrAborted) || !strings.Contains(err.Error(), "crashed") {
		t.Errorf("Migrate() = %v, want ErrCommitted and ErrAborted, naming the crash", err)
	}
	dst.wait(t)
	if !errors.Is(dst.err, xenmig.ErrGuestStopped) {
		t.Errorf("Receive() = %v, want ErrGuestStopped", dst.err)
	}
	if info, err := src.Info(dom); err != nil || info.Name != spec.Name+xenmig.MigratedAwaySuffix {
		t.Errorf("source Info(%d) = %+v, %v; want its copy kept as %s", dom, info, err, spec.Name+xenmig.MigratedAwaySuffix)
	}
}
