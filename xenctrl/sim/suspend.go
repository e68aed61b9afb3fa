package sim

import (
	"context"
	"fmt"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
)

// The guest's suspend, as Linux's drivers/xen/manage.c does it: a xenbus
// watch on control/shutdown; "suspend" is acknowledged by clearing the key,
// then every vCPU stops (stop_machine) and the domain shuts down with reason
// suspend. Its context records that it stopped in its suspend hypercall: in
// a new domain that call returns "resumed in a new domain" and the guest
// re-makes its event channels, timers and frontends; on the same domain,
// after CancelSuspend, it returns "cancelled" and the guest goes on.

// suspend states of a domain (domain.suspend).
const (
	suspendNone       = iota
	suspendInProgress // the guest acknowledged and is stopping its vCPUs
	suspendDone       // shut down with SHUTDOWN_suspend
)

// shutdownKey is the guest's control/shutdown key.
func shutdownKey(id hypervisor.DomID) string { return domainPath(id) + "/control/shutdown" }

// watchShutdown is the guest's handler of control/shutdown requests.
func (d *domain) watchShutdown(reqs <-chan string) {
	defer d.wg.Done()
	key := shutdownKey(d.id)
	for {
		select {
		case <-d.halted:
			return
		case _, ok := <-reqs:
			if !ok {
				return
			}
		}
		if v, err := d.h.store.read(key); err != nil || v != "suspend" || d.spec.NoSuspend {
			continue
		}
		if !d.waitRunning() {
			return
		}
		if err := d.h.store.write(key, ""); err != nil { // the acknowledgement
			d.log.WithError(err).Warn("suspend: acknowledge")
		}
		d.suspendSelf()
	}
}

// waitRunning blocks while the domain is paused (its guest code, this
// handler included, cannot run); false once the domain is gone.
func (d *domain) waitRunning() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.pauseCount > 0 || !d.hasContext {
		if d.dying || d.crashed {
			return false
		}
		d.runCond.Wait()
	}
	return !d.dying && !d.crashed
}

// suspendSelf stops every vCPU at its next step boundary and shuts the domain
// down with reason suspend.
func (d *domain) suspendSelf() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.suspend != suspendNone || d.dying || d.crashed {
		return
	}
	d.suspend = suspendInProgress
	d.updateGate()
	for d.running > 0 {
		d.idleCond.Wait()
	}
	if d.spec.PVResume {
		// The event that carried the request was handled on each vCPU:
		// the handler cleared a flag in its vcpu_info (a write that
		// leaves the page as it was).
		for i := range d.vcpus {
			d.mem.markDirty(d.vcpuInfo(i))
		}
	}
	d.suspend = suspendDone
	d.log.Info("guest suspended")
}

// vcpuInfo returns the gfn of vCPU i's vcpu_info (GuestSpec.PVResume): in
// the kernel's static pages, which are never ballooned out.
func (d *domain) vcpuInfo(i int) hypervisor.GFN {
	s := d.lay.static
	return s[len(s)-1-i%len(s)]
}

// registerVCPUInfo is the guest's first act on resuming in a new domain
// (GuestSpec.PVResume), as Linux's xen_vcpu_setup: VCPUOP_register_vcpu_info
// for each vCPU, which Xen 4.17 (map_vcpu_info: get_page_from_gfn without
// P2M_ALLOC) fails with EINVAL on a gfn that is not present, posting no
// paging request. d.mu must be held.
func (d *domain) registerVCPUInfo() error {
	if !d.spec.PVResume {
		return nil
	}
	for i := range d.vcpus {
		if g := d.vcpuInfo(i); d.mem.state(g) != stRAM {
			return fmt.Errorf("register_vcpu_info failed: cpu=%d err=-22 (its vcpu_info, gfn %#x, is not present)", i, uint64(g))
		}
	}
	return nil
}

// Suspend writes control/shutdown = "suspend", as libxl does for a guest
// without a suspend event channel, and waits until the guest has shut down
// with reason suspend. If it has not within timeout, or ctx ends first, the
// request is withdrawn (if the guest has not taken it yet) and the error
// wraps hypervisor.ErrNotSuspended.
func (h *Host) Suspend(ctx context.Context, id hypervisor.DomID, timeout time.Duration) error {
	d, err := h.acquire(id)
	if err != nil {
		return fmt.Errorf("suspend: %w", err)
	}
	defer d.release()
	switch d.state() {
	case hypervisor.StateSuspended:
		return nil
	case hypervisor.StateRunning, hypervisor.StatePaused:
	default:
		return fmt.Errorf("suspend domain %d: it is %v: %w", id, d.state(), hypervisor.ErrInvalid)
	}
	key := shutdownKey(id)
	if err := h.store.write(key, "suspend"); err != nil {
		return fmt.Errorf("suspend domain %d: %w", id, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		switch d.state() {
		case hypervisor.StateSuspended:
			return nil
		case hypervisor.StateCrashed, hypervisor.StateDying:
			return fmt.Errorf("suspend domain %d: it is %v: %w", id, d.state(), hypervisor.ErrNotSuspended)
		}
		select {
		case <-ctx.Done():
			if v, err := h.store.read(key); err == nil && v == "suspend" {
				h.store.write(key, "") // never taken: withdraw it
			}
			if d.state() == hypervisor.StateSuspended {
				return nil
			}
			return fmt.Errorf("suspend domain %d: the guest did not suspend within %v (are its PV drivers running?): %w: %w",
				id, timeout, hypervisor.ErrNotSuspended, ctx.Err())
		case <-tick.C:
		}
	}
}

// CancelSuspend resumes a suspended domain where it stopped: its suspend
// returns "cancelled" and its vCPUs go on (unless it is also paused).
func (h *Host) CancelSuspend(id hypervisor.DomID) error {
	d, err := h.acquire(id)
	if err != nil {
		return fmt.Errorf("cancel suspend: %w", err)
	}
	defer d.release()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.suspend != suspendDone || d.dying || d.crashed {
		return fmt.Errorf("cancel suspend of domain %d: not suspended: %w", id, hypervisor.ErrInvalid)
	}
	d.suspend = suspendNone
	d.updateGate()
	d.runCond.Broadcast()
	for _, v := range d.vcpus {
		v.wake()
	}
	d.kickBalloon()
	d.log.Info("suspend cancelled; guest resumed")
	return nil
}
