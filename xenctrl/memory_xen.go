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

// MaxGFN wraps xc_domain_maximum_gpfn.
func (h *Host) MaxGFN(d hypervisor.DomID) (hypervisor.GFN, error) {
	var g C.xen_pfn_t
	if rc, err := C.xc_domain_maximum_gpfn(h.xch, C.uint32_t(d), &g); rc < 0 {
		return 0, newError(classDomain, "xc_domain_maximum_gpfn", d, err)
	}
	return hypervisor.GFN(g), nil
}

// Populated wraps xc_get_pfn_type_batch over [0, MaxGFN] in batches of 1024:
// every gfn whose type is not XEN_DOMCTL_PFINFO_XTAB. Xen reports a paged-out
// gfn as XTAB (and the lookup asks the pager to bring it back), so on real
// Xen call it on a domain with no paged-out gfns, as the source of a
// migration is.
func (h *Host) Populated(d hypervisor.DomID) (*hypervisor.Bitmap, error) {
	maxg, err := h.MaxGFN(d)
	if err != nil {
		return nil, err
	}
	n := uint64(maxg) + 1
	bm := hypervisor.NewBitmap(n)
	arr := make([]uint64, pfnTypeBatch)
	for first := uint64(0); first < n; first += pfnTypeBatch {
		k := min(uint64(pfnTypeBatch), n-first)
		batch := arr[:k]
		gfnRange(batch, hypervisor.GFN(first))
		rc, err := C.xc_get_pfn_type_batch(h.xch, C.uint32_t(d), C.uint(k), (*C.xen_pfn_t)(unsafe.Pointer(&batch[0])))
		if rc != 0 {
			return nil, newError(classDomain, "xc_get_pfn_type_batch", d, err).withGFN(hypervisor.GFN(first))
		}
		markPopulated(bm, hypervisor.GFN(first), batch)
	}
	return bm, nil
}

// mapBatch is the largest number of gfns mapped at once by ReadPages and
// WritePages.
const mapBatch = 512

// ReadPages wraps xenforeignmemory_map(PROT_READ) of batches of gfns with a
// per-gfn err[] array, copies the pages out and unmaps them. A gfn that
// failed to map fails the call with a *hypervisor.PageError: ErrPaged for
// ENOENT/EAGAIN (paged out), ErrNotPopulated for EINVAL/EFAULT (a hole).
func (h *Host) ReadPages(d hypervisor.DomID, gfns []hypervisor.GFN, dst []byte) error {
	if len(dst) < len(gfns)*hypervisor.PageSize {
		return fmt.Errorf("xenctrl: read %d pages of domain %d into %d bytes: %w", len(gfns), d, len(dst), hypervisor.ErrInvalid)
	}
	return h.mapPages(d, "read", C.PROT_READ, gfns, func(i int, page []byte) {
		copy(dst[i*hypervisor.PageSize:(i+1)*hypervisor.PageSize], page)
	})
}

// WritePages wraps xenforeignmemory_map(PROT_READ|PROT_WRITE) of batches of
// gfns, copies the pages in and unmaps them; per-gfn failures as ReadPages.
func (h *Host) WritePages(d hypervisor.DomID, gfns []hypervisor.GFN, src []byte) error {
	if len(src) < len(gfns)*hypervisor.PageSize {
		return fmt.Errorf("xenctrl: write %d pages of domain %d from %d bytes: %w", len(gfns), d, len(src), hypervisor.ErrInvalid)
	}
	return h.mapPages(d, "write", C.PROT_READ|C.PROT_WRITE, gfns, func(i int, page []byte) {
		copy(page, src[i*hypervisor.PageSize:(i+1)*hypervisor.PageSize])
	})
}

// mapPages maps gfns in batches and calls f(i, page) for each, gfns[i]'s
// mapping. The mapping is unmapped before mapPages returns.
func (h *Host) mapPages(d hypervisor.DomID, op string, prot C.int, gfns []hypervisor.GFN, f func(int, []byte)) error {
	arr := make([]uint64, min(len(gfns), mapBatch))
	errs := make([]C.int, len(arr))
	for base := 0; base < len(gfns); base += mapBatch {
		k := min(mapBatch, len(gfns)-base)
		for i := 0; i < k; i++ {
			arr[i] = uint64(gfns[base+i])
		}
		addr, err := C.xenforeignmemory_map(h.fmem, C.uint32_t(d), prot, C.size_t(k),
			(*C.xen_pfn_t)(unsafe.Pointer(&arr[0])), &errs[0])
		if addr == nil {
			return pageError(op, gfns[base], newError(classForeign, "xenforeignmemory_map", d, err))
		}
		mem := unsafe.Slice((*byte)(addr), k*hypervisor.PageSize)
		for i := 0; i < k; i++ {
			if e := errs[i]; e != 0 {
				C.xenforeignmemory_unmap(h.fmem, addr, C.size_t(k))
				errno := syscall.Errno(e)
				if e < 0 {
					errno = syscall.Errno(-e)
				}
				pe := &Error{Call: "xenforeignmemory_map", Dom: d, HasDom: true, Errno: errno, Kind: sentinel(classForeign, errno)}
				return pageError(op, gfns[base+i], pe)
			}
		}
		for i := 0; i < k; i++ {
			f(base+i, mem[i*hypervisor.PageSize:(i+1)*hypervisor.PageSize])
		}
		C.xenforeignmemory_unmap(h.fmem, addr, C.size_t(k))
	}
	return nil
}

// reservationBatch is the number of gfns per populate/decrease call, so a
// failure can be pinned to a small range.
const reservationBatch = 1024

// Populate wraps xc_domain_populate_physmap_exact(xch, d, n, 0, 0, gfns) in
// batches; a failure names the first gfn of the failed batch.
func (h *Host) Populate(d hypervisor.DomID, gfns []hypervisor.GFN) error {
	return h.reservation(d, gfns, "xc_domain_populate_physmap_exact", func(n int, arr *C.xen_pfn_t) (C.int, error) {
		rc, err := C.xc_domain_populate_physmap_exact(h.xch, C.uint32_t(d), C.ulong(n), 0, 0, arr)
		return rc, err
	})
}

// Depopulate wraps xc_domain_decrease_reservation_exact(xch, d, n, 0, gfns)
// in batches; a failure names the first gfn of the failed batch.
func (h *Host) Depopulate(d hypervisor.DomID, gfns []hypervisor.GFN) error {
	return h.reservation(d, gfns, "xc_domain_decrease_reservation_exact", func(n int, arr *C.xen_pfn_t) (C.int, error) {
		rc, err := C.xc_domain_decrease_reservation_exact(h.xch, C.uint32_t(d), C.ulong(n), 0, arr)
		return rc, err
	})
}

func (h *Host) reservation(d hypervisor.DomID, gfns []hypervisor.GFN, call string, f func(int, *C.xen_pfn_t) (C.int, error)) error {
	arr := make([]uint64, min(len(gfns), reservationBatch))
	for base := 0; base < len(gfns); base += reservationBatch {
		k := min(reservationBatch, len(gfns)-base)
		for i := 0; i < k; i++ {
			arr[i] = uint64(gfns[base+i])
		}
		if rc, err := f(k, (*C.xen_pfn_t)(unsafe.Pointer(&arr[0]))); rc != 0 {
			e := newError(classDomain, call, d, err).withGFN(gfns[base])
			if k > 1 {
				e.Detail = fmt.Sprintf("in the batch of %d gfns starting there", k)
			}
			return e
		}
	}
	return nil
}

// Log-dirty operations (xen/domctl.h XEN_DOMCTL_SHADOW_OP_*).
const (
	shadowOpOff            = 0
	shadowOpEnableLogDirty = 2
	shadowOpClean          = 11
	shadowOpPeek           = 12
)

// EnableLogDirty wraps xc_shadow_control(XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY),
// then cleans the log once so every page starts clean.
func (h *Host) EnableLogDirty(d hypervisor.DomID) error {
	h.shadowMu.Lock()
	rc, err := C.xc_shadow_control(h.xch, C.uint32_t(d), shadowOpEnableLogDirty, nil, 0)
	h.shadowMu.Unlock()
	if rc != 0 {
		return newError(classDomain, "xc_shadow_control(ENABLE_LOGDIRTY)", d, err)
	}
	_, err = h.DirtyLog(d, true)
	return err
}

// DirtyLog wraps xc_logdirty_control(XEN_DOMCTL_SHADOW_OP_CLEAN, or _PEEK
// without clean) over [0, MaxGFN], through a C helper that owns the
// hypercall buffer the bitmap must live in.
func (h *Host) DirtyLog(d hypervisor.DomID, clean bool) (*hypervisor.Bitmap, error) {
	maxg, err := h.MaxGFN(d)
	if err != nil {
		return nil, err
	}
	n := uint64(maxg) + 1
	words := make([]uint64, bitmapWords(n))
	sop, call := C.uint(shadowOpPeek), "xc_logdirty_control(PEEK)"
	if clean {
		sop, call = shadowOpClean, "xc_logdirty_control(CLEAN)"
	}
	h.shadowMu.Lock()
	defer h.shadowMu.Unlock()
	if rc, err := C.xenmig_logdirty(h.xch, C.uint32_t(d), sop, (*C.uint64_t)(unsafe.Pointer(&words[0])), C.ulong(n)); rc < 0 {
		return nil, newError(classDomain, call, d, err)
	}
	return hypervisor.BitmapFromWords(words, n), nil
}

// DisableLogDirty wraps xc_shadow_control(XEN_DOMCTL_SHADOW_OP_OFF).
func (h *Host) DisableLogDirty(d hypervisor.DomID) error {
	h.shadowMu.Lock()
	defer h.shadowMu.Unlock()
	if rc, err := C.xc_shadow_control(h.xch, C.uint32_t(d), shadowOpOff, nil, 0); rc != 0 {
		return newError(classDomain, "xc_shadow_control(OFF)", d, err)
	}
	return nil
}
