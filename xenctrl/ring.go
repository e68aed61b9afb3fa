package xenctrl

import (
	"errors"
	"sync/atomic"
	"unsafe"

	"github.com/xenmig/xenmig/hypervisor"
)

// The shared ring page (xen/io/ring.h, DEFINE_RING_TYPES(vm_event, ...)):
// a 64-byte header of four RING_IDX (uint32) indexes, private bytes and
// padding, then the slots, each a union of request and response.
const (
	sringOffReqProd  = 0
	sringOffReqEvent = 4
	sringOffRspProd  = 8
	sringOffRspEvent = 12
	sringOffPvt      = 16 // pvt.pvt_pad[4]
	sringOffRing     = 64 // after __pad[44]
)

// ringEntries is __CONST_RING_SIZE: how many entries of size entry fit in a
// ring of size bytes after the header, rounded down to a power of two.
func ringEntries(size, entry int) uint32 {
	n := uint32((size - sringOffRing) / entry)
	if n == 0 {
		return 0
	}
	p := uint32(1)
	for p*2 <= n {
		p *= 2
	}
	return p
}

// backRing is the back (consumer) end of the vm_event ring: Xen is the front
// end, producing requests; the pager consumes them and produces responses in
// the same slots. It is BACK_RING_INIT and the RING_* macros, written in Go
// over the shared page: the indexes are free-running uint32 counters that
// wrap, masked by nrEnts-1 to a slot. Shared indexes are read and written
// with sync/atomic, which orders them against the slot contents as the
// macros' xen_rmb/xen_wmb/xen_mb do (and more strongly).
//
// A backRing is not safe for concurrent use; the pager serialises it.
type backRing struct {
	page       []byte // the shared page
	nrEnts     uint32
	reqCons    uint32 // next request to consume
	rspProdPvt uint32 // next response slot, not yet published
}

// initBackRing does SHARED_RING_INIT on page, then BACK_RING_INIT.
func initBackRing(page []byte) *backRing { return attachBackRing(page, 0) }

// attachBackRing does SHARED_RING_INIT with every index at start, then
// BACK_RING_ATTACH. Xen always starts at 0; tests start near 2^32 to check
// the wrap-around.
func attachBackRing(page []byte, start uint32) *backRing {
	r := &backRing{page: page, nrEnts: ringEntries(len(page), vmEventSize), reqCons: start, rspProdPvt: start}
	r.store(sringOffReqProd, start)
	r.store(sringOffRspProd, start)
	r.store(sringOffReqEvent, start+1)
	r.store(sringOffRspEvent, start+1)
	clear(page[sringOffPvt:sringOffRing])
	return r
}

func (r *backRing) idx(off int) *uint32 { return (*uint32)(unsafe.Pointer(&r.page[off])) }
func (r *backRing) load(off int) uint32 { return atomic.LoadUint32(r.idx(off)) }
func (r *backRing) store(off int, v uint32) {
	atomic.StoreUint32(r.idx(off), v)
}

func (r *backRing) slot(i uint32) []byte {
	o := sringOffRing + int(i&(r.nrEnts-1))*vmEventSize
	return r.page[o : o+vmEventSize]
}

// unconsumed is RING_HAS_UNCONSUMED_REQUESTS: requests Xen has published and
// the pager has not consumed, bounded by the slots not holding an unsent
// response (a misbehaving front end cannot make it read past them).
func (r *backRing) unconsumed() uint32 {
	req := r.load(sringOffReqProd) - r.reqCons
	rsp := r.nrEnts - (r.reqCons - r.rspProdPvt)
	return min(req, rsp)
}

// next is RING_COPY_REQUEST at req_cons, then req_cons++. The slot is copied
// before it is decoded, so Xen cannot change it under the decoder.
func (r *backRing) next() vmEvent {
	var buf [vmEventSize]byte
	copy(buf[:], r.slot(r.reqCons))
	r.reqCons++
	return decodeVMEvent(buf[:])
}

// finalCheck is RING_FINAL_CHECK_FOR_REQUESTS: it reports whether requests
// are waiting; if none, it asks Xen for an event on the next one (req_event)
// and checks again, so a request racing with the pager going to sleep is not
// missed.
func (r *backRing) finalCheck() bool {
	if r.unconsumed() > 0 {
		return true
	}
	r.store(sringOffReqEvent, r.reqCons+1)
	return r.unconsumed() > 0
}

// owed returns the number of consumed requests not yet answered: the ring is
// one response per request, and a slot frees only when its response is
// consumed by Xen.
func (r *backRing) owed() uint32 { return r.reqCons - r.rspProdPvt }

var errNoRequestOwed = errors.New("more responses than requests consumed from the ring")

// put writes a response into the next response slot, not yet published.
func (r *backRing) put(e *vmEvent) error {
	if r.owed() == 0 {
		return errNoRequestOwed
	}
	e.encode(r.slot(r.rspProdPvt))
	r.rspProdPvt++
	return nil
}

// push is RING_PUSH_RESPONSES_AND_CHECK_NOTIFY: it publishes the responses
// put so far and reports whether Xen asked to be notified of them.
func (r *backRing) push() (notify bool) {
	old := r.load(sringOffRspProd)
	nw := r.rspProdPvt
	r.store(sringOffRspProd, nw)
	return nw-r.load(sringOffRspEvent) < nw-old
}

// drain consumes up to max waiting requests.
func (r *backRing) drain(max int) []hypervisor.Request {
	var out []hypervisor.Request
	for len(out) < max && r.unconsumed() > 0 {
		e := r.next()
		out = append(out, e.request())
	}
	return out
}
