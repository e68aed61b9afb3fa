package hypervisor

import (
	"reflect"
	"testing"
)

func TestBitmap(t *testing.T) {
	b := NewBitmap(130)
	for _, g := range []GFN{0, 63, 64, 129} {
		b.Set(g)
	}
	if got, want := b.Count(), uint64(4); got != want {
		t.Errorf("Count() = %d, want %d", got, want)
	}
	if got, want := b.GFNs(), []GFN{0, 63, 64, 129}; !reflect.DeepEqual(got, want) {
		t.Errorf("GFNs() = %v, want %v", got, want)
	}
	if b.Test(130) {
		t.Errorf("Test(130) = true beyond Len")
	}
	o := NewBitmap(130)
	o.Set(63)
	c := b.Clone()
	c.AndNot(o)
	if c.Test(63) || !b.Test(63) {
		t.Errorf("AndNot changed the wrong bitmap: clone has 63 = %v, original %v", c.Test(63), b.Test(63))
	}
	c.Or(o)
	if got, want := c.Count(), uint64(4); got != want {
		t.Errorf("after Or, Count() = %d, want %d", got, want)
	}
	b.Clear(0)
	if b.Test(0) {
		t.Errorf("Test(0) after Clear = true")
	}
}

func TestBitmapFromWordsMasksTail(t *testing.T) {
	b := BitmapFromWords([]uint64{^uint64(0), ^uint64(0)}, 70)
	if got, want := b.Count(), uint64(70); got != want {
		t.Errorf("Count() = %d, want %d", got, want)
	}
	short := BitmapFromWords(nil, 10)
	if got := short.Count(); got != 0 {
		t.Errorf("BitmapFromWords(nil, 10).Count() = %d, want 0", got)
	}
}
