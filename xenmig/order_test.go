package xenmig

import (
	"reflect"
	"testing"

	"github.com/xenmig/xenmig/hypervisor"
)

func allOwed(n uint64) *claimSet {
	c := newClaimSet(n)
	c.claimAllBut(func() *hypervisor.Bitmap {
		b := hypervisor.NewBitmap(n)
		for g := range n {
			b.Set(hypervisor.GFN(g))
		}
		return b
	}())
	return c
}

// drain collects every gfn the order hands out, batch by batch.
func drain(o *pushOrder, batch int) []hypervisor.GFN {
	var out []hypervisor.GFN
	for {
		b := o.next(nil, batch)
		if len(b) == 0 {
			return out
		}
		out = append(out, b...)
	}
}

func TestPushOrderSequential(t *testing.T) {
	o := newPushOrder(allOwed(10), 0, nil)
	if got, want := drain(o, 4), []hypervisor.GFN{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !reflect.DeepEqual(got, want) {
		t.Errorf("sequential order = %v, want %v", got, want)
	}
}

func TestPushOrderEveryGFNOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pivots int
		faults []hypervisor.GFN
		first  []hypervisor.GFN
	}{
		{"sequential", 0, nil, nil},
		{"one pivot", 7, []hypervisor.GFN{500}, nil},
		{"many pivots", 3, []hypervisor.GFN{0, 999, 10, 500, 501}, nil},
		{"working set first", 7, []hypervisor.GFN{3}, []hypervisor.GFN{900, 5, 900}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claims := allOwed(1000)
			o := newPushOrder(claims, tc.pivots, tc.first)
			claims.claim(42) // taken by the demand server
			for _, f := range tc.faults {
				o.fault(f)
			}
			seen := map[hypervisor.GFN]int{}
			for _, g := range drain(o, 64) {
				seen[g]++
			}
			for g := range hypervisor.GFN(1000) {
				want := 1
				if g == 42 {
					want = 0
				}
				if seen[g] != want {
					t.Fatalf("gfn %d pushed %d times, want %d", g, seen[g], want)
				}
			}
		})
	}
}

func TestPushOrderBubblesAroundNewestFault(t *testing.T) {
	o := newPushOrder(allOwed(1000), 7, nil)
	o.next(nil, 4) // the sweep has begun: 0..3
	o.fault(500)
	got := o.next(nil, 6)
	want := []hypervisor.GFN{501, 499, 502, 498, 503, 497}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after a fault on 500, next(6) = %v, want %v", got, want)
	}
	o.fault(100)
	if got := o.next(nil, 2); !reflect.DeepEqual(got, []hypervisor.GFN{101, 99}) {
		t.Errorf("after a fault on 100, next(2) = %v, want [101 99]", got)
	}
}

func TestPushOrderWorkingSetFirst(t *testing.T) {
	o := newPushOrder(allOwed(100), 7, []hypervisor.GFN{70, 10, 70, 20})
	if got, want := o.next(nil, 3), []hypervisor.GFN{70, 10, 20}; !reflect.DeepEqual(got, want) {
		t.Errorf("next(3) = %v, want %v", got, want)
	}
}
