package xenctrl

import (
	"testing"

	"github.com/xenmig/xenmig/hypervisor"
)

func TestPopulatedType(t *testing.T) {
	for _, tt := range []struct {
		typ  uint64
		want bool
	}{
		{0, true},                 // NOTAB: ordinary RAM
		{0x1 << 28, true},         // L1TAB
		{0x1<<31 | 0x2<<28, true}, // pinned L2
		{pfinfoXAlloc, true},
		{pfinfoBroken, true},
		{pfinfoXTab, false},
		{pfinfoXTab | 0x1234, false}, // low bits (the gfn in old Xens) ignored
	} {
		if got := populatedType(tt.typ); got != tt.want {
			t.Errorf("populatedType(%#x) = %v, want %v", tt.typ, got, tt.want)
		}
	}
}

func TestMarkPopulated(t *testing.T) {
	// Two batches of a 1030-gfn physmap with holes, as Populated walks it.
	const n = 1030
	bm := hypervisor.NewBitmap(n)
	holes := map[uint64]bool{0xa0: true, 0xa1: true, 1023: true, 1024: true, 1029: true}
	for first := uint64(0); first < n; first += pfnTypeBatch {
		k := min(uint64(pfnTypeBatch), n-first)
		batch := make([]uint64, k)
		gfnRange(batch, hypervisor.GFN(first))
		for i, g := range batch {
			if g != first+uint64(i) {
				t.Fatalf("gfnRange[%d] = %d, want %d", i, g, first+uint64(i))
			}
			if holes[g] {
				batch[i] = pfinfoXTab
			} else {
				batch[i] = 0
			}
		}
		markPopulated(bm, hypervisor.GFN(first), batch)
	}
	if got, want := bm.Count(), uint64(n-len(holes)); got != want {
		t.Errorf("Count() = %d, want %d", got, want)
	}
	for g := range holes {
		if bm.Test(hypervisor.GFN(g)) {
			t.Errorf("hole %d marked populated", g)
		}
	}
	if !bm.Test(1025) || !bm.Test(0) {
		t.Errorf("gfns 0 and 1025 not marked populated")
	}
}

func TestLogDirtyBitmapLayout(t *testing.T) {
	// Xen's log-dirty bitmap is an array of unsigned long: gfn g is bit g%64
	// of word g/64. The C helper copies it into []uint64 unchanged.
	for _, tt := range []struct {
		n     uint64
		words uint64
	}{{0, 0}, {1, 1}, {64, 1}, {65, 2}, {0x40000, 0x1000}} {
		if got := bitmapWords(tt.n); got != tt.words {
			t.Errorf("bitmapWords(%d) = %d, want %d", tt.n, got, tt.words)
		}
	}
	words := []uint64{1<<0 | 1<<63, 1 << 1, 0xffffffffffffffff}
	bm := hypervisor.BitmapFromWords(words, 130) // the last word has 2 valid bits
	want := []hypervisor.GFN{0, 63, 65, 128, 129}
	got := bm.GFNs()
	if len(got) != len(want) {
		t.Fatalf("GFNs() = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("GFNs()[%d] = %d, want %d", i, got[i], want[i])
		}
	}
}
