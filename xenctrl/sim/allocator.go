package sim

import (
	"math/bits"
	"sort"

	"github.com/xenmig/xenmig/hypervisor"
)

// The guest's page allocator. Each vCPU allocates only in its own arena, so
// which page an allocation returns depends on the vCPU's context alone, never
// on how vCPUs interleave. Free pages are zero: freeing clears a page first
// (init_on_free), so ballooning them out or in changes no content.

// unpublish withdraws the vCPU's published gfn before it takes
// d.guestMu: the balloon driver holds that lock while it waits in quiesce.
func (v *vcpu) unpublish() {
	if v.cur != noGFN {
		v.cur = noGFN
		v.curPub.Store(noGFN)
	}
}

// allocPage allocates the lowest free page of the vCPU's arena and returns
// its arena index; ok is false if the arena is full.
func (v *vcpu) allocPage() (i int, ok bool) {
	v.unpublish()
	v.d.guestMu.Lock()
	defer v.d.guestMu.Unlock()
	for wi, w := range v.alloc {
		if w == ^uint64(0) {
			continue
		}
		i = wi*64 + bits.TrailingZeros64(^w)
		if i >= len(v.arena.pages) {
			return 0, false
		}
		v.claimLocked(i)
		return i, true
	}
	return 0, false
}

// claimPage allocates arena page i if it is free.
func (v *vcpu) claimPage(i int) {
	v.unpublish()
	v.d.guestMu.Lock()
	defer v.d.guestMu.Unlock()
	if v.alloc[i/64]&(1<<(i%64)) == 0 {
		v.claimLocked(i)
	}
}

// claimLocked marks arena page i in use, bringing it back from the balloon
// (populating it) if it was ballooned out; d.guestMu must be held.
func (v *vcpu) claimLocked(i int) {
	v.alloc[i/64] |= 1 << (i % 64)
	v.d.inUse++
	if g := v.arena.pages[i]; v.d.mem.state(g) == stUnpopulated {
		if err := v.d.populate(g); err != nil {
			v.d.log.WithError(err).Warn("deflate balloon")
		}
	}
}

// freePage zeroes arena page i and returns it to the free pool.
func (v *vcpu) freePage(i int) {
	v.zeroPage(v.arena.pages[i])
	v.unpublish()
	v.d.guestMu.Lock()
	defer v.d.guestMu.Unlock()
	v.alloc[i/64] &^= 1 << (i % 64)
	v.d.inUse--
}

// inUseLocked reports whether the guest uses g: a static page or an
// allocated arena page; d.guestMu must be held.
func (d *domain) inUseLocked(g hypervisor.GFN) bool {
	l := d.lay
	if l.isSpecial(g) {
		return true // the toolstack's ring page: never the guest's to free
	}
	idx := sort.Search(len(l.usable), func(i int) bool { return l.usable[i] >= g })
	if idx == len(l.usable) || l.usable[idx] != g {
		return false // a hole
	}
	if idx < len(l.static) {
		return true
	}
	per := len(l.arenas[0].pages)
	a := (idx - len(l.static)) / per
	if per == 0 || a >= len(l.arenas) {
		return false // left over after the arenas: free
	}
	i := idx - len(l.static) - a*per
	return d.vcpus[a].alloc[i/64]&(1<<(i%64)) != 0
}
