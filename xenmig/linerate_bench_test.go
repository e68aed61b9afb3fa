package xenmig_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenctrl/sim"
	"github.com/xenmig/xenmig/xenmig"
)

// BenchmarkLineRate measures the post-copy push of a 1 GiB idle guest whose
// every page is in use, over unshaped loopback, with and without TLS, on 1, 2
// and 4 page streams: GB/s is page data moved per second of the whole
// migration (preparation included).
func BenchmarkLineRate(b *testing.B) {
	const pages = 1 << 18 // 1 GiB
	spec := sim.GuestSpec{Name: "linerate", VCPUs: 1, MemoryPages: pages, UsedPages: pages, Seed: 3,
		Workload: sim.DefaultWorkload(sim.Idle, pages)}
	for _, secure := range []bool{false, true} {
		for _, streams := range []int{1, 2, 4} {
			name := fmt.Sprintf("tls=off/streams=%d", streams)
			if secure {
				name = fmt.Sprintf("tls=on/streams=%d", streams)
			}
			b.Run(name, func(b *testing.B) {
				var src, dst xenmig.Transport
				if secure {
					ca := newCA(b)
					src, dst = ca.transport(b, false, ca), ca.transport(b, true, ca)
				}
				var bytes, secs, prep float64
				for range b.N {
					res := migrateLineRate(b, spec, streams, src, dst)
					bytes += float64(res.PagesSent) * hypervisor.PageSize
					secs += res.TotalMS / 1000
					prep += res.PreparationMS
				}
				b.ReportMetric(bytes/secs/1e9, "GB/s")
				b.ReportMetric(prep/float64(b.N), "prep-ms")
			})
		}
	}
}

func migrateLineRate(b *testing.B, spec sim.GuestSpec, streams int, srcT, dstT xenmig.Transport) *xenmig.Result {
	b.StopTimer()
	dst := receiveOne(b, dstT)
	src := sim.NewHost()
	defer src.Close()
	dom := boot(b, src, spec, 1)
	p := xenmig.DefaultPlan()
	p.Push = xenmig.PushSequential
	p.ThroughputSample = 0
	p.Streams = streams
	b.StartTimer()
	res, err := xenmig.Migrate(context.Background(), src, dom, dst.addr, p, xenmig.WithTransport(srcT))
	if err != nil {
		b.Fatalf("Migrate() = %v", err)
	}
	dst.wait(b)
	b.StopTimer()
	if dst.err != nil {
		b.Fatalf("Receive() = %v", dst.err)
	}
	if res.PagesSent != uint64(spec.UsedPages) {
		b.Fatalf("pages sent = %d, want %d", res.PagesSent, spec.UsedPages)
	}
	dst.host.Close()
	return res
}
