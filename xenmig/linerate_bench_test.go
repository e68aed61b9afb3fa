package xenmig_test

import (
	"context"
	"flag"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenctrl/sim"
	"github.com/xenmig/xenmig/xenmig"
)

var lineRateGiB = flag.Int("linerate.gib", 1, "guest size of BenchmarkLineRate, GiB")

// BenchmarkLineRate measures the transfer of an idle guest whose every page
// is in use (1 GiB; -linerate.gib), over unshaped loopback, post-copy and
// pre-copy, with and without TLS, on 1, 2 and 4 page streams. GB/s is page
// data moved per second of the whole migration (preparation included);
// cpu-s/GiB is the CPU time of both ends (this process, user and system)
// per GiB moved: what the machine's cores bound the rate by, whatever else
// runs on them.
func BenchmarkLineRate(b *testing.B) {
	pages := uint64(*lineRateGiB) << 18
	spec := sim.GuestSpec{Name: "linerate", VCPUs: 1, MemoryPages: pages, UsedPages: pages, Seed: 3,
		Workload: sim.DefaultWorkload(sim.Idle, pages)}
	for _, mode := range []xenmig.Mode{xenmig.PostCopy, xenmig.PreCopy} {
		for _, secure := range []bool{false, true} {
			for _, streams := range []int{1, 2, 4} {
				tls := "off"
				if secure {
					tls = "on"
				}
				b.Run(fmt.Sprintf("mode=%s/tls=%s/streams=%d", mode, tls, streams), func(b *testing.B) {
					var src, dst xenmig.Transport
					if secure {
						ca := newCA(b)
						src, dst = ca.transport(b, false, ca), ca.transport(b, true, ca)
					}
					// The destination host's memory is resident, as a
					// Xen host's is: installs cost a copy, not the
					// kernel's first touch of the page.
					host := sim.NewHost(sim.WithResidentMemory(pages * hypervisor.PageSize))
					defer host.Close()
					var bytes, secs, prep, cpu float64
					for range b.N {
						res, used := migrateLineRate(b, spec, mode, streams, host, src, dst)
						bytes += float64(res.PagesSent) * hypervisor.PageSize
						secs += res.TotalMS / 1000
						prep += res.PreparationMS
						cpu += used.Seconds()
					}
					b.ReportMetric(bytes/secs/1e9, "GB/s")
					b.ReportMetric(prep/float64(b.N), "prep-ms")
					b.ReportMetric(cpu/(bytes/(1<<30)), "cpu-s/GiB")
				})
			}
		}
	}
}

// cpuTime returns the CPU time this process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// migrateLineRate migrates one guest booted to spec to host and returns the
// result and the CPU time both ends used; the domain received is destroyed.
func migrateLineRate(b *testing.B, spec sim.GuestSpec, mode xenmig.Mode, streams int, host *sim.Host, srcT, dstT xenmig.Transport) (*xenmig.Result, time.Duration) {
	b.StopTimer()
	dst := receiveOn(b, host, dstT)
	src := sim.NewHost()
	defer src.Close()
	dom := boot(b, src, spec, 1)
	p := xenmig.DefaultPlan()
	p.Mode = mode
	p.Push = xenmig.PushSequential
	p.ThroughputSample = 0
	p.Streams = streams
	start := cpuTime(b)
	b.StartTimer()
	res, err := xenmig.Migrate(context.Background(), src, dom, dst.addr, p, xenmig.WithTransport(srcT))
	if err != nil {
		b.Fatalf("Migrate() = %v", err)
	}
	dst.wait(b)
	b.StopTimer()
	used := cpuTime(b) - start
	if dst.err != nil {
		b.Fatalf("Receive() = %v", dst.err)
	}
	// Pre-copy sends again the few pages the idle guest writes meanwhile.
	if res.PagesSent < uint64(spec.UsedPages) {
		b.Fatalf("pages sent = %d, want at least %d", res.PagesSent, spec.UsedPages)
	}
	if err := host.Destroy(dst.inc.Domain); err != nil {
		b.Fatalf("Destroy(received domain) = %v", err)
	}
	return res, used
}
