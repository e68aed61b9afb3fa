package xenctrl

import (
	"encoding/binary"

	"github.com/xenmig/xenmig/hypervisor"
)

// vm_event ABI of Xen 4.17 (xen/vm_event.h), little-endian x86-64.
const (
	vmEventInterfaceVersion = 7 // VM_EVENT_INTERFACE_VERSION
	vmEventReasonMemPaging  = 3 // VM_EVENT_REASON_MEM_PAGING
	vmEventFlagVCPUPaused   = 1 << 0
	memPagingDropPage       = 1 << 0

	hvmParamPagingRingPFN = 27 // HVM_PARAM_PAGING_RING_PFN
)

// vmEvent mirrors vm_event_request_t / vm_event_response_t (struct
// vm_event_st), with the union u read as struct vm_event_paging. Its fields
// are in C order with no implicit padding, so its encoding/binary form and
// its in-memory form are both the C layout: 400 bytes, u at 24, data at 56.
// Tests check this against unsafe.Offsetof and, with the xen tag, against the
// C compiler's offsetof.
type vmEvent struct {
	Version   uint32    // VM_EVENT_INTERFACE_VERSION
	Flags     uint32    // VM_EVENT_FLAG_*
	Reason    uint32    // VM_EVENT_REASON_*
	VCPUID    uint32    // vcpu_id
	Altp2mIdx uint16    // altp2m_idx
	_         [3]uint16 // _pad
	// u.mem_paging, struct vm_event_paging:
	GFN         uint64
	P2MT        uint32
	PagingFlags uint32    // MEM_PAGING_*
	_           [16]byte  // the rest of union u (32 bytes)
	Data        [344]byte // union data (registers, emulation data)
}

// Byte offsets and sizes of the C layout.
const (
	vmEventSize          = 400
	vmEventOffFlags      = 4
	vmEventOffReason     = 8
	vmEventOffVCPU       = 12
	vmEventOffAltp2m     = 16
	vmEventOffU          = 24
	vmEventOffGFN        = 24 // u.mem_paging.gfn
	vmEventOffP2MT       = 32 // u.mem_paging.p2mt
	vmEventOffPagingFlag = 36 // u.mem_paging.flags
	vmEventOffData       = 56
)

// decodeVMEvent reads a request from its ring slot (vmEventSize bytes).
func decodeVMEvent(b []byte) vmEvent {
	le := binary.LittleEndian
	return vmEvent{
		Version:     le.Uint32(b[0:]),
		Flags:       le.Uint32(b[vmEventOffFlags:]),
		Reason:      le.Uint32(b[vmEventOffReason:]),
		VCPUID:      le.Uint32(b[vmEventOffVCPU:]),
		Altp2mIdx:   le.Uint16(b[vmEventOffAltp2m:]),
		GFN:         le.Uint64(b[vmEventOffGFN:]),
		P2MT:        le.Uint32(b[vmEventOffP2MT:]),
		PagingFlags: le.Uint32(b[vmEventOffPagingFlag:]),
	}
}

// encode writes e into a ring slot (vmEventSize bytes), zeroing the rest.
func (e *vmEvent) encode(b []byte) {
	b = b[:vmEventSize]
	clear(b)
	le := binary.LittleEndian
	le.PutUint32(b[0:], e.Version)
	le.PutUint32(b[vmEventOffFlags:], e.Flags)
	le.PutUint32(b[vmEventOffReason:], e.Reason)
	le.PutUint32(b[vmEventOffVCPU:], e.VCPUID)
	le.PutUint16(b[vmEventOffAltp2m:], e.Altp2mIdx)
	le.PutUint64(b[vmEventOffGFN:], e.GFN)
	le.PutUint32(b[vmEventOffP2MT:], e.P2MT)
	le.PutUint32(b[vmEventOffPagingFlag:], e.PagingFlags)
}

// request converts a ring request to the contract's type.
func (e *vmEvent) request() hypervisor.Request {
	return hypervisor.Request{
		VCPU:        e.VCPUID,
		GFN:         hypervisor.GFN(e.GFN),
		Flags:       e.Flags,
		PagingFlags: e.PagingFlags,
	}
}

// pagingResponse is the response that resumes the vCPU r paused: version 7
// (Xen drops any other and the vCPU stays paused), reason MEM_PAGING, the
// vCPU, the VCPU_PAUSED flag echoed (Xen unpauses only when it is set), the
// gfn, and DROP_PAGE echoed so Xen leaves a dropped gfn's p2m entry alone.
func pagingResponse(r hypervisor.Request) vmEvent {
	return vmEvent{
		Version:     vmEventInterfaceVersion,
		Reason:      vmEventReasonMemPaging,
		VCPUID:      r.VCPU,
		Flags:       r.Flags & vmEventFlagVCPUPaused,
		GFN:         uint64(r.GFN),
		PagingFlags: r.PagingFlags & memPagingDropPage,
	}
}
