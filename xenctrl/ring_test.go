package xenctrl

import (
	"encoding/binary"
	"testing"

	"github.com/xenmig/xenmig/hypervisor"
)

// fakeXen is the front end of a vm_event ring, as Xen drives it: it produces
// requests and consumes responses on the shared page.
type fakeXen struct {
	page       []byte
	n          uint32
	reqProdPvt uint32
	rspCons    uint32
}

func newFakeXen(page []byte, start uint32) *fakeXen {
	return &fakeXen{page: page, n: ringEntries(len(page), vmEventSize), reqProdPvt: start, rspCons: start}
}

func (f *fakeXen) u32(off int) uint32 { return binary.LittleEndian.Uint32(f.page[off:]) }

func (f *fakeXen) slot(i uint32) []byte {
	o := sringOffRing + int(i&(f.n-1))*vmEventSize
	return f.page[o : o+vmEventSize]
}

// free is RING_FREE_REQUESTS of the front end.
func (f *fakeXen) free() uint32 { return f.n - (f.reqProdPvt - f.rspCons) }

// request puts a paging request for (vcpu, gfn) on the ring and publishes it;
// it reports false if the ring is full, as Xen would make the vCPU wait.
func (f *fakeXen) request(vcpu uint32, gfn uint64, flags uint32) bool {
	if f.free() == 0 {
		return false
	}
	ev := vmEvent{Version: vmEventInterfaceVersion, Reason: vmEventReasonMemPaging, VCPUID: vcpu, GFN: gfn, Flags: flags}
	ev.encode(f.slot(f.reqProdPvt))
	f.reqProdPvt++
	binary.LittleEndian.PutUint32(f.page[sringOffReqProd:], f.reqProdPvt)
	return true
}

// responses consumes every published response.
func (f *fakeXen) responses() []vmEvent {
	var out []vmEvent
	for f.rspCons != f.u32(sringOffRspProd) {
		out = append(out, decodeVMEvent(f.slot(f.rspCons)))
		f.rspCons++
	}
	return out
}

func TestRingEntries(t *testing.T) {
	for _, tt := range []struct {
		size, entry int
		want        uint32
	}{
		{hypervisor.PageSize, vmEventSize, hypervisor.RingSlots}, // (4096-64)/400 = 10 -> 8
		{hypervisor.PageSize, 64, 32},                            // 63 -> 32
		{hypervisor.PageSize, 112, 32},                           // 36 -> 32 (blkif-like)
		{hypervisor.PageSize, 4032, 1},
		{hypervisor.PageSize, 4033, 0},
		{2 * hypervisor.PageSize, vmEventSize, 16},
	} {
		if got := ringEntries(tt.size, tt.entry); got != tt.want {
			t.Errorf("ringEntries(%d, %d) = %d, want %d", tt.size, tt.entry, got, tt.want)
		}
	}
}

func TestRingInit(t *testing.T) {
	page := make([]byte, hypervisor.PageSize)
	for i := range page {
		page[i] = 0xa5
	}
	r := initBackRing(page)
	f := newFakeXen(page, 0)
	for _, tt := range []struct {
		name string
		off  int
		want uint32
	}{
		{"req_prod", sringOffReqProd, 0},
		{"req_event", sringOffReqEvent, 1},
		{"rsp_prod", sringOffRspProd, 0},
		{"rsp_event", sringOffRspEvent, 1},
	} {
		if got := f.u32(tt.off); got != tt.want {
			t.Errorf("after SHARED_RING_INIT %s = %d, want %d", tt.name, got, tt.want)
		}
	}
	for i := sringOffPvt; i < sringOffRing; i++ {
		if page[i] != 0 {
			t.Fatalf("after SHARED_RING_INIT header byte %d = %#x, want 0", i, page[i])
		}
	}
	if r.nrEnts != hypervisor.RingSlots {
		t.Errorf("BACK_RING_INIT nr_ents = %d, want %d", r.nrEnts, hypervisor.RingSlots)
	}
	if got := r.unconsumed(); got != 0 {
		t.Errorf("unconsumed() on an empty ring = %d, want 0", got)
	}
	if r.finalCheck() {
		t.Errorf("finalCheck() on an empty ring = true, want false")
	}
	if got := f.u32(sringOffReqEvent); got != 1 {
		t.Errorf("req_event after finalCheck = %d, want 1 (req_cons+1)", got)
	}
}

// TestRingRoundTrip runs the ring through many fills and drains from several
// starting indexes, including ones that make the uint32 indexes wrap.
func TestRingRoundTrip(t *testing.T) {
	for _, start := range []uint32{0, 5, 0xfffffffa, 0xffffffff} {
		page := make([]byte, hypervisor.PageSize)
		r := attachBackRing(page, start)
		f := newFakeXen(page, start)
		gfn := uint64(0x1000)
		for round := 0; round < 20; round++ {
			// Xen posts up to a full ring, a varying number each round.
			posted := 1 + round%int(hypervisor.RingSlots)
			var want []hypervisor.Request
			for i := 0; i < posted; i++ {
				if !f.request(uint32(i), gfn, vmEventFlagVCPUPaused) {
					t.Fatalf("start %#x round %d: ring full after %d of %d requests", start, round, i, posted)
				}
				want = append(want, hypervisor.Request{VCPU: uint32(i), GFN: hypervisor.GFN(gfn), Flags: vmEventFlagVCPUPaused})
				gfn++
			}
			if got := r.unconsumed(); got != uint32(posted) {
				t.Fatalf("start %#x round %d: unconsumed() = %d, want %d", start, round, got, posted)
			}
			// Drain in batches of at most 3.
			var got []hypervisor.Request
			for {
				b := r.drain(3)
				if len(b) == 0 {
					break
				}
				if len(b) > 3 {
					t.Fatalf("drain(3) returned %d requests", len(b))
				}
				got = append(got, b...)
			}
			if len(got) != len(want) {
				t.Fatalf("start %#x round %d: drained %d requests, want %d", start, round, len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("start %#x round %d: request %d = %+v, want %+v", start, round, i, got[i], want[i])
				}
			}
			if r.finalCheck() {
				t.Fatalf("start %#x round %d: finalCheck() = true after draining", start, round)
			}
			if ev := f.u32(sringOffReqEvent); ev != r.reqCons+1 {
				t.Errorf("start %#x round %d: req_event = %#x, want req_cons+1 = %#x", start, round, ev, r.reqCons+1)
			}
			// The ring is full of unanswered requests: Xen cannot post more.
			if posted == int(hypervisor.RingSlots) && f.request(99, 0, 0) {
				t.Fatalf("start %#x round %d: Xen posted a 9th request into an 8-slot ring", start, round)
			}
			// Answer in reverse order: the ring does not care.
			for i := len(got) - 1; i >= 0; i-- {
				rsp := pagingResponse(got[i])
				if err := r.put(&rsp); err != nil {
					t.Fatalf("start %#x round %d: put response %d: %v", start, round, i, err)
				}
			}
			r.push()
			rsps := f.responses()
			if len(rsps) != posted {
				t.Fatalf("start %#x round %d: Xen saw %d responses, want %d", start, round, len(rsps), posted)
			}
			for i, rsp := range rsps {
				w := got[len(got)-1-i]
				if rsp.Version != hypervisor.VMEventVersion || rsp.VCPUID != w.VCPU || rsp.GFN != uint64(w.GFN) || rsp.Flags != vmEventFlagVCPUPaused {
					t.Errorf("start %#x round %d: response %d = %+v, want version 7, vcpu %d, gfn %#x, VCPU_PAUSED", start, round, i, rsp, w.VCPU, uint64(w.GFN))
				}
			}
			if f.free() != hypervisor.RingSlots {
				t.Fatalf("start %#x round %d: %d free slots after all responses, want %d", start, round, f.free(), hypervisor.RingSlots)
			}
		}
		if start >= 0xfffffff0 && r.reqCons >= start {
			t.Errorf("start %#x: req_cons = %#x after the rounds, want it wrapped past 2^32", start, r.reqCons)
		}
	}
}

func TestRingMoreResponsesThanRequests(t *testing.T) {
	page := make([]byte, hypervisor.PageSize)
	r := initBackRing(page)
	f := newFakeXen(page, 0)
	rsp := pagingResponse(hypervisor.Request{VCPU: 1, GFN: 2})
	if err := r.put(&rsp); err != errNoRequestOwed {
		t.Errorf("put on a ring with no request consumed = %v, want %v", err, errNoRequestOwed)
	}
	f.request(0, 7, vmEventFlagVCPUPaused)
	if got := r.owed(); got != 0 {
		t.Errorf("owed() before drain = %d, want 0", got)
	}
	r.drain(hypervisor.RingSlots)
	if got := r.owed(); got != 1 {
		t.Errorf("owed() after draining one = %d, want 1", got)
	}
	if err := r.put(&rsp); err != nil {
		t.Errorf("put of the one owed response = %v, want nil", err)
	}
	if err := r.put(&rsp); err != errNoRequestOwed {
		t.Errorf("second put = %v, want %v", err, errNoRequestOwed)
	}
}

func TestRingUnconsumedBoundedByResponses(t *testing.T) {
	// A misbehaving front end publishing req_prod far ahead must not make the
	// pager read more than the slots not holding unsent responses.
	page := make([]byte, hypervisor.PageSize)
	r := initBackRing(page)
	binary.LittleEndian.PutUint32(page[sringOffReqProd:], 1000)
	if got := r.unconsumed(); got != hypervisor.RingSlots {
		t.Errorf("unconsumed() with req_prod 1000 = %d, want %d", got, hypervisor.RingSlots)
	}
	r.drain(5)
	if got := r.unconsumed(); got != 3 {
		t.Errorf("unconsumed() after consuming 5 unanswered = %d, want 3", got)
	}
}

func TestRingPushNotify(t *testing.T) {
	page := make([]byte, hypervisor.PageSize)
	r := initBackRing(page)
	f := newFakeXen(page, 0)
	f.request(0, 1, vmEventFlagVCPUPaused)
	f.request(1, 2, vmEventFlagVCPUPaused)
	reqs := r.drain(hypervisor.RingSlots)
	rsp := pagingResponse(reqs[0])
	r.put(&rsp)
	// rsp_event = 1 (SHARED_RING_INIT): the first response crosses it.
	if !r.push() {
		t.Errorf("push() of response 1 with rsp_event 1 = false, want true")
	}
	rsp = pagingResponse(reqs[1])
	r.put(&rsp)
	// Xen has not moved rsp_event: the second one does not cross it.
	if r.push() {
		t.Errorf("push() of response 2 with rsp_event 1 = true, want false")
	}
}
