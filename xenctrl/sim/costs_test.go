package sim

import (
	"sync"
	"testing"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
)

func TestLaneBook(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	ms := time.Millisecond
	for _, tt := range []struct {
		name      string
		free      time.Time // the lane's state before the call
		arrived   time.Time
		now       time.Time // when the call ends and books
		cost      time.Duration
		wantSleep time.Duration
		wantFree  time.Time
	}{
		{"idle lane, small cost: no sleep", at(-time.Second), at(0), at(0), 10 * time.Microsecond, 0, at(10 * time.Microsecond)},
		{"idle lane, cost beyond the slack", at(-time.Second), at(0), at(0), 3 * ms, 3 * ms, at(3 * ms)},
		{"the call's own work counts", at(-time.Second), at(0), at(2900 * time.Microsecond), 3 * ms, 0, at(3 * ms)},
		{"queued behind booked work", at(5 * ms), at(0), at(0), ms, 6 * ms, at(6 * ms)},
		{"debt under the slack: no sleep", at(50 * time.Microsecond), at(0), at(0), 100 * time.Microsecond, 0, at(150 * time.Microsecond)},
		{"a late caller is served from free", at(0), at(3 * ms), at(3 * ms), 5 * ms, 2 * ms, at(5 * ms)},
		{"a lane idle longer starts afresh", at(0), at(20 * ms), at(20 * ms), 5 * ms, 5 * ms, at(25 * ms)},
		{"zero cost books nothing", at(5 * ms), at(0), at(0), 0, 0, at(5 * ms)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := &lane{free: tt.free}
			if got := l.book(tt.arrived, tt.now, tt.cost); got != tt.wantSleep {
				t.Errorf("book(arrived %v, now %v, %v) = sleep %v, want %v", tt.arrived.Sub(t0), tt.now.Sub(t0), tt.cost, got, tt.wantSleep)
			}
			if !l.free.Equal(tt.wantFree) {
				t.Errorf("free after book = %v, want %v", l.free.Sub(t0), tt.wantFree.Sub(t0))
			}
		})
	}
}

func TestParseCosts(t *testing.T) {
	for _, tt := range []struct {
		name string
		want Costs
		ok   bool
	}{
		{"none", Costs{}, true},
		{"xen", XenCosts(), true},
		{"lab", LabCosts(), true},
		{"fast", Costs{}, false},
	} {
		got, err := ParseCosts(tt.name)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseCosts(%q) = %+v, %v; want %+v, ok %v", tt.name, got, err, tt.want, tt.ok)
		}
	}
}

// TestCostModels checks the two models against the figures docs/XEN.md
// states: the lab's own, and the estimate of a real host.
func TestCostModels(t *testing.T) {
	lab, xen := LabCosts(), XenCosts()
	for _, tt := range []struct {
		name     string
		got      time.Duration
		min, max time.Duration
	}{
		{"lab nominate+evict", lab.Nominate + lab.Evict, 76 * time.Microsecond, 78 * time.Microsecond},
		{"lab read of 512 pages", lab.Read.of(512), 3770 * time.Microsecond, 3780 * time.Microsecond},
		{"lab ring round trip", lab.Notify + lab.Load + lab.Read.of(1), 2070 * time.Microsecond, 2090 * time.Microsecond},
		{"xen nominate+evict", xen.Nominate + xen.Evict, 1400 * time.Nanosecond, 1600 * time.Nanosecond},
		{"xen load", xen.Load, 7 * time.Microsecond, 7500 * time.Nanosecond},
		{"xen notify", xen.Notify, 5500 * time.Nanosecond, 6500 * time.Nanosecond},
		{"xen read of 512 pages", xen.Read.of(512), 100 * time.Microsecond, 105 * time.Microsecond},
	} {
		if tt.got < tt.min || tt.got > tt.max {
			t.Errorf("%s = %v, want %v to %v", tt.name, tt.got, tt.min, tt.max)
		}
	}
}

// TestCostsCharged: a host with costs takes at least their sum for calls
// that serialize on the p2m lane, from one caller or from several.
func TestCostsCharged(t *testing.T) {
	const per = 2 * time.Millisecond
	for _, callers := range []int{1, 3} {
		_, _, p := probeGuest(t, 1, WithCosts(Costs{Nominate: per, Evict: per}))
		const n = 4 // gfns per caller
		start := time.Now()
		var wg sync.WaitGroup
		for c := range callers {
			wg.Go(func() {
				for i := range n {
					g := hypervisor.GFN(0x100 + c*n + i)
					if err := p.Nominate(g); err != nil {
						t.Errorf("Nominate(%#x) = %v", g, err)
					}
					if err := p.Evict(g); err != nil {
						t.Errorf("Evict(%#x) = %v", g, err)
					}
				}
			})
		}
		wg.Wait()
		// The last call may end up to laneSlack before the lane has
		// served it.
		if got, want := time.Since(start), time.Duration(callers*n)*2*per-laneSlack; got < want {
			t.Errorf("%d callers: %d nominate+evicts at %v each took %v, want at least %v", callers, callers*n, 2*per, got, want)
		}
	}
}

// TestNoCostsByDefault: a host made without WithCosts charges nothing.
func TestNoCostsByDefault(t *testing.T) {
	if h := newTestHost(t); h.costs != (Costs{}) || h.notifyLatency != DefaultNotifyLatency {
		t.Errorf("NewHost() costs %+v, notify %v; want none, %v", h.costs, h.notifyLatency, DefaultNotifyLatency)
	}
	if h := newTestHost(t, WithCosts(XenCosts())); h.notifyLatency != XenCosts().Notify {
		t.Errorf("NewHost(WithCosts(XenCosts())) notify %v, want %v", h.notifyLatency, XenCosts().Notify)
	}
}
