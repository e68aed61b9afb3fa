package sim

import (
	"encoding/binary"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
)

// wordsPerPage is the number of uint64 words in a page.
const wordsPerPage = hypervisor.PageSize / 8

// The accessor: every guest memory access of a workload goes through these
// methods, which enforce the p2m state machine (faulting on anything but
// RAM), mark log-dirty after writes, and publish the gfn in flight.

// page returns g's memory once it is present, blocking on paging faults.
// Its fast path, for a RAM gfn, is one atomic load (plus one store when the
// vCPU moves to another gfn).
func (v *vcpu) page(g hypervisor.GFN) []byte {
	if uint64(g) != v.cur {
		v.cur = uint64(g)
		v.curPub.Store(v.cur)
	}
	for v.d.mem.state(g) != stRAM {
		v.fault(g)
		v.cur = uint64(g)
		v.curPub.Store(v.cur)
	}
	return v.d.mem.page(g)
}

// read64 reads word i of g.
func (v *vcpu) read64(g hypervisor.GFN, i int) uint64 {
	return binary.LittleEndian.Uint64(v.page(g)[i*8:])
}

// write64 writes word i of g.
func (v *vcpu) write64(g hypervisor.GFN, i int, x uint64) {
	binary.LittleEndian.PutUint64(v.page(g)[i*8:], x)
	v.d.mem.markDirty(g)
}

// fillPage writes all of g with a stream seeded by x.
func (v *vcpu) fillPage(g hypervisor.GFN, x uint64) {
	p := v.page(g)
	for i := 0; i < len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], splitmix(&x))
	}
	v.d.mem.markDirty(g)
}

// zeroPage clears g, as a kernel with init_on_free does on freeing it.
func (v *vcpu) zeroPage(g hypervisor.GFN) {
	clear(v.page(g))
	v.d.mem.markDirty(g)
}

// sumPage reads all of g and returns a hash of it.
func (v *vcpu) sumPage(g hypervisor.GFN) uint64 {
	p := v.page(g)
	var s uint64
	for i := 0; i < len(p); i += 8 {
		s = (s ^ binary.LittleEndian.Uint64(p[i:])) * 0x100000001b3
	}
	return s
}

// fold mixes a value read from a static or own page into the context.
func (v *vcpu) fold(x uint64) { v.acc = mix64(v.acc ^ x) }

// rand returns the vCPU's next pseudo-random number.
func (v *vcpu) rand() uint64 { return splitmix(&v.rng) }

// randn returns a pseudo-random number in [0, n); n must be > 0.
func (v *vcpu) randn(n uint64) uint64 { return v.rand() % n }

// peekShared reads one word of a page the vCPU does not own: a static page,
// whose value it may keep, or another vCPU's boot page, whose value it must
// discard (that vCPU may be writing it). It makes reads range over the whole
// guest, as a real guest's do, without making memory depend on interleaving.
func (v *vcpu) peekShared() {
	l := v.d.lay
	other := &l.arenas[v.randn(uint64(len(l.arenas)))]
	n := uint64(len(l.static) + other.boot)
	i := v.randn(n)
	word := int(v.randn(wordsPerPage))
	if i < uint64(len(l.static)) {
		v.fold(v.read64(l.static[i], word))
		return
	}
	_ = v.read64(other.pages[i-uint64(len(l.static))], word)
}

// fault handles an access to g while it is not RAM, as Xen's
// p2m_mem_paging_populate does for a guest access: it claims a ring slot
// (waiting for one if all are taken), moves a nominated gfn to paging-in
// with MEM_PAGING_EVICT_FAIL or an evicted one to paging-in, posts a
// request and pauses the vCPU until the pager's response. The caller retries
// the access, faulting again if the gfn is still not present. An access to
// an unpopulated gfn, or to a paged one with no pager attached, crashes the
// domain; the vCPU never returns.
func (v *vcpu) fault(g hypervisor.GFN) {
	d := v.d
	v.cur = noGFN
	v.curPub.Store(noGFN) // blocked: do not hold up Nominate on this gfn
	start := time.Now()
	d.mu.Lock()
	for {
		if d.dying || d.crashed {
			v.stall()
		}
		if d.stoppedLocked() {
			v.waitLocked(atFault)
			continue
		}
		st := d.mem.state(g)
		if st == stRAM {
			break
		}
		if st == stUnpopulated {
			d.crash("vCPU touched an unpopulated gfn")
			v.stall()
		}
		if d.pager == nil {
			d.crash("vCPU touched a paged gfn with no pager attached")
			v.stall()
		}
		if !d.ring.claim() {
			v.waitLocked(atFault)
			continue
		}
		req := hypervisor.Request{VCPU: uint32(v.id), GFN: g, Flags: hypervisor.FlagVCPUPaused}
		switch st {
		case stPagingOut:
			if !d.mem.cas(g, stPagingOut, stPagingInKept) {
				d.ring.cancel()
				continue
			}
			d.mem.setEvictFail(g, true)
			req.PagingFlags |= hypervisor.PagingEvictFail
		case stPaged:
			if !d.mem.cas(g, stPaged, stPagingIn) {
				d.ring.cancel()
				continue
			}
		}
		d.ring.put(req, d.h.notifyLatency)
		v.pagingPaused++
		for v.pagingPaused > 0 || d.stoppedLocked() {
			if d.dying || d.crashed {
				v.stall()
			}
			v.waitLocked(atFault)
		}
		break
	}
	d.mu.Unlock()
	v.blocked.Add(int64(time.Since(start)))
}
