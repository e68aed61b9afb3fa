package xenmig

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
)

// counters are the sender's traffic measures, updated from several goroutines.
type counters struct {
	phasePages, phaseBytes sync.Map // phase -> *atomic.Uint64
	zero                   atomic.Uint64
	bytes                  atomic.Uint64
}

func (c *counters) add(m *sync.Map, phase string, n uint64) {
	v, _ := m.LoadOrStore(phase, new(atomic.Uint64))
	v.(*atomic.Uint64).Add(n)
}

func (c *counters) snapshot(m *sync.Map) map[string]uint64 {
	out := map[string]uint64{}
	m.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

// progressState is what the progress reporter reads.
type progressState struct {
	mu    sync.Mutex
	phase string
	round int
	total uint64
	done  atomic.Uint64
}

func (p *progressState) set(phase string, round int, total uint64) {
	p.mu.Lock()
	p.phase, p.round, p.total = phase, round, total
	p.done.Store(0)
	p.mu.Unlock()
}

// sampleOps measures the guest's throughput before the migration starts,
// over a short window, when the backend can see it.
func (s *sender) sampleOps(ctx context.Context) float64 {
	window := s.plan.ThroughputSample
	a, ok := s.ops()
	if !ok || window <= 0 {
		return 0
	}
	t := time.Now()
	select {
	case <-ctx.Done():
		return 0
	case <-time.After(window):
	}
	b, _ := s.ops()
	return float64(b-a) / time.Since(t).Seconds()
}

// ops returns the guest's operation counter, when the backend can see it.
func (s *sender) ops() (uint64, bool) {
	in, ok := s.hv.(hypervisor.Inspector)
	if !ok {
		return 0, false
	}
	p, err := in.Progress(s.dom)
	if err != nil {
		return 0, false
	}
	return p.Ops, true
}

// reportProgress calls the progress callback every interval until stopped.
func (s *sender) reportProgress() (stop func()) {
	if s.options.progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	snap := func() Progress {
		s.progress.mu.Lock()
		defer s.progress.mu.Unlock()
		return Progress{Phase: s.progress.phase, Round: s.progress.round, Done: s.progress.done.Load(),
			Total: s.progress.total, Bytes: s.counter.bytes.Load(), Elapsed: time.Since(s.start)}
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(s.options.interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				s.options.progress(snap())
				return
			case <-t.C:
				s.options.progress(snap())
			}
		}
	}()
	return func() { close(done); <-finished }
}
