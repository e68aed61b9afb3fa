package sim

import (
	"fmt"

	"github.com/xenmig/xenmig/hypervisor"
)

// layout is how a guest's gfn space is divided, derived from its spec alone
// so that both ends of a migration compute the same one.
//
// The usable (non-hole) gfns, in ascending order, are split into the static
// pages (boot content, never written again; every vCPU may read and fold
// them) followed by one arena per vCPU (only that vCPU writes it). An arena
// starts with its boot pages (in use, non-zero content); the rest is free and
// zero, managed by the vCPU's page allocator. Usable gfns left over after the
// arenas are free and belong to no one.
type layout struct {
	pages  uint64             // size of the gfn space
	holes  *hypervisor.Bitmap // gfns never populated
	usable []hypervisor.GFN   // non-hole gfns, ascending, but the special ones
	// special are the xenstore and console ring pages, the two highest
	// non-hole gfns (as Xen's special region sits above a guest's RAM):
	// populated, never the guest's RAM, owned by each host's toolstack.
	special []hypervisor.GFN
	static  []hypervisor.GFN // prefix of usable
	arenas  []arena          // one per vCPU
}

// arena is the memory one vCPU owns.
type arena struct {
	pages []hypervisor.GFN // contiguous run of usable
	boot  int              // pages[:boot] are in use from boot
}

// staticShare is the fraction of the boot-time used pages that are static,
// per workload kind: web servers are mostly read-only content, sorters mostly
// private arrays.
var staticShare = map[Kind]float64{
	Idle:          0.5,
	Stress:        0.25,
	KernelCompile: 0.5,
	WebServer:     0.75,
	Quicksort:     0.125,
	Probe:         0.5,
}

// newLayout computes the layout of a validated spec.
func newLayout(s *GuestSpec) (*layout, error) {
	l := &layout{pages: s.MemoryPages, holes: hypervisor.NewBitmap(s.MemoryPages)}
	for _, h := range s.Holes {
		for g := h.Start; g < h.Start+hypervisor.GFN(h.Count); g++ {
			l.holes.Set(g)
		}
	}
	l.usable = make([]hypervisor.GFN, 0, s.MemoryPages-l.holes.Count())
	for g := hypervisor.GFN(0); uint64(g) < s.MemoryPages; g++ {
		if !l.holes.Test(g) {
			l.usable = append(l.usable, g)
		}
	}
	if len(l.usable) > specialPages {
		l.special = l.usable[len(l.usable)-specialPages:]
		l.usable = l.usable[:len(l.usable)-specialPages]
	}
	n, v := uint64(len(l.usable)), uint64(s.VCPUs)
	if n < 2*(v+1) {
		return nil, fmt.Errorf("guest spec %q: %d usable pages are too few for %d vCPUs: %w", s.Name, n, v, hypervisor.ErrInvalid)
	}
	used := min(max(s.UsedPages, v+1), n)
	static := uint64(float64(used) * staticShare[s.Workload.Kind])
	static = max(1, min(static, used-v))
	boot := (used - static) / v
	per := (n - static) / v
	l.static = l.usable[:static]
	for i := range v {
		first := static + i*per
		l.arenas = append(l.arenas, arena{pages: l.usable[first : first+per], boot: int(boot)})
	}
	return l, nil
}

// specialPages is the number of toolstack ring pages a guest has.
const specialPages = 2

// isSpecial reports whether g is one of the toolstack's ring pages.
func (l *layout) isSpecial(g hypervisor.GFN) bool {
	for _, x := range l.special {
		if x == g {
			return true
		}
	}
	return false
}

// storePFN and consolePFN are the HVM_PARAM_STORE_PFN and
// HVM_PARAM_CONSOLE_PFN of the layout (0 if it has none).
func (l *layout) storePFN() hypervisor.GFN {
	if len(l.special) < specialPages {
		return 0
	}
	return l.special[1]
}

func (l *layout) consolePFN() hypervisor.GFN {
	if len(l.special) < specialPages {
		return 0
	}
	return l.special[0]
}

// shellInitrd is how many free pages after its boot pages a shell's
// builder fills, in each arena, as a kernel's initrd would.
const shellInitrd = 256

// shellKernel bounds the boot pages a shell's builder fills, of the static
// ones and in each arena (16 MiB each): `xl create -p` loads a kernel and an initrd, not a guest's
// whole memory in use, and filling that would cost a host copy of it before
// every preparation.
const shellKernel = 4096

// shellPages returns the pages a shell is created with non-zero: the boot
// pages and, after each arena's, an initrd that is free memory to the
// guest.
func (l *layout) shellPages() []hypervisor.GFN {
	out := append([]hypervisor.GFN(nil), l.static[:min(len(l.static), shellKernel)]...)
	for _, a := range l.arenas {
		boot := min(a.boot, shellKernel)
		out = append(out, a.pages[:boot]...)
		out = append(out, a.pages[a.boot:min(len(a.pages), a.boot+shellInitrd)]...)
	}
	return out
}

// bootPages returns every page in use at boot: static and arena boot pages.
func (l *layout) bootPages() []hypervisor.GFN {
	out := append([]hypervisor.GFN(nil), l.static...)
	for _, a := range l.arenas {
		out = append(out, a.pages[:a.boot]...)
	}
	return out
}
