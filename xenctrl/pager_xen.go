//go:build xen && linux

package xenctrl

/*
#include "xenshim.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xenmig/xenmig/hypervisor"
)

var _ hypervisor.Pager = (*Pager)(nil)

// Pager is a mem_paging agent attached to one domain over the vm_event ring
// (see Host.EnablePaging). It implements hypervisor.Pager; its methods are
// safe for concurrent use.
//
// The ring is one response per request: every request Requests returns must
// be passed to Resume exactly once, even one that paused no vCPU (a foreign
// mapper's, or DROP_PAGE), or its slot is never freed and the 8-slot ring
// fills up.
type Pager struct {
	h       *Host
	d       hypervisor.DomID
	ringGFN hypervisor.GFN
	page    unsafe.Pointer // the ring page, mapped
	xce     *C.xenevtchn_handle
	lport   C.evtchn_port_t
	fd      int // xenevtchn_fd, polled for the guest's notifications

	mu   sync.Mutex // the ring
	ring *backRing

	reqMu  sync.Mutex // one Requests at a time; Close takes it to tear down
	closed atomic.Bool
}

// EnablePaging attaches a pager to d by the ring set-up of xenpaging and
// libxc's xc_vm_event_enable, in nine steps: (1) xc_domain_pause; (2)
// xc_hvm_param_get(HVM_PARAM_PAGING_RING_PFN), which must be non-zero; (3)
// xc_domain_populate_physmap_exact of that gfn if it is not populated; (4)
// xenforeignmemory_map of it read-write; (5) xc_mem_paging_enable, which
// returns Xen's event channel port; (6) xenevtchn_open and
// xenevtchn_bind_interdomain; (7) SHARED_RING_INIT and BACK_RING_INIT on the
// page; (8) xc_domain_decrease_reservation_exact of the ring gfn, so the
// guest cannot reach the ring; (9) xc_domain_unpause. Any failure undoes the
// steps done.
//
// Errors: ErrPagingUnsupported (ENOSYS: Xen built without CONFIG_MEM_PAGING,
// with the fix in the message), ErrGuestUnsupported (HVM dom0, no HAP,
// passthrough, PoD, no ring page), ErrBusy (a pager is already attached).
func (h *Host) EnablePaging(d hypervisor.DomID) (hypervisor.Pager, error) {
	p, err := h.enablePaging(d)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (h *Host) enablePaging(d hypervisor.DomID) (p *Pager, err error) {
	dom := C.uint32_t(d)
	// 1. Pause, so no request races the set-up.
	if err := h.Pause(d); err != nil {
		return nil, err
	}
	defer func() { // 9. Unpause, whatever happened.
		if uerr := h.Unpause(d); uerr != nil && err == nil {
			p.teardown(true)
			p, err = nil, uerr
		}
	}()

	// 2. The ring gfn the domain builder reserved.
	var pfn C.uint64_t
	if rc, cerr := C.xc_hvm_param_get(h.xch, dom, hvmParamPagingRingPFN, &pfn); rc != 0 {
		e := newError(classDomain, "xc_hvm_param_get", d, cerr)
		e.Detail = "HVM_PARAM_PAGING_RING_PFN"
		return nil, e
	}
	if pfn == 0 {
		return nil, &Error{Call: "xc_hvm_param_get", Dom: d, HasDom: true,
			Kind: hypervisor.ErrGuestUnsupported, Detail: MsgNoRingPage}
	}
	ringGFN := hypervisor.GFN(pfn)
	xpfn := C.xen_pfn_t(pfn)

	// 3 and 4. Map the ring gfn, populating it first if it has no memory.
	page, populated, err := h.mapRing(d, xpfn)
	if err != nil {
		return nil, err
	}
	undoMap := func() {
		C.xenforeignmemory_unmap(h.fmem, page, 1)
		if populated {
			C.xc_domain_decrease_reservation_exact(h.xch, dom, 1, 0, &xpfn)
		}
	}

	// 5. Enable paging: Xen maps the page and initialises its front ring.
	var port C.uint32_t
	if rc, cerr := C.xc_mem_paging_enable(h.xch, dom, &port); rc != 0 {
		undoMap()
		return nil, newError(classPagingEnable, "xc_mem_paging_enable", d, cerr)
	}
	disable := func() { C.xc_mem_paging_disable(h.xch, dom) }

	// 6. Bind the event channel Xen notifies on.
	xce, cerr := C.xenevtchn_open(h.logger, 0)
	if xce == nil {
		disable()
		undoMap()
		return nil, newError(classDomain, "xenevtchn_open", d, cerr)
	}
	lport, cerr := C.xenevtchn_bind_interdomain(xce, dom, C.evtchn_port_t(port))
	if lport < 0 {
		C.xenevtchn_close(xce)
		disable()
		undoMap()
		e := newError(classDomain, "xenevtchn_bind_interdomain", d, cerr)
		e.Detail = fmt.Sprintf("remote port %d", port)
		return nil, e
	}

	// 7. The back end of the ring, in Go over the shared page.
	p = &Pager{
		h: h, d: d, ringGFN: ringGFN, page: page, xce: xce,
		lport: C.evtchn_port_t(lport), fd: int(C.xenevtchn_fd(xce)),
		ring: initBackRing(unsafe.Slice((*byte)(page), hypervisor.PageSize)),
	}

	// 8. Take the ring gfn away from the guest.
	if rc, cerr := C.xc_domain_decrease_reservation_exact(h.xch, dom, 1, 0, &xpfn); rc != 0 {
		e := newError(classDomain, "xc_domain_decrease_reservation_exact", d, cerr).withGFN(ringGFN)
		e.Detail = "removing the paging ring page from the guest"
		C.xenevtchn_unbind(xce, p.lport)
		C.xenevtchn_close(xce)
		disable()
		C.xenforeignmemory_unmap(h.fmem, page, 1)
		return nil, e
	}
	return p, nil
}

// mapRing maps the ring gfn read-write, populating it first if the map
// shows it has no memory (steps 3 and 4).
func (h *Host) mapRing(d hypervisor.DomID, pfn C.xen_pfn_t) (unsafe.Pointer, bool, error) {
	dom := C.uint32_t(d)
	var e1 C.int
	page, _ := C.xenforeignmemory_map(h.fmem, dom, C.PROT_READ|C.PROT_WRITE, 1, &pfn, &e1)
	if page != nil && e1 == 0 {
		return page, false, nil
	}
	if page != nil {
		C.xenforeignmemory_unmap(h.fmem, page, 1)
	}
	if rc, cerr := C.xc_domain_populate_physmap_exact(h.xch, dom, 1, 0, 0, &pfn); rc != 0 {
		e := newError(classDomain, "xc_domain_populate_physmap_exact", d, cerr).withGFN(hypervisor.GFN(pfn))
		e.Detail = "populating the paging ring page"
		return nil, false, e
	}
	page, cerr := C.xenforeignmemory_map(h.fmem, dom, C.PROT_READ|C.PROT_WRITE, 1, &pfn, &e1)
	if page == nil || e1 != 0 {
		if page != nil {
			C.xenforeignmemory_unmap(h.fmem, page, 1)
			cerr = syscall.Errno(absErrno(e1))
		}
		C.xc_domain_decrease_reservation_exact(h.xch, dom, 1, 0, &pfn)
		e := newError(classDomain, "xenforeignmemory_map", d, cerr).withGFN(hypervisor.GFN(pfn))
		e.Detail = "mapping the paging ring page"
		return nil, false, e
	}
	return page, true, nil
}

func absErrno(e C.int) int {
	if e < 0 {
		return int(-e)
	}
	return int(e)
}

// Nominate wraps xc_mem_paging_nominate. The pager's own ring gfn is not
// guest memory: nominating it does nothing.
func (p *Pager) Nominate(g hypervisor.GFN) error {
	if p.closed.Load() {
		return hypervisor.ErrClosed
	}
	if g == p.ringGFN {
		return nil
	}
	if rc, err := C.xc_mem_paging_nominate(p.h.xch, C.uint32_t(p.d), C.uint64_t(g)); rc != 0 {
		return pageError("nominate", g, newError(classPagingOp, "xc_mem_paging_nominate", p.d, err))
	}
	return nil
}

// Evict wraps xc_mem_paging_evict: EBUSY (ErrBusy) if the guest touched the
// gfn since Nominate. The ring gfn is skipped, as by Nominate.
func (p *Pager) Evict(g hypervisor.GFN) error {
	if p.closed.Load() {
		return hypervisor.ErrClosed
	}
	if g == p.ringGFN {
		return nil
	}
	if rc, err := C.xc_mem_paging_evict(p.h.xch, C.uint32_t(p.d), C.uint64_t(g)); rc != 0 {
		return pageError("evict", g, newError(classPagingOp, "xc_mem_paging_evict", p.d, err))
	}
	return nil
}

// loadRetries bounds the retries of a load Xen refused for lack of memory.
const loadRetries = 100

// Load wraps xc_mem_paging_load (XENMEM_paging_op_prep with the page as its
// buffer; never a bare prep, which fails on an evicted gfn), retrying while
// Xen is short of memory (ENOMEM), as xenpaging does. The ring gfn is
// skipped, as by Nominate.
func (p *Pager) Load(g hypervisor.GFN, page []byte) error {
	if p.closed.Load() {
		return hypervisor.ErrClosed
	}
	if len(page) < hypervisor.PageSize {
		return pageError("load", g, &Error{Call: "xc_mem_paging_load", Dom: p.d, HasDom: true,
			Kind: hypervisor.ErrInvalid, Detail: fmt.Sprintf("page of %d bytes", len(page))})
	}
	if g == p.ringGFN {
		return nil
	}
	for try := 0; ; try++ {
		rc, err := C.xc_mem_paging_load(p.h.xch, C.uint32_t(p.d), C.uint64_t(g), unsafe.Pointer(&page[0]))
		if rc == 0 {
			return nil
		}
		if errnoOf(err) == syscall.ENOMEM && try < loadRetries {
			time.Sleep(time.Millisecond)
			continue
		}
		return pageError("load", g, newError(classPagingLoad, "xc_mem_paging_load", p.d, err))
	}
}

// pollInterval bounds how long Requests sleeps in poll before it looks at
// its context and at Close.
const pollInterval = 50 * time.Millisecond

// Requests drains the ring of up to hypervisor.RingSlots requests; when it
// is empty it does RING_FINAL_CHECK_FOR_REQUESTS and sleeps in poll on
// xenevtchn_fd, then acknowledges the notification with xenevtchn_pending
// and xenevtchn_unmask.
func (p *Pager) Requests(ctx context.Context) ([]hypervisor.Request, error) {
	p.reqMu.Lock()
	defer p.reqMu.Unlock()
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
	for {
		if p.closed.Load() {
			return nil, hypervisor.ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p.mu.Lock()
		reqs := p.ring.drain(hypervisor.RingSlots)
		if len(reqs) == 0 && p.ring.finalCheck() {
			reqs = p.ring.drain(hypervisor.RingSlots)
		}
		p.mu.Unlock()
		if len(reqs) > 0 {
			return reqs, nil
		}

		n, err := unix.Poll(fds, int(pollInterval/time.Millisecond))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &Error{Call: "poll(xenevtchn_fd)", Dom: p.d, HasDom: true, Errno: errnoOf(err)}
		}
		if n == 0 || fds[0].Revents&unix.POLLIN == 0 {
			continue
		}
		port, cerr := C.xenevtchn_pending(p.xce)
		if port < 0 {
			return nil, newError(classDomain, "xenevtchn_pending", p.d, cerr)
		}
		if rc, cerr := C.xenevtchn_unmask(p.xce, C.evtchn_port_t(port)); rc != 0 {
			return nil, newError(classDomain, "xenevtchn_unmask", p.d, cerr)
		}
	}
}

// Resume puts one response per request on the ring, each
// {version 7, reason MEM_PAGING, vcpu_id, flags & VCPU_PAUSED, gfn} (see
// pagingResponse), publishes them (RING_PUSH_RESPONSES) and notifies Xen
// with xenevtchn_notify, which makes it consume them and unpause the vCPUs.
// More responses than requests taken from the ring fail with ErrInvalid.
func (p *Pager) Resume(reqs ...hypervisor.Request) error {
	if len(reqs) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		return hypervisor.ErrClosed
	}
	var perr error
	put := 0
	for _, r := range reqs {
		rsp := pagingResponse(r)
		if err := p.ring.put(&rsp); err != nil {
			perr = &Error{Call: "RING_PUT_RESPONSE", Dom: p.d, HasDom: true, Kind: hypervisor.ErrInvalid,
				Detail: fmt.Sprintf("%v (response %d of %d, for vcpu %d gfn %#x)", err, put+1, len(reqs), r.VCPU, uint64(r.GFN))}
			break
		}
		put++
	}
	if put == 0 {
		return perr
	}
	p.ring.push()
	if rc, err := C.xenevtchn_notify(p.xce, p.lport); rc != 0 {
		return newError(classDomain, "xenevtchn_notify", p.d, err)
	}
	return perr
}

// Close detaches the pager: xc_mem_paging_disable, xenevtchn_unbind,
// xenevtchn_close and the unmapping of the ring page. It fails with ErrBusy,
// leaving the pager attached, while a request is unanswered, a gfn is still
// paged out (Xen would crash the guest on touching it), or Xen refuses
// (EBUSY: vCPUs wait for a ring slot). On a domain that no longer exists it
// just releases the local resources.
func (p *Pager) Close() error {
	if p.closed.Load() {
		return nil
	}
	p.mu.Lock()
	owed, waiting := p.ring.owed(), p.ring.unconsumed()
	p.mu.Unlock()
	if owed > 0 || waiting > 0 {
		return &Error{Call: "xc_mem_paging_disable", Dom: p.d, HasDom: true, Kind: hypervisor.ErrBusy,
			Detail: fmt.Sprintf("%d requests unanswered and %d not yet read: vCPUs are waiting", owed, waiting)}
	}
	info, err := p.h.rawInfo(p.d)
	gone := errors.Is(err, hypervisor.ErrNotFound)
	if err != nil && !gone {
		return err
	}
	if !gone && info.PagedPages > 0 {
		return &Error{Call: "xc_mem_paging_disable", Dom: p.d, HasDom: true, Kind: hypervisor.ErrBusy,
			Detail: fmt.Sprintf("%d gfns are still paged out; load them first", info.PagedPages)}
	}
	if !gone {
		if rc, err := C.xc_mem_paging_disable(p.h.xch, C.uint32_t(p.d)); rc != 0 {
			e := newError(classPagingOp, "xc_mem_paging_disable", p.d, err)
			if !errors.Is(e, hypervisor.ErrNotFound) {
				return e
			}
		}
	}
	p.teardown(false)
	return nil
}

// teardown marks the pager closed, waits for Requests and Resume to finish
// and releases the event channel and the ring mapping; with disable it first detaches the
// ring from Xen.
func (p *Pager) teardown(disable bool) {
	if p == nil || p.closed.Swap(true) {
		return
	}
	if disable {
		C.xc_mem_paging_disable(p.h.xch, C.uint32_t(p.d))
	}
	p.reqMu.Lock()
	defer p.reqMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	C.xenevtchn_unbind(p.xce, p.lport)
	C.xenevtchn_close(p.xce)
	C.xenforeignmemory_unmap(p.h.fmem, p.page, 1)
}
