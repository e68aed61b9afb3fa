package xenctrl

import "github.com/xenmig/xenmig/hypervisor"

// Page types of XEN_DOMCTL_getpageframeinfo3 (xen/domctl.h), as
// xc_get_pfn_type_batch writes them over its array of gfns.
const (
	pfinfoLTabMask = 0xf << 28 // XEN_DOMCTL_PFINFO_LTAB_MASK
	pfinfoXTab     = 0xf << 28 // XEN_DOMCTL_PFINFO_XTAB: no memory behind the gfn
	pfinfoXAlloc   = 0xe << 28 // XEN_DOMCTL_PFINFO_XALLOC: allocate-only
	pfinfoBroken   = 0xd << 28 // XEN_DOMCTL_PFINFO_BROKEN: broken page

	// pfnTypeBatch is the most gfns one getpageframeinfo3 takes (E2BIG above).
	pfnTypeBatch = 1024
)

// populatedType reports whether a page type from xc_get_pfn_type_batch means
// memory is behind the gfn: every type but XTAB. Broken pages count as
// populated (reading them fails, which the engine must hear about), XALLOC
// too (the saver sends no data for them but they are allocated).
func populatedType(t uint64) bool { return t&pfinfoLTabMask != pfinfoXTab }

// markPopulated sets, in bm, the gfns first, first+1, ... whose type in types
// is populated.
func markPopulated(bm *hypervisor.Bitmap, first hypervisor.GFN, types []uint64) {
	for i, t := range types {
		if populatedType(t) {
			bm.Set(first + hypervisor.GFN(i))
		}
	}
}

// gfnRange fills dst with first, first+1, ... (the input of a type batch).
func gfnRange(dst []uint64, first hypervisor.GFN) {
	for i := range dst {
		dst[i] = uint64(first) + uint64(i)
	}
}

// bitmapWords is the number of 64-bit words (C unsigned long on x86-64) of a
// log-dirty bitmap of n gfns.
func bitmapWords(n uint64) uint64 { return (n + 63) / 64 }
