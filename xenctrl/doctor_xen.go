//go:build xen && linux

package xenctrl

/*
#include "xenshim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"github.com/xenmig/xenmig/hypervisor"
)

// probeDomID is the domain id the paging probe names: unused (checked), and
// below DOMID_FIRST_RESERVED.
const probeDomID = 0x7fef

// Doctor reports what this host can do: it opens the hypervisor (Open with
// opts), reads Xen's version (xc_version XENVER_version, _extraversion,
// _capabilities) and vm_event version (xc_vm_event_get_version), probes for
// mem_paging without touching any guest (see PagingProbe), checks that dom0
// is PV, and, if domain is not empty, checks that guest's preconditions
// (CheckGuest, GuestWarnings). It never fails: what it cannot find out is a
// problem in the report.
func Doctor(domain string, opts ...Option) *Report {
	r := &Report{BackendBuilt: true, PagingProbe: PagingProbe}
	defer r.finish()
	if domain != "" {
		r.Guest = &GuestReport{Name: domain}
	}
	h, err := Open(opts...)
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
		return r
	}
	defer h.Close()
	r.Reachable = true
	r.Version, r.Capabilities = h.version()
	if v := C.xc_vm_event_get_version(h.xch); v > 0 {
		r.VMEventVersion = int(v)
		if v != vmEventInterfaceVersion {
			r.Problems = append(r.Problems, fmt.Sprintf("the hypervisor speaks vm_event interface %d, xenmig speaks %d: responses would be dropped", v, vmEventInterfaceVersion))
		}
	}

	paging, err := h.probePaging()
	r.Paging = paging
	if err != nil {
		r.Warnings = append(r.Warnings, err.Error())
	}
	if !paging {
		r.Problems = append(r.Problems, MsgPagingUnsupported)
	}

	if dom0, err := h.Info(0); err != nil {
		r.Problems = append(r.Problems, err.Error())
	} else if err := CheckDom0(dom0); err != nil {
		r.Problems = append(r.Problems, err.Error())
	} else {
		r.Dom0PV = true
	}

	if domain != "" {
		id, err := h.Lookup(domain)
		if err != nil {
			r.Guest.Problems = append(r.Guest.Problems, err.Error())
			return r
		}
		info, err := h.Info(id)
		if err != nil {
			r.Guest.Problems = append(r.Guest.Problems, err.Error())
			return r
		}
		r.Guest = checkGuestReport(domain, info)
	}
	return r
}

// version returns "major.minor<extra>" and the capabilities string.
func (h *Host) version() (string, string) {
	v := C.xc_version(h.xch, C.XENVER_version, nil)
	if v < 0 {
		return "", ""
	}
	var extra [16]C.char // xen_extraversion_t
	C.xc_version(h.xch, C.XENVER_extraversion, unsafe.Pointer(&extra[0]))
	var caps [1024]C.char // xen_capabilities_info_t
	C.xc_version(h.xch, C.XENVER_capabilities, unsafe.Pointer(&caps[0]))
	extra[len(extra)-1], caps[len(caps)-1] = 0, 0
	return fmt.Sprintf("%d.%d%s", v>>16, v&0xffff, C.GoString(&extra[0])), C.GoString(&caps[0])
}

// probePaging tells whether the hypervisor has mem_paging, by
// XENMEM_paging_op (nominate) on a domain id that does not exist: ENOSYS
// without CONFIG_MEM_PAGING, ESRCH with it (see PagingProbe). The error, if
// any, says why the answer is a guess.
func (h *Host) probePaging() (bool, error) {
	if _, err := h.rawInfo(probeDomID); !errors.Is(err, hypervisor.ErrNotFound) {
		return true, fmt.Errorf("paging probe skipped: domain %d exists; assuming paging is available", probeDomID)
	}
	rc, err := C.xc_mem_paging_nominate(h.xch, probeDomID, C.uint64_t(^uint64(0)>>12))
	if rc == 0 {
		return true, nil
	}
	switch errnoOf(err) {
	case syscall.ENOSYS:
		return false, nil
	case syscall.ESRCH, syscall.EINVAL:
		return true, nil
	}
	return true, fmt.Errorf("paging probe inconclusive: %w", newError(classPagingOp, "xc_mem_paging_nominate", probeDomID, err))
}
