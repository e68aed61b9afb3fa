package xenmig

import (
	mathbits "math/bits"
	"sync"
	"sync/atomic"

	"github.com/xenmig/xenmig/hypervisor"
)

// claimSet is a bitmap of gfns that may be claimed concurrently: the pusher
// and the demand server each claim a gfn before sending it, so it crosses the
// network exactly once.
type claimSet struct {
	words []atomic.Uint64
	n     uint64
}

func newClaimSet(n uint64) *claimSet {
	return &claimSet{words: make([]atomic.Uint64, (n+63)/64), n: n}
}

// claim marks g and reports whether this call was the one that marked it.
func (c *claimSet) claim(g hypervisor.GFN) bool {
	if uint64(g) >= c.n {
		return false
	}
	bit := uint64(1) << (g % 64)
	return c.words[g/64].Or(bit)&bit == 0
}

// test reports whether g is marked.
func (c *claimSet) test(g hypervisor.GFN) bool {
	return uint64(g) < c.n && c.words[g/64].Load()&(1<<(g%64)) != 0
}

// count returns how many gfns are marked (a snapshot while claims run).
func (c *claimSet) count() uint64 {
	var n int
	for i := range c.words {
		n += mathbits.OnesCount64(c.words[i].Load())
	}
	return uint64(n)
}

// bitmap returns the marked gfns; no claim may run concurrently.
func (c *claimSet) bitmap() *hypervisor.Bitmap {
	b := hypervisor.NewBitmap(c.n)
	w := b.Words()
	for i := range c.words {
		w[i] = c.words[i].Load()
	}
	return b
}

// release unmarks every gfn of set, so they can be claimed (and sent) again.
func (c *claimSet) release(set *hypervisor.Bitmap) {
	for i, w := range set.Words() {
		if i < len(c.words) {
			c.words[i].And(^w)
		}
	}
}

// claimAllBut marks every gfn that is not in keep, leaving keep to be claimed.
func (c *claimSet) claimAllBut(keep *hypervisor.Bitmap) {
	for i, w := range keep.Words() {
		c.words[i].Store(^w)
	}
}

// bubble is a pre-paging pivot: a region that grows forward and backward
// from a faulting gfn.
type bubble struct {
	fwd, back int64 // next gfn to try in each direction
}

// pushOrder hands the pusher its next batch of gfns: first a priority list
// (the hybrid working set), then bubbles around recent faults, then an
// ascending sweep. Every gfn it returns has been claimed.
type pushOrder struct {
	claims *claimSet
	n      int64

	mu     sync.Mutex
	first  []hypervisor.GFN // priority list, consumed in order
	pivots []bubble         // most recent last
	maxPiv int              // 0: no bubbling
	rr     int              // round-robin position among pivots
	sweep  int64            // ascending sweep cursor
	dirFwd bool             // direction of the next bubble step
	newPiv bool             // a pivot arrived since the last batch
}

func newPushOrder(claims *claimSet, pivots int, first []hypervisor.GFN) *pushOrder {
	return &pushOrder{claims: claims, n: int64(claims.n), maxPiv: pivots, first: first}
}

// fault records a guest fault on g as a new pivot; the oldest pivot goes
// once there are more than the plan allows.
func (o *pushOrder) fault(g hypervisor.GFN) {
	if o.maxPiv == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pivots = append(o.pivots, bubble{fwd: int64(g) + 1, back: int64(g) - 1})
	if len(o.pivots) > o.maxPiv {
		o.pivots = o.pivots[1:]
	}
	o.newPiv = true
}

// restart makes the sweep start over, after gfns were released.
func (o *pushOrder) restart() {
	o.mu.Lock()
	o.sweep = 0
	o.mu.Unlock()
}

// next claims up to max gfns to push and returns them in buf's memory (each
// pusher has its own). It returns an empty slice once every gfn has been
// claimed.
func (o *pushOrder) next(buf []hypervisor.GFN, max int) []hypervisor.GFN {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := buf[:0]
	for len(o.first) > 0 && len(out) < max {
		g := o.first[0]
		o.first = o.first[1:]
		if o.claims.claim(g) {
			out = append(out, g)
		}
	}
	if o.newPiv {
		o.rr = len(o.pivots) - 1 // serve the newest fault first
		o.newPiv = false
	}
	for len(out) < max && len(o.pivots) > 0 {
		out = o.growBubble(o.rr, out, max)
		if o.pivots[o.rr].fwd >= o.n && o.pivots[o.rr].back < 0 {
			o.pivots = append(o.pivots[:o.rr], o.pivots[o.rr+1:]...)
		}
		if len(o.pivots) > 0 {
			o.rr = (o.rr + 1) % len(o.pivots)
		}
	}
	for len(out) < max && o.sweep < o.n {
		if g := hypervisor.GFN(o.sweep); o.claims.claim(g) {
			out = append(out, g)
		}
		o.sweep++
	}
	return out
}

// growBubble claims up to max-len(out) gfns from pivot i, alternating
// between its forward and backward edges and stepping over gfns already
// claimed.
func (o *pushOrder) growBubble(i int, out []hypervisor.GFN, max int) []hypervisor.GFN {
	b := &o.pivots[i]
	for len(out) < max && (b.fwd < o.n || b.back >= 0) {
		o.dirFwd = !o.dirFwd
		var g int64
		switch {
		case o.dirFwd && b.fwd < o.n, b.back < 0:
			g = b.fwd
			b.fwd++
		default:
			g = b.back
			b.back--
		}
		if o.claims.claim(hypervisor.GFN(g)) {
			out = append(out, hypervisor.GFN(g))
		}
	}
	return out
}
