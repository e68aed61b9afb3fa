//go:build xen && linux

package xenctrl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
)

// Per-call costs on a real hypervisor, for the simulator's cost model. They
// need, as root in a PV dom0 (the lab's bench scenario sets them):
//
//	XENMIG_TEST_DOMAIN=<name>   a running guest: foreign reads, log-dirty
//	XENMIG_BENCH_SCRATCH=<name> a domain created paused (xl create -p) that
//	                            never runs: populate, and paging with
//	                            XENMIG_TEST_PAGING=1 (a mem_paging Xen)
//
// BenchmarkCalib* run anywhere and tell how much slower the machine is than
// another (TCG against the host): run them on both.

// populatedGFNs returns up to n populated gfns of d, from the middle of its
// memory (clear of the special pages at the top and firmware at the bottom).
func populatedGFNs(b *testing.B, h *Host, d hypervisor.DomID, n int) []hypervisor.GFN {
	b.Helper()
	pop, err := h.Populated(d)
	if err != nil {
		b.Fatalf("Populated(%d) = %v", d, err)
	}
	all := pop.GFNs()
	if len(all) < 2*n {
		b.Fatalf("domain %d has %d populated gfns, want %d", d, len(all), 2*n)
	}
	return all[len(all)/4 : len(all)/4+n]
}

// BenchmarkLiveReadPages: one foreign map + copy + unmap of a batch of N
// pages of a running guest (ns/op is per batch; see pages/s).
func BenchmarkLiveReadPages(b *testing.B) {
	h, d := domainFromEnv(b, "XENMIG_TEST_DOMAIN", "a running guest it may read")
	for _, n := range []int{1, 64, 512} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			gfns := populatedGFNs(b, h, d, n)
			buf := make([]byte, n*hypervisor.PageSize)
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := h.ReadPages(d, gfns, buf); err != nil {
					b.Fatalf("ReadPages(%d pages) = %v", n, err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "pages/s")
		})
	}
}

// BenchmarkLiveDirtyLogPeek: one peek-and-clean of the log-dirty bitmap of a
// running guest (every gfn up to its highest).
func BenchmarkLiveDirtyLogPeek(b *testing.B) {
	h, d := domainFromEnv(b, "XENMIG_TEST_DOMAIN", "a running guest it may read")
	if err := h.EnableLogDirty(d); err != nil {
		b.Fatalf("EnableLogDirty(%d) = %v", d, err)
	}
	defer h.DisableLogDirty(d)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := h.DirtyLog(d, true); err != nil {
			b.Fatalf("DirtyLog(%d, clean) = %v", d, err)
		}
	}
}

// BenchmarkLivePopulate: depopulate then populate a batch of N gfns of the
// paused scratch domain (ns/op covers both calls).
func BenchmarkLivePopulate(b *testing.B) {
	h, d := domainFromEnv(b, "XENMIG_BENCH_SCRATCH", "a paused domain it may populate and page")
	for _, n := range []int{1, 64} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			gfns := populatedGFNs(b, h, d, n)
			for i := 0; i < b.N; i++ {
				if err := h.Depopulate(d, gfns); err != nil {
					b.Fatalf("Depopulate(%d gfns) = %v", n, err)
				}
				if err := h.Populate(d, gfns); err != nil {
					b.Fatalf("Populate(%d gfns) = %v", n, err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "pages/s")
		})
	}
}

// pagingHost enables paging on the scratch domain (a mem_paging Xen).
func pagingHost(b *testing.B) (*Host, hypervisor.DomID, hypervisor.Pager) {
	b.Helper()
	if os.Getenv("XENMIG_TEST_PAGING") != "1" {
		b.Skip("set XENMIG_TEST_PAGING=1 (a Xen built with CONFIG_MEM_PAGING)")
	}
	h, d := domainFromEnv(b, "XENMIG_BENCH_SCRATCH", "a paused domain it may populate and page")
	pg, err := h.EnablePaging(d)
	if errors.Is(err, hypervisor.ErrPagingUnsupported) {
		b.Skipf("this Xen has no mem_paging: %v", err)
	}
	if err != nil {
		b.Fatalf("EnablePaging(%d) = %v", d, err)
	}
	return h, d, pg
}

// BenchmarkLivePaging: on the paused scratch domain, per gfn: nominate +
// evict, load (prep with a buffer), and one ring round trip (a foreign map
// of an evicted gfn posts a request and waits; the pager reads it, loads
// the page and answers; the map completes). Each op uses its own gfn, so run it with a fixed count
// (-test.benchtime 500x): b.N gfns are paged at once.
func BenchmarkLivePaging(b *testing.B) {
	h, d, pg := pagingHost(b)
	defer func() {
		if err := pg.Close(); err != nil {
			b.Errorf("pager Close() = %v", err)
		}
	}()
	page := make([]byte, hypervisor.PageSize)
	evict := func(b *testing.B, g hypervisor.GFN) {
		if err := pg.Nominate(g); err != nil {
			b.Fatalf("Nominate(%#x) = %v", uint64(g), err)
		}
		if err := pg.Evict(g); err != nil {
			b.Fatalf("Evict(%#x) = %v", uint64(g), err)
		}
	}
	load := func(b *testing.B, g hypervisor.GFN) {
		if err := pg.Load(g, page); err != nil {
			b.Fatalf("Load(%#x) = %v", uint64(g), err)
		}
	}
	b.Run("nominate+evict", func(b *testing.B) {
		gfns := populatedGFNs(b, h, d, b.N)
		b.ResetTimer()
		for _, g := range gfns {
			evict(b, g)
		}
		b.StopTimer()
		for _, g := range gfns {
			load(b, g)
		}
	})
	b.Run("load", func(b *testing.B) {
		gfns := populatedGFNs(b, h, d, b.N)
		for _, g := range gfns {
			evict(b, g)
		}
		b.ResetTimer()
		for _, g := range gfns {
			load(b, g)
		}
	})
	b.Run("ring-round-trip", func(b *testing.B) {
		gfns := populatedGFNs(b, h, d, b.N)
		for _, g := range gfns {
			evict(b, g)
		}
		one := make([]byte, hypervisor.PageSize)
		b.ResetTimer()
		for _, g := range gfns {
			// libxenforeignmemory may retry a paged-out gfn until it is
			// paged in: read aside, so this pager can answer.
			done := make(chan error, 1)
			go func() { done <- h.ReadPages(d, []hypervisor.GFN{g}, one) }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			reqs, err := pg.Requests(ctx)
			cancel()
			if err != nil {
				b.Fatalf("Requests() after a foreign map of %#x = %v", uint64(g), err)
			}
			load(b, g)
			if err := pg.Resume(reqs...); err != nil {
				b.Fatalf("Resume(%v) = %v", reqs, err)
			}
			if err := <-done; err != nil && !errors.Is(err, hypervisor.ErrPaged) {
				b.Fatalf("ReadPages(%#x) once loaded = %v", uint64(g), err)
			}
		}
	})
}

// BenchmarkCalibGetpid: one system call, to compare machines.
func BenchmarkCalibGetpid(b *testing.B) {
	for i := 0; i < b.N; i++ {
		syscall.Getpid()
	}
}

// BenchmarkCalibCopy4K: a 4 KiB memory copy, to compare machines.
func BenchmarkCalibCopy4K(b *testing.B) {
	src, dst := make([]byte, 4096), make([]byte, 4096)
	b.SetBytes(4096)
	for i := 0; i < b.N; i++ {
		copy(dst, src)
		src[i%4096]++
	}
	_ = fmt.Sprint(dst[0])
}
