//go:build xen && linux

package xenctrl

/*
#include "xenshim.h"
*/
import "C"

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
)

// suspendPoll is how often Suspend looks at the domain's state.
const suspendPoll = 10 * time.Millisecond

// Suspend asks the guest to suspend itself as libxl does
// (tools/libs/light/libxl_dom_suspend.c): through its suspend event channel
// when it advertises one in xenstore (device/suspend/event-channel:
// xenevtchn_bind_interdomain and xenevtchn_notify), otherwise by writing
// control/shutdown = "suspend" (xs_write). It then waits, polling
// xc_domain_getinfolist, for XEN_DOMINF_shutdown with SHUTDOWN_suspend. When
// timeout passes first (or ctx ends) a request the guest has not taken is
// withdrawn and the error wraps hypervisor.ErrNotSuspended.
func (h *Host) Suspend(ctx context.Context, d hypervisor.DomID, timeout time.Duration) error {
	info, err := h.Info(d)
	if err != nil {
		return err
	}
	switch info.State {
	case hypervisor.StateSuspended:
		return nil
	case hypervisor.StateRunning, hypervisor.StatePaused:
	default:
		return fmt.Errorf("xenctrl: suspend domain %d: it is %v: %w", d, info.State, hypervisor.ErrInvalid)
	}
	home, err := h.DomainPath(d)
	if err != nil {
		return err
	}
	key := home + "/control/shutdown"
	how := "xenstore control/shutdown"
	if port, err := h.StoreRead(home + "/device/suspend/event-channel"); err == nil && port != "" {
		if err := h.notifySuspend(d, port); err != nil {
			return err
		}
		how = "suspend event channel " + port
	} else if err := h.StoreWrite(key, "suspend"); err != nil {
		return fmt.Errorf("xenctrl: suspend domain %d: %w", d, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(suspendPoll)
	defer tick.Stop()
	for {
		info, err := h.Info(d)
		if err != nil {
			return fmt.Errorf("xenctrl: suspend domain %d: %w", d, err)
		}
		switch info.State {
		case hypervisor.StateSuspended:
			return nil
		case hypervisor.StateCrashed, hypervisor.StateShutdown, hypervisor.StateDying:
			return fmt.Errorf("xenctrl: suspend domain %d: it is %v instead: %w", d, info.State, hypervisor.ErrNotSuspended)
		}
		select {
		case <-ctx.Done():
			if v, err := h.StoreRead(key); err == nil && v == "suspend" {
				h.StoreWrite(key, "") // not taken: withdraw it, as libxl does
			}
			if info, err := h.Info(d); err == nil && info.State == hypervisor.StateSuspended {
				return nil
			}
			return fmt.Errorf("xenctrl: suspend domain %d (asked through %s): the guest did not suspend within %v; "+
				"are its PV drivers running (xenbus, control/shutdown watch)? %w: %w", d, how, timeout, hypervisor.ErrNotSuspended, ctx.Err())
		case <-tick.C:
		}
	}
}

// notifySuspend signals the guest's suspend event channel: xenevtchn_open,
// xenevtchn_bind_interdomain(d, port), xenevtchn_notify, xenevtchn_unbind,
// xenevtchn_close (libxl keeps it bound for the whole save; one notify is
// all a migration needs).
func (h *Host) notifySuspend(d hypervisor.DomID, port string) error {
	rport, err := strconv.ParseUint(port, 10, 32)
	if err != nil {
		return fmt.Errorf("xenctrl: suspend domain %d: device/suspend/event-channel %q: %w", d, port, hypervisor.ErrInvalid)
	}
	xce, cerr := C.xenevtchn_open(h.logger, 0)
	if xce == nil {
		return newError(classDomain, "xenevtchn_open", d, cerr)
	}
	defer C.xenevtchn_close(xce)
	lport, cerr := C.xenevtchn_bind_interdomain(xce, C.uint32_t(d), C.evtchn_port_t(rport))
	if lport < 0 {
		e := newError(classDomain, "xenevtchn_bind_interdomain", d, cerr)
		e.Detail = "the guest's suspend event channel " + port
		return e
	}
	defer C.xenevtchn_unbind(xce, C.evtchn_port_t(lport))
	if rc, cerr := C.xenevtchn_notify(xce, C.evtchn_port_t(lport)); rc != 0 {
		return newError(classDomain, "xenevtchn_notify", d, cerr)
	}
	return nil
}

// CancelSuspend resumes a suspended domain where it stopped, as
// libxl_domain_resume(ctx, d, suspend_cancel=1) does for a PVH guest:
// xc_domain_resume(xch, d, fast=1), which makes the guest's suspend
// hypercall return 1 ("cancelled") and issues XEN_DOMCTL_resumedomain, then
// xs_resume_domain, which tells xenstored the domain is back.
func (h *Host) CancelSuspend(d hypervisor.DomID) error {
	info, err := h.Info(d)
	if err != nil {
		return err
	}
	if info.State != hypervisor.StateSuspended {
		return fmt.Errorf("xenctrl: cancel suspend of domain %d: it is %v: %w", d, info.State, hypervisor.ErrInvalid)
	}
	if rc, cerr := C.xc_domain_resume(h.xch, C.uint32_t(d), 1); rc != 0 {
		return newError(classDomain, "xc_domain_resume", d, cerr)
	}
	if ok, cerr := C.xs_resume_domain(h.xs, C.uint(d)); !ok {
		return storeError("xs_resume_domain", fmt.Sprintf("domain %d", d), cerr)
	}
	return nil
}
