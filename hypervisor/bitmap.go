package hypervisor

import "math/bits"

// Bitmap is a set of gfns in [0, Len()), one bit each, laid out as Xen's
// log-dirty and pfn bitmaps are: bit g%64 of word g/64.
type Bitmap struct {
	words []uint64
	n     uint64
}

// NewBitmap returns an empty bitmap for gfns [0, n).
func NewBitmap(n uint64) *Bitmap {
	return &Bitmap{words: make([]uint64, (n+63)/64), n: n}
}

// BitmapFromWords wraps words (as a hypercall fills them) for gfns [0, n).
// Bits at or above n are cleared.
func BitmapFromWords(words []uint64, n uint64) *Bitmap {
	need := (n + 63) / 64
	if uint64(len(words)) < need {
		w := make([]uint64, need)
		copy(w, words)
		words = w
	}
	words = words[:need]
	if r := n % 64; r != 0 {
		words[need-1] &= (1 << r) - 1
	}
	return &Bitmap{words: words, n: n}
}

// Len returns the number of gfns the bitmap covers.
func (b *Bitmap) Len() uint64 { return b.n }

// Words returns the underlying words; changing them changes the bitmap.
func (b *Bitmap) Words() []uint64 { return b.words }

// Set adds g; g must be below Len.
func (b *Bitmap) Set(g GFN) { b.words[g/64] |= 1 << (g % 64) }

// Clear removes g.
func (b *Bitmap) Clear(g GFN) { b.words[g/64] &^= 1 << (g % 64) }

// Test reports whether g is in the set; gfns at or above Len are not.
func (b *Bitmap) Test(g GFN) bool {
	return uint64(g) < b.n && b.words[g/64]&(1<<(g%64)) != 0
}

// Count returns the number of gfns in the set.
func (b *Bitmap) Count() uint64 {
	var c int
	for _, w := range b.words {
		c += bits.OnesCount64(w)
	}
	return uint64(c)
}

// Or adds every gfn of o (which must have the same length) to b.
func (b *Bitmap) Or(o *Bitmap) {
	for i, w := range o.words {
		b.words[i] |= w
	}
}

// And keeps only the gfns also in o (which must have the same length).
func (b *Bitmap) And(o *Bitmap) {
	for i, w := range o.words {
		b.words[i] &= w
	}
}

// AndNot removes every gfn of o (which must have the same length) from b.
func (b *Bitmap) AndNot(o *Bitmap) {
	for i, w := range o.words {
		b.words[i] &^= w
	}
}

// Clone returns a copy of b.
func (b *Bitmap) Clone() *Bitmap {
	return &Bitmap{words: append([]uint64(nil), b.words...), n: b.n}
}

// GFNs returns the members in ascending order.
func (b *Bitmap) GFNs() []GFN {
	out := make([]GFN, 0, b.Count())
	b.ForEach(func(g GFN) { out = append(out, g) })
	return out
}

// ForEach calls f for each member in ascending order.
func (b *Bitmap) ForEach(f func(GFN)) {
	for i, w := range b.words {
		for w != 0 {
			t := bits.TrailingZeros64(w)
			f(GFN(uint64(i)*64 + uint64(t)))
			w &= w - 1
		}
	}
}
