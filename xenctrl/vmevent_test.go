package xenctrl

import (
	"encoding/binary"
	"testing"
	"unsafe"

	"github.com/xenmig/xenmig/hypervisor"
)

func TestVMEventLayout(t *testing.T) {
	var e vmEvent
	for _, tt := range []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(vm_event_st)", unsafe.Sizeof(e), vmEventSize},
		{"version", unsafe.Offsetof(e.Version), 0},
		{"flags", unsafe.Offsetof(e.Flags), vmEventOffFlags},
		{"reason", unsafe.Offsetof(e.Reason), vmEventOffReason},
		{"vcpu_id", unsafe.Offsetof(e.VCPUID), vmEventOffVCPU},
		{"altp2m_idx", unsafe.Offsetof(e.Altp2mIdx), vmEventOffAltp2m},
		{"u.mem_paging.gfn", unsafe.Offsetof(e.GFN), vmEventOffGFN},
		{"u", unsafe.Offsetof(e.GFN), vmEventOffU},
		{"u.mem_paging.p2mt", unsafe.Offsetof(e.P2MT), vmEventOffP2MT},
		{"u.mem_paging.flags", unsafe.Offsetof(e.PagingFlags), vmEventOffPagingFlag},
		{"data", unsafe.Offsetof(e.Data), vmEventOffData},
		{"binary size", uintptr(binary.Size(e)), vmEventSize},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %d, want %d", tt.name, tt.got, tt.want)
		}
	}
	// The reference measured these on Xen 4.17's headers.
	if vmEventSize != 400 || vmEventOffData != 56 || sringOffRing != 64 {
		t.Errorf("C layout constants = size %d, data @%d, ring @%d; want 400, 56, 64", vmEventSize, vmEventOffData, sringOffRing)
	}
}

func TestVMEventEncoding(t *testing.T) {
	in := vmEvent{Version: 7, Flags: 3, Reason: 3, VCPUID: 5, Altp2mIdx: 9, GFN: 0x123456789, P2MT: 12, PagingFlags: 2}
	b := make([]byte, vmEventSize)
	for i := range b {
		b[i] = 0xff
	}
	in.encode(b)
	// Field by field, little-endian at the C offsets.
	le := binary.LittleEndian
	for _, tt := range []struct {
		name      string
		got, want uint64
	}{
		{"version", uint64(le.Uint32(b[0:])), 7},
		{"flags", uint64(le.Uint32(b[4:])), 3},
		{"reason", uint64(le.Uint32(b[8:])), 3},
		{"vcpu_id", uint64(le.Uint32(b[12:])), 5},
		{"altp2m_idx", uint64(le.Uint16(b[16:])), 9},
		{"_pad", uint64(le.Uint16(b[18:])) | uint64(le.Uint32(b[20:]))<<16, 0},
		{"u.mem_paging.gfn", le.Uint64(b[24:]), 0x123456789},
		{"u.mem_paging.p2mt", uint64(le.Uint32(b[32:])), 12},
		{"u.mem_paging.flags", uint64(le.Uint32(b[36:])), 2},
	} {
		if tt.got != tt.want {
			t.Errorf("encoded %s = %#x, want %#x", tt.name, tt.got, tt.want)
		}
	}
	for i := 40; i < vmEventSize; i++ {
		if b[i] != 0 {
			t.Fatalf("encoded byte %d = %#x, want 0 (rest of u and data cleared)", i, b[i])
		}
	}
	// decode(encode(x)) == x.
	if out := decodeVMEvent(b); out != in {
		t.Errorf("decodeVMEvent(encode(%+v)) = %+v", in, out)
	}
	// The in-memory form of the mirror struct is the same bytes.
	mem := unsafe.Slice((*byte)(unsafe.Pointer(&in)), vmEventSize)
	for i := 0; i < 40; i++ {
		if mem[i] != b[i] && !(i >= 18 && i < 24) {
			t.Fatalf("in-memory byte %d = %#x, encoded %#x", i, mem[i], b[i])
		}
	}
}

func TestPagingResponse(t *testing.T) {
	for _, tt := range []struct {
		name                 string
		req                  hypervisor.Request
		wantFlags, wantPFlag uint32
	}{
		{"paused vcpu", hypervisor.Request{VCPU: 2, GFN: 0x42, Flags: hypervisor.FlagVCPUPaused}, vmEventFlagVCPUPaused, 0},
		{"foreign, nothing paused", hypervisor.Request{VCPU: 0, GFN: 0x42, Flags: hypervisor.FlagForeign}, 0, 0},
		{"paused, evict failed", hypervisor.Request{VCPU: 1, GFN: 0x42, Flags: hypervisor.FlagVCPUPaused, PagingFlags: hypervisor.PagingEvictFail}, vmEventFlagVCPUPaused, 0},
		{"dropped page", hypervisor.Request{VCPU: 3, GFN: 0x42, PagingFlags: hypervisor.PagingDropPage}, 0, memPagingDropPage},
		{"every flag", hypervisor.Request{VCPU: 3, GFN: 0x42, Flags: 0xffffffff, PagingFlags: 0xffffffff}, vmEventFlagVCPUPaused, memPagingDropPage},
	} {
		rsp := pagingResponse(tt.req)
		if rsp.Version != hypervisor.VMEventVersion {
			t.Errorf("%s: response version = %d, want %d", tt.name, rsp.Version, hypervisor.VMEventVersion)
		}
		if rsp.Reason != vmEventReasonMemPaging {
			t.Errorf("%s: response reason = %d, want %d", tt.name, rsp.Reason, vmEventReasonMemPaging)
		}
		if rsp.VCPUID != tt.req.VCPU || rsp.GFN != uint64(tt.req.GFN) {
			t.Errorf("%s: response vcpu %d gfn %#x, want %d %#x", tt.name, rsp.VCPUID, rsp.GFN, tt.req.VCPU, uint64(tt.req.GFN))
		}
		if rsp.Flags != tt.wantFlags {
			t.Errorf("%s: response flags = %#x, want %#x", tt.name, rsp.Flags, tt.wantFlags)
		}
		if rsp.PagingFlags != tt.wantPFlag {
			t.Errorf("%s: response mem_paging.flags = %#x, want %#x", tt.name, rsp.PagingFlags, tt.wantPFlag)
		}
	}
	// The contract's flag values are the ABI's.
	if hypervisor.FlagVCPUPaused != vmEventFlagVCPUPaused || hypervisor.PagingDropPage != memPagingDropPage || hypervisor.VMEventVersion != vmEventInterfaceVersion {
		t.Errorf("contract constants differ from the vm_event ABI")
	}
}
