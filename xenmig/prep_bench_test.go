package xenmig_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/xenmig/xenmig/xenctrl/sim"
	"github.com/xenmig/xenmig/xenmig"
)

// BenchmarkPreparation measures a post-copy destination's preparation
// (sender's preparation_ms: connect until the destination is prepared),
// with and without early push (Plan.EarlyPush), on simulated hosts that
// charge a real Xen host's costs (sim.XenCosts), on an unshaped link and on
// one limited to 1 Gbit/s (Plan.Bandwidth), for an idle guest of 1 and 2
// GiB with a quarter of its memory in use. costs=xenpaging is XenCosts with
// nominate+evict at xenpaging's published 16 µs a gfn, ten times the
// estimate: the pessimistic bound. %floor is the preparation over the
// transfer floor of the whole guest at 1 Gbit/s (its bytes / the rate),
// whatever the link.
//
//	go test ./xenmig/ -run '^$' -bench 'Preparation/costs=xen/' -benchtime 1x
func BenchmarkPreparation(b *testing.B) {
	xenpaging := sim.XenCosts()
	xenpaging.Nominate, xenpaging.Evict = 8*time.Microsecond, 8*time.Microsecond
	models := []struct {
		name  string
		costs sim.Costs
	}{{"none", sim.Costs{}}, {"xen", sim.XenCosts()}, {"xenpaging", xenpaging}}
	const gbit = 1e9
	for _, m := range models {
		for _, gib := range []uint64{1, 2} {
			for _, rate := range []float64{0, gbit} {
				for _, early := range []bool{false, true} {
					link := "unshaped"
					if rate > 0 {
						link = "1gbit"
					}
					name := fmt.Sprintf("costs=%s/gib=%d/link=%s/early=%v", m.name, gib, link, early)
					b.Run(name, func(b *testing.B) {
						var prep, total float64
						for range b.N {
							res := migratePrepared(b, m.costs, gib<<18, int64(rate/8), early)
							prep += res.PreparationMS
							total += res.TotalMS
						}
						prep /= float64(b.N)
						floorMS := float64(gib<<30) * 8 / gbit * 1000
						b.ReportMetric(prep, "prep-ms")
						b.ReportMetric(prep/float64(gib), "prep-ms/GiB")
						b.ReportMetric(100*prep/floorMS, "%floor")
						b.ReportMetric(total/float64(b.N), "total-ms")
					})
				}
			}
		}
	}
}

// migratePrepared migrates, post-copy, an idle guest of pages pages, a
// quarter in use, between two hosts that charge costs, the sender limited to
// bandwidth bytes a second (0: none).
func migratePrepared(b *testing.B, costs sim.Costs, pages uint64, bandwidth int64, early bool) *xenmig.Result {
	b.StopTimer()
	dstHost := sim.NewHost(sim.WithCosts(costs))
	defer dstHost.Close()
	dst := receiveOn(b, dstHost, xenmig.Transport{})
	src := sim.NewHost(sim.WithCosts(costs))
	defer src.Close()
	spec := sim.GuestSpec{Name: "prep", VCPUs: 1, MemoryPages: pages, UsedPages: pages / 4, Seed: 5,
		Workload: sim.DefaultWorkload(sim.Idle, pages)}
	dom := boot(b, src, spec, 1)
	p := xenmig.DefaultPlan()
	p.ThroughputSample = 0
	p.EarlyPush = early
	p.Bandwidth = bandwidth
	res := timedMigrate(b, src, dom, dst, p)
	if res.PreparationMS <= 0 {
		b.Fatalf("preparation_ms = %v, want > 0", res.PreparationMS)
	}
	return res
}
