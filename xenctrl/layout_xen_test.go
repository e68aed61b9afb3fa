//go:build xen && linux

package xenctrl

import (
	"testing"
	"unsafe"

	"github.com/xenmig/xenmig/hypervisor"
)

// TestCLayout compares the Go mirror of vm_event_st, the ring header offsets
// and the ABI constants with what the C compiler sees in Xen's headers.
// (xenshim.c also asserts them at build time.)
func TestCLayout(t *testing.T) {
	c := getCLayout()
	var e vmEvent
	for _, tt := range []struct {
		name    string
		goV, cV uintptr
	}{
		{"sizeof(vm_event_request_t)", unsafe.Sizeof(e), c.ReqSize},
		{"sizeof(vm_event_response_t)", unsafe.Sizeof(e), c.RspSize},
		{"version", unsafe.Offsetof(e.Version), c.OffVersion},
		{"flags", unsafe.Offsetof(e.Flags), c.OffFlags},
		{"reason", unsafe.Offsetof(e.Reason), c.OffReason},
		{"vcpu_id", unsafe.Offsetof(e.VCPUID), c.OffVCPU},
		{"altp2m_idx", unsafe.Offsetof(e.Altp2mIdx), c.OffAltp2m},
		{"u", vmEventOffU, c.OffU},
		{"u.mem_paging.gfn", unsafe.Offsetof(e.GFN), c.OffPagingGFN},
		{"u.mem_paging.p2mt", unsafe.Offsetof(e.P2MT), c.OffPagingP2MT},
		{"u.mem_paging.flags", unsafe.Offsetof(e.PagingFlags), c.OffPagingFlags},
		{"data", unsafe.Offsetof(e.Data), c.OffData},
		{"sring.req_prod", sringOffReqProd, c.SringReqProd},
		{"sring.req_event", sringOffReqEvent, c.SringReqEvent},
		{"sring.rsp_prod", sringOffRspProd, c.SringRspProd},
		{"sring.rsp_event", sringOffRspEvent, c.SringRspEvent},
		{"sring.pvt", sringOffPvt, c.SringPvt},
		{"sring.ring", sringOffRing, c.SringRing},
		{"__CONST_RING_SIZE(vm_event, 4096)", uintptr(ringEntries(hypervisor.PageSize, vmEventSize)), c.RingSize},
		{"RingSlots", hypervisor.RingSlots, c.RingSize},
	} {
		if tt.goV != tt.cV {
			t.Errorf("%s: Go %d, C %d", tt.name, tt.goV, tt.cV)
		}
	}
	for _, tt := range []struct {
		name    string
		goV, cV uint32
	}{
		{"VM_EVENT_INTERFACE_VERSION", vmEventInterfaceVersion, c.Version},
		{"VM_EVENT_FLAG_VCPU_PAUSED", hypervisor.FlagVCPUPaused, c.FlagVCPUPaused},
		{"VM_EVENT_FLAG_FOREIGN", hypervisor.FlagForeign, c.FlagForeign},
		{"VM_EVENT_REASON_MEM_PAGING", vmEventReasonMemPaging, c.ReasonMemPaging},
		{"MEM_PAGING_DROP_PAGE", hypervisor.PagingDropPage, c.DropPage},
		{"MEM_PAGING_EVICT_FAIL", hypervisor.PagingEvictFail, c.EvictFail},
		{"HVM_PARAM_PAGING_RING_PFN", hvmParamPagingRingPFN, c.ParamPagingRingPFN},
		{"XEN_DOMCTL_PFINFO_XTAB", pfinfoXTab, c.PFInfoXTab},
		{"XEN_DOMCTL_PFINFO_LTAB_MASK", pfinfoLTabMask, c.PFInfoLTabMask},
	} {
		if tt.goV != tt.cV {
			t.Errorf("%s: Go %#x, C %#x", tt.name, tt.goV, tt.cV)
		}
	}
}
