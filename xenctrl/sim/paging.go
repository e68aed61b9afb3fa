package sim

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
)

// ring is the mem_paging vm_event ring of a domain; guarded by domain.mu.
//
// As in Xen, a slot is claimed when a request is produced and freed only when
// the pager's response to it is consumed (RING_FREE_REQUESTS counts from
// rsp_cons): so every request, foreign and drop-page ones included, must be
// answered with Resume, or its slot stays taken.
type ring struct {
	claimed     int                        // slots in use: requests not yet answered
	posted      []posted                   // produced, not yet drained by Requests
	outstanding map[hypervisor.Request]int // drained or not, not yet answered
	notify      chan struct{}              // the event channel (capacity 1)
}

// posted is a request and the time its notification reaches the pager.
type posted struct {
	req hypervisor.Request
	at  time.Time
}

// claim takes a free slot (vm_event_claim_slot); it reports false if the
// ring is full.
func (r *ring) claim() bool {
	if r.claimed >= hypervisor.RingSlots {
		return false
	}
	r.claimed++
	return true
}

// cancel returns a claimed slot unused (vm_event_cancel_slot).
func (r *ring) cancel() { r.claimed-- }

// put produces req in a claimed slot and notifies the pager after latency.
func (r *ring) put(req hypervisor.Request, latency time.Duration) {
	r.posted = append(r.posted, posted{req: req, at: time.Now().Add(latency)})
	if r.outstanding == nil {
		r.outstanding = make(map[hypervisor.Request]int)
	}
	r.outstanding[req]++
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// answer consumes the response to req, freeing its slot; it reports false
// if no such request is outstanding.
func (r *ring) answer(req hypervisor.Request) bool {
	if r.outstanding[req] == 0 {
		return false
	}
	if r.outstanding[req]--; r.outstanding[req] == 0 {
		delete(r.outstanding, req)
	}
	r.claimed--
	return true
}

// reset empties the ring when its pager goes away.
func (r *ring) reset() {
	r.claimed, r.posted, r.outstanding = 0, nil, nil
}

// pager is a mem_paging agent attached to one domain.
type pager struct {
	d      *domain
	closed chan struct{}
}

// EnablePaging attaches a pager to id. ErrBusy if one is attached.
func (h *Host) EnablePaging(id hypervisor.DomID) (hypervisor.Pager, error) {
	d, err := h.acquire(id)
	if err != nil {
		return nil, fmt.Errorf("enable paging: %w", err)
	}
	defer d.release()
	if h.noPaging {
		return nil, fmt.Errorf("enable paging on domain %d: this simulated Xen was built without CONFIG_MEM_PAGING "+
			"(as Debian's stock hypervisor is); migrate with --mode precopy: %w", id, hypervisor.ErrPagingUnsupported)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pager != nil {
		return nil, fmt.Errorf("enable paging on domain %d: a pager is attached: %w", id, hypervisor.ErrBusy)
	}
	d.pager = &pager{d: d, closed: make(chan struct{})}
	d.ring.reset()
	return d.pager, nil
}

// ForceDisablePaging detaches id's pager as Xen's xc_mem_paging_disable does,
// without the contract's check that nothing is paged out (Pager.Close): as
// when the pager process dies. ErrBusy while vCPUs wait for a ring slot, as
// in Xen. vCPUs waiting for a response stay paused; a later access to a
// paged gfn crashes the domain.
func (h *Host) ForceDisablePaging(id hypervisor.DomID) error {
	d, err := h.acquire(id)
	if err != nil {
		return fmt.Errorf("disable paging: %w", err)
	}
	defer d.release()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pager == nil {
		return fmt.Errorf("disable paging on domain %d: no pager: %w", id, hypervisor.ErrInvalid)
	}
	if d.slotWaiters() > 0 {
		return fmt.Errorf("disable paging on domain %d: vCPUs wait for ring slots: %w", id, hypervisor.ErrBusy)
	}
	d.pager.detach()
	return nil
}

// detach unhooks the pager from its domain; d.mu must be held.
func (p *pager) detach() {
	d := p.d
	if d.pager != p {
		return
	}
	close(p.closed)
	d.pager = nil
	d.ring.reset()
	d.runCond.Broadcast()
}

// slotWaiters counts the vCPUs blocked in a fault without a request posted;
// d.mu must be held.
func (d *domain) slotWaiters() int {
	n := 0
	for _, v := range d.vcpus {
		if v.where == atFault && v.pagingPaused == 0 {
			n++
		}
	}
	return n
}

// acquire returns p's domain, alive and with p attached, until release.
func (p *pager) acquire(op string) (*domain, error) {
	d, err := p.d.h.acquire(p.d.id)
	if err != nil {
		return nil, fmt.Errorf("pager %s: %w", op, err)
	}
	d.mu.Lock()
	attached := d.pager == p
	d.mu.Unlock()
	if !attached {
		d.release()
		return nil, fmt.Errorf("pager %s on domain %d: %w", op, p.d.id, hypervisor.ErrClosed)
	}
	return d, nil
}

// checkGFN validates g for a page operation.
func checkGFN(d *domain, op string, g hypervisor.GFN) error {
	if uint64(g) >= d.mem.pages() {
		return &hypervisor.PageError{Op: op, GFN: g, Err: fmt.Errorf("beyond max gfn %#x: %w", d.mem.pages()-1, hypervisor.ErrInvalid)}
	}
	return nil
}

// Nominate marks a RAM gfn for eviction (p2m_ram_paging_out). ErrBusy if it
// is already in the paging life cycle, ErrNotPopulated if it has no memory.
// It returns once no vCPU is in the middle of an access to it.
func (p *pager) Nominate(g hypervisor.GFN) error {
	d, err := p.acquire("nominate")
	if err != nil {
		return err
	}
	defer d.release()
	defer d.lanes.p2m.pay(d.h.costs.Nominate)()
	if err := checkGFN(d, "nominate", g); err != nil {
		return err
	}
	if d.lay.isSpecial(g) {
		// xenstored and xenconsoled keep the rings mapped: the page has
		// more references than the guest's (Xen's nominate: EBUSY).
		return &hypervisor.PageError{Op: "nominate", GFN: g, Err: hypervisor.ErrBusy}
	}
	for {
		switch st := d.mem.state(g); st {
		case stRAM:
			if !d.mem.cas(g, stRAM, stPagingOut) {
				continue
			}
			d.mem.setEvictFail(g, false)
			d.quiesce(g)
			return nil
		case stUnpopulated:
			return &hypervisor.PageError{Op: "nominate", GFN: g, Err: hypervisor.ErrNotPopulated}
		default:
			return &hypervisor.PageError{Op: "nominate", GFN: g, Err: hypervisor.ErrBusy}
		}
	}
}

// Evict drops a nominated gfn's frame (p2m_ram_paged). ErrBusy if the guest
// touched it since Nominate, ErrInvalid if it was not nominated. Evict and
// Load of one gfn must not run concurrently.
func (p *pager) Evict(g hypervisor.GFN) error {
	d, err := p.acquire("evict")
	if err != nil {
		return err
	}
	defer d.release()
	defer d.lanes.p2m.pay(d.h.costs.Evict)()
	if err := checkGFN(d, "evict", g); err != nil {
		return err
	}
	if d.mem.cas(g, stPagingOut, stPaged) {
		d.mem.drop(g)
		return nil
	}
	switch {
	case d.mem.evictFailed(g):
		err = fmt.Errorf("touched since nominated: %w", hypervisor.ErrBusy)
	case d.mem.state(g) == stUnpopulated:
		err = hypervisor.ErrNotPopulated
	default:
		err = fmt.Errorf("not nominated: %w", hypervisor.ErrInvalid)
	}
	return &hypervisor.PageError{Op: "evict", GFN: g, Err: err}
}

// Load installs page at an evicted gfn, which becomes RAM at once; vCPUs
// waiting on it stay paused until Resume. A gfn that was nominated and then
// touched still has its frame: Load makes it RAM and ignores page, as Xen's
// prep does. ErrInvalid on a gfn that is not paged out.
func (p *pager) Load(g hypervisor.GFN, page []byte) error {
	if len(page) != hypervisor.PageSize {
		return &hypervisor.PageError{Op: "load", GFN: g, Err: fmt.Errorf("buffer of %d bytes: %w", len(page), hypervisor.ErrInvalid)}
	}
	d, err := p.acquire("load")
	if err != nil {
		return err
	}
	defer d.release()
	defer d.lanes.p2m.pay(d.h.costs.Load)()
	if err := checkGFN(d, "load", g); err != nil {
		return err
	}
	copied := false
	for {
		switch st := d.mem.state(g); st {
		case stPaged, stPagingIn:
			// An evicted frame was dropped and reads as zeroes: a zero
			// page needs no copy (and the host no memory for it).
			if !copied && !isZero(page) {
				copy(d.mem.page(g), page)
			}
			copied = true
			if d.mem.cas(g, st, stRAM) {
				return nil
			}
		case stPagingInKept:
			if d.mem.cas(g, st, stRAM) {
				return nil
			}
		default:
			// As Xen's prep answers ENOENT: the guest released the gfn
			// or took it back.
			return &hypervisor.PageError{Op: "load", GFN: g, Err: fmt.Errorf("not paged out: %w", hypervisor.ErrNotPopulated)}
		}
	}
}

// Requests blocks until at least one request is visible (posted, and its
// notification latency passed), then drains up to RingSlots of them.
func (p *pager) Requests(ctx context.Context) ([]hypervisor.Request, error) {
	d, err := p.acquire("requests")
	if err != nil {
		return nil, err
	}
	notify := d.ring.notify
	d.release()
	for {
		d.mu.Lock()
		if d.pager != p {
			d.mu.Unlock()
			return nil, fmt.Errorf("pager requests on domain %d: %w", p.d.id, hypervisor.ErrClosed)
		}
		if len(d.ring.posted) > 0 {
			now := time.Now()
			if at := d.ring.posted[0].at; at.After(now) {
				d.mu.Unlock()
				if err := waitUntil(ctx, at); err != nil {
					return nil, err
				}
				continue
			}
			var out []hypervisor.Request
			for len(d.ring.posted) > 0 && len(out) < hypervisor.RingSlots && !d.ring.posted[0].at.After(now) {
				out = append(out, d.ring.posted[0].req)
				d.ring.posted = d.ring.posted[1:]
			}
			d.mu.Unlock()
			return out, nil
		}
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-p.closed:
		case <-notify:
		}
	}
}

// Resume answers requests, freeing their ring slots: a gfn still holding its
// frame (a cancelled nomination) becomes RAM, and each vCPU a request paused
// is unpaused to retry its access. A request that is not outstanding fails
// with ErrInvalid after the others are answered.
func (p *pager) Resume(reqs ...hypervisor.Request) error {
	d, err := p.acquire("resume")
	if err != nil {
		return err
	}
	defer d.release()
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, r := range reqs {
		if !d.ring.answer(r) {
			errs = append(errs, fmt.Errorf("resume vCPU %d gfn %#x: no such request: %w", r.VCPU, uint64(r.GFN), hypervisor.ErrInvalid))
			continue
		}
		if r.PagingFlags&hypervisor.PagingDropPage == 0 {
			d.mem.cas(r.GFN, stPagingInKept, stRAM)
		}
		if r.Flags&hypervisor.FlagVCPUPaused != 0 && int(r.VCPU) < len(d.vcpus) {
			if v := d.vcpus[r.VCPU]; v.pagingPaused > 0 {
				v.pagingPaused--
			}
		}
	}
	d.runCond.Broadcast()
	return errors.Join(errs...)
}

// Close detaches the pager. ErrBusy while any gfn is in the paging life
// cycle (nominated, paged out, being paged in) or any vCPU waits on the
// ring, since Xen would crash the domain on its next touch of such a gfn.
func (p *pager) Close() error {
	d, err := p.acquire("close")
	if err != nil {
		return err
	}
	defer d.release()
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := d.mem.paging.Load(); n > 0 {
		return fmt.Errorf("close pager of domain %d: %d gfns still paging: %w", p.d.id, n, hypervisor.ErrBusy)
	}
	for _, v := range d.vcpus {
		if v.where == atFault || v.pagingPaused > 0 {
			return fmt.Errorf("close pager of domain %d: vCPU %d waits on the ring: %w", p.d.id, v.id, hypervisor.ErrBusy)
		}
	}
	p.detach()
	return nil
}

// foreignFault is a foreign mapping's touch of an evicted gfn, as Xen's
// p2m_mem_paging_populate handles one from dom0: the gfn moves to paging-in
// and a FlagForeign request is posted if a slot is free, nothing is paused,
// and the mapping fails. With no pager attached the domain is crashed.
func (d *domain) foreignFault(g hypervisor.GFN) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pager == nil {
		d.crash("foreign mapping of a paged gfn with no pager attached")
		return
	}
	if !d.ring.claim() {
		return
	}
	if !d.mem.cas(g, stPaged, stPagingIn) {
		d.ring.cancel()
		return
	}
	d.ring.put(hypervisor.Request{GFN: g, Flags: hypervisor.FlagForeign}, d.h.notifyLatency)
}

// dropNotice tells the pager a gfn in the paging life cycle was released
// (p2m_mem_paging_drop_page), if a slot is free.
func (d *domain) dropNotice(g hypervisor.GFN, was uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pager == nil || !d.ring.claim() {
		return
	}
	req := hypervisor.Request{GFN: g, Flags: hypervisor.FlagForeign, PagingFlags: hypervisor.PagingDropPage}
	if was == stPagingOut {
		req.PagingFlags |= hypervisor.PagingEvictFail
	}
	d.ring.put(req, d.h.notifyLatency)
}
