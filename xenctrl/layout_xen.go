//go:build xen && linux

package xenctrl

/*
#include "xenshim.h"
*/
import "C"

// cLayout is the C compiler's view of the structures and constants the Go
// side mirrors (xenmig_get_layout in xenshim.c); tests compare them, since
// test files cannot use cgo.
type cLayout struct {
	ReqSize, RspSize                                                    uintptr
	OffVersion, OffFlags, OffReason, OffVCPU, OffAltp2m                 uintptr
	OffU, OffPagingGFN, OffPagingP2MT, OffPagingFlags, OffData          uintptr
	SringReqProd, SringReqEvent, SringRspProd, SringRspEvent, SringPvt  uintptr
	SringRing, RingSize                                                 uintptr
	Version, FlagVCPUPaused, FlagForeign, ReasonMemPaging               uint32
	DropPage, EvictFail, ParamPagingRingPFN, PFInfoXTab, PFInfoLTabMask uint32
	DomainInfoSize                                                      uintptr
}

func getCLayout() cLayout {
	var l C.struct_xenmig_layout
	C.xenmig_get_layout(&l)
	return cLayout{
		ReqSize: uintptr(l.req_size), RspSize: uintptr(l.rsp_size),
		OffVersion: uintptr(l.off_version), OffFlags: uintptr(l.off_flags),
		OffReason: uintptr(l.off_reason), OffVCPU: uintptr(l.off_vcpu_id),
		OffAltp2m: uintptr(l.off_altp2m_idx), OffU: uintptr(l.off_u),
		OffPagingGFN: uintptr(l.off_paging_gfn), OffPagingP2MT: uintptr(l.off_paging_p2mt),
		OffPagingFlags: uintptr(l.off_paging_flags), OffData: uintptr(l.off_data),
		SringReqProd: uintptr(l.sring_off_req_prod), SringReqEvent: uintptr(l.sring_off_req_event),
		SringRspProd: uintptr(l.sring_off_rsp_prod), SringRspEvent: uintptr(l.sring_off_rsp_event),
		SringPvt: uintptr(l.sring_off_pvt), SringRing: uintptr(l.sring_off_ring),
		RingSize: uintptr(l.ring_size),
		Version:  uint32(l.interface_version), FlagVCPUPaused: uint32(l.flag_vcpu_paused),
		FlagForeign: uint32(l.flag_foreign), ReasonMemPaging: uint32(l.reason_mem_paging),
		DropPage: uint32(l.drop_page), EvictFail: uint32(l.evict_fail),
		ParamPagingRingPFN: uint32(l.hvm_param_paging_ring_pfn),
		PFInfoXTab:         uint32(l.pfinfo_xtab), PFInfoLTabMask: uint32(l.pfinfo_ltab_mask),
		DomainInfoSize: uintptr(l.domaininfo_size),
	}
}
