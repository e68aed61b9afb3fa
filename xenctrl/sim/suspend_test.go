package sim

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
)

func stateOf(t *testing.T, h *Host, id hypervisor.DomID) hypervisor.State {
	t.Helper()
	info, err := h.Info(id)
	must(t, "Info", err)
	return info.State
}

// shellOf saves the stopped domain sid's vCPU state and builds its shell on
// a new host, as a migration's two ends do.
func shellOf(t *testing.T, src *Host, sid hypervisor.DomID) (*Host, hypervisor.DomID, hypervisor.CPUState) {
	t.Helper()
	cpu, err := src.SaveCPU(sid)
	must(t, "SaveCPU", err)
	cfg, err := src.Config(sid)
	must(t, "Config", err)
	dst := newTestHost(t)
	did, err := dst.CreateShell(cfg)
	must(t, "CreateShell", err)
	return dst, did, cpu
}

// TestSuspendAndCancel: a running guest suspends when asked, stays stopped
// through an unpause (Xen's unpause does not end a shutdown), and goes on
// once its suspend is cancelled.
func TestSuspendAndCancel(t *testing.T) {
	h := newTestHost(t)
	spec := testSpec(Stress, 2)
	spec.StopAt = 2000
	spec.Workload.Rate = 20000
	id := create(t, h, spec)
	must(t, "Unpause", h.Unpause(id))
	waitFor(t, "the guest to run", func() bool { return steps(t, h, id, 0) > 100 })
	must(t, "Suspend", h.Suspend(context.Background(), id, 10*time.Second))
	if got := stateOf(t, h, id); got != hypervisor.StateSuspended {
		t.Fatalf("state after Suspend = %v, want %v", got, hypervisor.StateSuspended)
	}
	if v, err := h.StoreRead(shutdownKey(id)); err != nil || v != "" {
		t.Errorf("control/shutdown after the suspend = %q, %v, want \"\" (acknowledged)", v, err)
	}
	if _, err := h.SaveCPU(id); err != nil {
		t.Errorf("SaveCPU() of a suspended domain = %v, want nil", err)
	}
	at := steps(t, h, id, 0)
	must(t, "Pause", h.Pause(id))
	must(t, "Unpause", h.Unpause(id))
	time.Sleep(20 * time.Millisecond)
	if got := steps(t, h, id, 0); got != at || stateOf(t, h, id) != hypervisor.StateSuspended {
		t.Errorf("after an unpause of the suspended domain: steps %d -> %d, state %v; want it still suspended", at, got, stateOf(t, h, id))
	}
	must(t, "CancelSuspend", h.CancelSuspend(id))
	if err := h.CancelSuspend(id); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Errorf("CancelSuspend() of a running domain = %v, want %v", err, hypervisor.ErrInvalid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must(t, "WaitDone", h.WaitDone(ctx, id))
}

// TestSuspendIgnored: a guest that never answers is left running and the
// request withdrawn.
func TestSuspendIgnored(t *testing.T) {
	h := newTestHost(t)
	spec := testSpec(Idle, 1)
	spec.NoSuspend = true
	id := create(t, h, spec)
	must(t, "Unpause", h.Unpause(id))
	err := h.Suspend(context.Background(), id, 50*time.Millisecond)
	if !errors.Is(err, hypervisor.ErrNotSuspended) {
		t.Errorf("Suspend() of a guest without PV drivers = %v, want %v", err, hypervisor.ErrNotSuspended)
	}
	if got := stateOf(t, h, id); got != hypervisor.StateRunning {
		t.Errorf("state = %v, want %v", got, hypervisor.StateRunning)
	}
	if v, _ := h.StoreRead(shutdownKey(id)); v != "" {
		t.Errorf("control/shutdown = %q after the timeout, want the request withdrawn", v)
	}
}

// TestResumeNeedsSuspend: a context restored into a new domain resumes only
// if it was saved suspended; a merely paused guest dies there (a real one
// hangs: no event channels, timer or devices).
func TestResumeNeedsSuspend(t *testing.T) {
	for _, suspend := range []bool{true, false} {
		src := newTestHost(t)
		spec := testSpec(Idle, 1)
		sid := create(t, src, spec)
		must(t, "Unpause", src.Unpause(sid))
		if suspend {
			must(t, "Suspend", src.Suspend(context.Background(), sid, 10*time.Second))
		} else {
			must(t, "Pause", src.Pause(sid))
		}
		dst, did, cpu := shellOf(t, src, sid)
		must(t, "RestoreCPU", dst.RestoreCPU(did, cpu))
		must(t, "Unpause", dst.Unpause(did))
		want := hypervisor.StateRunning
		if !suspend {
			want = hypervisor.StateCrashed
		}
		if got := stateOf(t, dst, did); got != want {
			t.Errorf("saved suspended %v: state in the new domain = %v, want %v", suspend, got, want)
		}
	}
}

// TestShellPolicyAndRings: a shell keeps the guest's UUID and CPU policy,
// refuses a policy its host cannot offer, and its ring pages are the
// toolstack's: busy for a pager, and overwriting them kills the guest.
func TestShellPolicyAndRings(t *testing.T) {
	src := newTestHost(t, WithCPUFeatures(0b111))
	sid := create(t, src, testSpec(Idle, 1))
	cfg, err := src.Config(sid)
	must(t, "Config", err)
	info, err := src.Info(sid)
	must(t, "Info", err)
	if cfg.UUID == "" || cfg.UUID != info.UUID || len(cfg.SpecialPages) != specialPages {
		t.Fatalf("Config() = uuid %q special %v, Info uuid %q; want the same uuid and %d special pages", cfg.UUID, cfg.SpecialPages, info.UUID, specialPages)
	}
	if _, err := newTestHost(t, WithCPUFeatures(0b011)).CreateShell(cfg); !errors.Is(err, hypervisor.ErrIncompatible) {
		t.Errorf("CreateShell() on a host without feature 2 = %v, want %v", err, hypervisor.ErrIncompatible)
	}
	dst := newTestHost(t, WithCPUFeatures(0b1111))
	did, err := dst.CreateShell(cfg)
	must(t, "CreateShell", err)
	shellCfg, err := dst.Config(did)
	must(t, "Config(shell)", err)
	if shellCfg.UUID != cfg.UUID || string(shellCfg.CPUPolicy) != string(cfg.CPUPolicy) {
		t.Errorf("shell uuid %q policy %x, want the guest's %q %x", shellCfg.UUID, shellCfg.CPUPolicy, cfg.UUID, cfg.CPUPolicy)
	}
	p, err := dst.EnablePaging(did)
	must(t, "EnablePaging", err)
	if err := p.Nominate(cfg.SpecialPages[0]); !errors.Is(err, hypervisor.ErrBusy) {
		t.Errorf("Nominate(ring page) = %v, want %v", err, hypervisor.ErrBusy)
	}
	must(t, "Close", p.Close())
	must(t, "Pause", src.Pause(sid)) // the source's rings, copied over the shell's
	page := make([]byte, hypervisor.PageSize)
	must(t, "ReadPages", src.ReadPages(sid, cfg.SpecialPages[:1], page))
	must(t, "WritePages", dst.WritePages(did, cfg.SpecialPages[:1], page))
	cpu, err := src.SaveCPU(sid)
	must(t, "SaveCPU", err)
	must(t, "RestoreCPU", dst.RestoreCPU(did, cpu))
	must(t, "Unpause", dst.Unpause(did))
	if got := stateOf(t, dst, did); got != hypervisor.StateCrashed {
		t.Errorf("state after its rings were overwritten = %v, want %v", got, hypervisor.StateCrashed)
	}
}

// TestPVResume: a guest that registers its vcpu_info again on resume
// (GuestSpec.PVResume) writes each vCPU's during its suspend, so a dirty log
// cleaned just before the suspend names them; in a new domain it crashes if
// one is paged out when it first runs, and resumes if it is present.
func TestPVResume(t *testing.T) {
	for _, paged := range []bool{false, true} {
		src := newTestHost(t)
		spec := testSpec(Idle, 2)
		spec.PVResume = true
		sid := create(t, src, spec)
		if info, err := src.Info(sid); err != nil || !info.PagedResumeFails {
			t.Fatalf("Info() = %+v, %v; want PagedResumeFails", info, err)
		}
		must(t, "Unpause", src.Unpause(sid))
		must(t, "EnableLogDirty", src.EnableLogDirty(sid))
		_, err := src.DirtyLog(sid, true)
		must(t, "DirtyLog(clean)", err)
		must(t, "Suspend", src.Suspend(context.Background(), sid, 10*time.Second))
		dirty, err := src.DirtyLog(sid, true)
		must(t, "DirtyLog(at the suspend)", err)
		d, err := src.acquire(sid)
		must(t, "acquire", err)
		infos := []hypervisor.GFN{d.vcpuInfo(0), d.vcpuInfo(1)}
		d.release()
		for i, g := range infos {
			if !dirty.Test(g) {
				t.Errorf("vCPU %d's vcpu_info %#x not in the dirty log of the suspend", i, uint64(g))
			}
		}
		dst, did, cpu := shellOf(t, src, sid)
		p, err := dst.EnablePaging(did)
		must(t, "EnablePaging", err)
		must(t, "Nominate", p.Nominate(infos[1]))
		must(t, "Evict", p.Evict(infos[1]))
		if !paged {
			must(t, "Load", p.Load(infos[1], make([]byte, hypervisor.PageSize)))
		}
		must(t, "RestoreCPU", dst.RestoreCPU(did, cpu))
		must(t, "Unpause", dst.Unpause(did))
		want := hypervisor.StateRunning
		if paged {
			want = hypervisor.StateCrashed
		}
		if got := stateOf(t, dst, did); got != want {
			t.Errorf("vcpu_info paged out %v: state in the new domain = %v, want %v", paged, got, want)
		}
		if !paged {
			must(t, "Close", p.Close())
		}
	}
}
