package xenmig_test

import (
	"context"
	"testing"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenctrl/sim"
	"github.com/xenmig/xenmig/xenmig"
)

// benchGuest is a 256 MiB guest whose memory is all in use (non-zero).
func benchGuest(kind sim.Kind) sim.GuestSpec {
	const pages = 65536
	return sim.GuestSpec{Name: "bench", VCPUs: 2, MemoryPages: pages, UsedPages: pages, Seed: 3,
		Workload: sim.DefaultWorkload(kind, pages)}
}

// BenchmarkPostCopyPush measures the bulk push over unshaped loopback: one
// op is the post-copy migration of a 256 MiB guest whose every page is
// non-zero; MB/s is page data moved.
func BenchmarkPostCopyPush(b *testing.B) {
	spec := benchGuest(sim.Idle)
	for range b.N {
		res := migrateOnce(b, spec, xenmig.PushSequential)
		b.SetBytes(int64(res.PagesSent) * hypervisor.PageSize)
	}
}

// BenchmarkPostCopyFault measures the demand-fault round trip while the
// push runs: a busy stress guest on the destination faults on pages still
// owed; the metrics are the faults' p50 and p99 service latency as the
// destination measured them (request posted on the ring .. vCPU resumed).
func BenchmarkPostCopyFault(b *testing.B) {
	spec := benchGuest(sim.Stress)
	spec.Workload.Rate = 0
	var p50, p99, faults float64
	for range b.N {
		res := migrateOnce(b, spec, xenmig.PushSequential)
		p50 += res.FaultP50US
		p99 += res.FaultP99US
		faults += float64(res.NetworkFaults)
	}
	b.ReportMetric(p50/float64(b.N), "p50-us")
	b.ReportMetric(p99/float64(b.N), "p99-us")
	b.ReportMetric(faults/float64(b.N), "faults/op")
}

func migrateOnce(b *testing.B, spec sim.GuestSpec, push xenmig.Push) *xenmig.Result {
	b.StopTimer()
	dst := receiveOne(b, xenmig.Transport{})
	src := sim.NewHost()
	defer src.Close()
	dom := boot(b, src, spec, 100)
	p := xenmig.DefaultPlan()
	p.Push = push
	p.ThroughputSample = 0 // not part of the migration
	res := timedMigrate(b, src, dom, dst, p)
	dst.host.Close()
	return res
}

// timedMigrate migrates dom from src to dst with p, the benchmark's timer
// running until dst has received it, and fails b if either side failed.
func timedMigrate(b *testing.B, src *sim.Host, dom hypervisor.DomID, dst *destination, p xenmig.Plan) *xenmig.Result {
	b.StartTimer()
	res, err := xenmig.Migrate(context.Background(), src, dom, dst.addr, p)
	if err != nil {
		b.Fatalf("Migrate() = %v", err)
	}
	dst.wait(b)
	b.StopTimer()
	if dst.err != nil {
		b.Fatalf("Receive() = %v", dst.err)
	}
	return res
}
