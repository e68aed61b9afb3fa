package sim

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
)

// benchBatch is the number of pages one ReadPages or WritePages call moves,
// as a migration's page batch does.
const benchBatch = 256

// BenchmarkReadPages measures raw page copy out of a guest (foreign map and
// memcpy).
func BenchmarkReadPages(b *testing.B) {
	h := newTestHost(b)
	id := create(b, h, testSpec(Idle, 1))
	benchCopy(b, func(gfns []hypervisor.GFN, buf []byte) error { return h.ReadPages(id, gfns, buf) })
}

// BenchmarkWritePages measures raw page copy into a guest.
func BenchmarkWritePages(b *testing.B) {
	h := newTestHost(b)
	id := create(b, h, testSpec(Idle, 1))
	benchCopy(b, func(gfns []hypervisor.GFN, buf []byte) error { return h.WritePages(id, gfns, buf) })
}

func benchCopy(b *testing.B, op func([]hypervisor.GFN, []byte) error) {
	gfns := make([]hypervisor.GFN, benchBatch)
	buf := make([]byte, benchBatch*hypervisor.PageSize)
	for i := range buf {
		buf[i] = byte(i)
	}
	b.SetBytes(int64(len(buf)))
	for i := 0; b.Loop(); i++ {
		base := hypervisor.GFN(i%8) * benchBatch // [0, 2048): below the hole
		for j := range gfns {
			gfns[j] = base + hypervisor.GFN(j)
		}
		if err := op(gfns, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFaultRoundTrip measures one demand fault: the guest touches an
// evicted gfn, the pager receives the request, loads the page and resumes
// the vCPU, which completes its access.
func BenchmarkFaultRoundTrip(b *testing.B) {
	for _, latency := range []time.Duration{0, DefaultNotifyLatency} {
		b.Run(fmt.Sprintf("notify=%v", latency), func(b *testing.B) {
			h := newTestHost(b, WithNotifyLatency(latency))
			id := create(b, h, testSpec(Probe, 1))
			must(b, "Unpause", h.Unpause(id))
			p, err := h.EnablePaging(id)
			must(b, "EnablePaging", err)
			d, err := h.acquire(id)
			must(b, "acquire", err)
			v := d.vcpus[0]
			d.release()
			page := make([]byte, hypervisor.PageSize)
			ctx := context.Background()
			const pool = 1024
			var todo []hypervisor.GFN
			for b.Loop() {
				if len(todo) == 0 {
					b.StopTimer()
					for g := range hypervisor.GFN(pool) {
						must(b, "Nominate", p.Nominate(g))
						must(b, "Evict", p.Evict(g))
						todo = append(todo, g)
					}
					b.StartTimer()
				}
				g := todo[0]
				todo = todo[1:]
				n := v.steps.Load()
				must(b, "Touch", h.Touch(id, 0, g, false))
				reqs, err := p.Requests(ctx)
				must(b, "Requests", err)
				must(b, "Load", p.Load(g, page))
				must(b, "Resume", p.Resume(reqs...))
				for v.steps.Load() == n {
					runtime.Gosched()
				}
			}
		})
	}
}
