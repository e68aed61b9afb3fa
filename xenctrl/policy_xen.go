//go:build xen && linux

package xenctrl

/*
#include "xenshim.h"
*/
import "C"

import (
	"fmt"
	"syscall"
	"unsafe"

	"github.com/xenmig/xenmig/hypervisor"
)

// HVM parameters of the toolstack's ring pages (xen/hvm/params.h).
const (
	hvmParamStorePFN   = 1
	hvmParamConsolePFN = 17
)

// cpuPolicyOf returns d's CPUID and MSR policy, serialised: xc_cpu_policy_get_size
// for the array sizes, then xc_cpu_policy_get_domain and
// xc_cpu_policy_serialise (xenmig_cpu_policy_get), as Xen's saver does
// for its X86_CPUID_POLICY and X86_MSR_POLICY records.
func (h *Host) cpuPolicyOf(d hypervisor.DomID) ([]byte, error) {
	var nl, nm C.uint32_t
	if rc, err := C.xc_cpu_policy_get_size(h.xch, &nl, &nm); rc != 0 {
		return nil, newError(classDomain, "xc_cpu_policy_get_size", d, err)
	}
	leaves := make([]C.xen_cpuid_leaf_t, max(nl, 1))
	msrs := make([]C.xen_msr_entry_t, max(nm, 1))
	if rc, err := C.xenmig_cpu_policy_get(h.xch, C.uint32_t(d), &leaves[0], &nl, &msrs[0], &nm); rc != 0 {
		return nil, newError(classDomain, "xc_cpu_policy_get_domain", d, err)
	}
	p := cpuPolicy{nrLeaves: uint32(nl), nrMSRs: uint32(nm),
		leaves: C.GoBytes(unsafe.Pointer(&leaves[0]), C.int(nl)*cpuidLeafSize),
		msrs:   C.GoBytes(unsafe.Pointer(&msrs[0]), C.int(nm)*msrEntrySize)}
	return p.marshal(), nil
}

// setCPUPolicy applies a serialised policy to d before it first runs:
// xc_set_domain_cpu_policy, which audits it against what this host can
// offer (XEN_DOMCTL_set_cpu_policy), as Xen's restore does with the
// source's policy records. A policy this host cannot run fails with
// hypervisor.ErrIncompatible naming the first leaf or MSR at fault.
func (h *Host) setCPUPolicy(d hypervisor.DomID, policy []byte) error {
	p, err := unmarshalCPUPolicy(policy)
	if err != nil {
		return err
	}
	// The arrays are copied into C memory (one spare entry each, so that
	// neither is empty): the library bounces them, but this keeps Go
	// memory out of the call entirely.
	cl := C.calloc(C.size_t(p.nrLeaves)+1, cpuidLeafSize)
	defer C.free(cl)
	copy(unsafe.Slice((*byte)(cl), len(p.leaves)), p.leaves)
	cm := C.calloc(C.size_t(p.nrMSRs)+1, msrEntrySize)
	defer C.free(cm)
	copy(unsafe.Slice((*byte)(cm), len(p.msrs)), p.msrs)
	errLeaf, errSub, errMSR := C.uint32_t(^uint32(0)), C.uint32_t(^uint32(0)), C.uint32_t(^uint32(0))
	rc, cerr := C.xc_set_domain_cpu_policy(h.xch, C.uint32_t(d), C.uint32_t(p.nrLeaves), (*C.xen_cpuid_leaf_t)(cl),
		C.uint32_t(p.nrMSRs), (*C.xen_msr_entry_t)(cm), &errLeaf, &errSub, &errMSR)
	if rc == 0 {
		return nil
	}
	e := newError(classDomain, "xc_set_domain_cpu_policy", d, cerr)
	switch errnoOf(cerr) {
	case syscall.EINVAL, syscall.EPERM, syscall.EOPNOTSUPP, syscall.ERANGE, syscall.EOVERFLOW:
		e.Kind = hypervisor.ErrIncompatible
		e.Detail = fmt.Sprintf("this host cannot offer the guest's CPU features (CPUID leaf %#x subleaf %#x, MSR %#x; "+
			"%#x means none named): migrate to a host with the same or a newer CPU", uint32(errLeaf), uint32(errSub), uint32(errMSR), ^uint32(0))
	}
	return e
}

// specialPages returns d's xenstore and console ring gfns
// (xc_hvm_param_get of HVM_PARAM_CONSOLE_PFN and HVM_PARAM_STORE_PFN), those
// that are set.
func (h *Host) specialPages(d hypervisor.DomID) ([]hypervisor.GFN, error) {
	var out []hypervisor.GFN
	for _, p := range []uint32{hvmParamConsolePFN, hvmParamStorePFN} {
		var v C.uint64_t
		if rc, err := C.xc_hvm_param_get(h.xch, C.uint32_t(d), C.uint32_t(p), &v); rc != 0 {
			e := newError(classDomain, "xc_hvm_param_get", d, err)
			e.Detail = fmt.Sprintf("HVM param %d", p)
			return nil, e
		}
		if v != 0 {
			out = append(out, hypervisor.GFN(v))
		}
	}
	return out, nil
}
