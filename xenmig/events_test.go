package xenmig_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenctrl/sim"
	"github.com/xenmig/xenmig/xenmig"
)

// TestReceiverEvents: the events a receiver reports add up to what the
// migration's result says moved, in the phases it says.
func TestReceiverEvents(t *testing.T) {
	busy := guest("busy", sim.Stress, 60000)
	for _, tc := range []struct {
		name   string
		mode   xenmig.Mode
		faults bool // the guest must fault on missing pages
	}{
		{"postcopy", xenmig.PostCopy, true},
		{"precopy", xenmig.PreCopy, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var events []xenmig.Event
			record := func(e xenmig.Event) {
				mu.Lock()
				events = append(events, e)
				mu.Unlock()
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			l := xenmig.Listen(ln, xenmig.Transport{})
			defer l.Close()
			dst := sim.NewHost()
			defer dst.Close()
			done := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_, err := xenmig.Receive(ctx, dst, l, xenmig.WithEvents(record), testLog("dst"))
				done <- err
			}()
			src := sim.NewHost()
			defer src.Close()
			dom := boot(t, src, busy, 100)
			p := plan(tc.mode, xenmig.PushPrepaging)
			p.Bandwidth = 20 << 20 // the guest outruns the push: it faults
			res, err := xenmig.Migrate(context.Background(), src, dom, ln.Addr().String(), p, testLog("src"))
			if err != nil {
				t.Fatalf("Migrate() = %v", err)
			}
			if err := <-done; err != nil {
				t.Fatalf("Receive() = %v", err)
			}

			mu.Lock()
			defer mu.Unlock()
			if first, last := events[0], events[len(events)-1]; first.Kind != xenmig.EventStarted || last.Kind != xenmig.EventEnded || last.Err != nil || last.Mode != tc.mode {
				t.Fatalf("events from %+v to %+v, want from started to ended without error in mode %s", first, last, tc.mode)
			}
			pages := map[string]uint64{}
			var total, bytes, resumed, faults uint64
			var downtime time.Duration
			for _, e := range events {
				switch e.Kind {
				case xenmig.EventPages:
					pages[e.Phase] += e.Pages
					total += e.Pages
					bytes += e.Bytes
				case xenmig.EventResumed:
					resumed++
					downtime = e.Latency
				case xenmig.EventFault:
					faults++
				case xenmig.EventRing:
					if e.Pages < 1 || e.Pages > hypervisor.RingSlots {
						t.Errorf("ring event with %d requests, want 1..%d", e.Pages, hypervisor.RingSlots)
					}
				}
			}
			if want := res.PagesSent + res.ZeroPagesSkipped; total != want {
				t.Errorf("pages in events = %d, want pages_sent %d + zero %d", total, res.PagesSent, res.ZeroPagesSkipped)
			}
			for phase := range pages {
				if _, ok := res.PhasePages[phase]; !ok {
					t.Errorf("events report phase %q, the result only %v", phase, res.PhasePages)
				}
			}
			if bytes < res.PagesSent*hypervisor.PageSize || bytes > res.BytesSent {
				t.Errorf("bytes in events = %d, want between the pages' %d and bytes_sent %d", bytes, res.PagesSent*hypervisor.PageSize, res.BytesSent)
			}
			if resumed != 1 || downtime <= 0 || downtime.Seconds()*1000 > res.DowntimeMS {
				t.Errorf("resumed %d times, downtime %v, want once, within the source's %.3f ms", resumed, downtime, res.DowntimeMS)
			}
			if tc.faults != (faults > 0) {
				t.Errorf("%d fault events, want faults: %v", faults, tc.faults)
			}
		})
	}
}
