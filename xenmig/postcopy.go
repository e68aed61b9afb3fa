package xenmig

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenmig/internal/wire"
)

// postcopy pushes the owed pages in the plan's order and serves the
// destination's faults until it confirms every gfn is installed.
func (s *sender) postcopy(ctx context.Context, owed *hypervisor.Bitmap, heat []uint8) error {
	claims := newClaimSet(owed.Len())
	claims.claimAllBut(owed)
	var first []hypervisor.GFN
	if heat != nil {
		first = owed.GFNs()
		slices.SortStableFunc(first, func(a, b hypervisor.GFN) int { return int(heat[b]) - int(heat[a]) })
	}
	pivots := 0
	if s.plan.Push == PushPrepaging || s.plan.Push == PushWorkingSet {
		pivots = s.plan.Pivots
	}
	order := newPushOrder(claims, pivots, first)
	s.progress.set("postcopy", 0, owed.Count())
	for {
		err := s.postcopyRound(ctx, claims, order)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || errors.Is(err, ErrAborted) || s.plan.ReconnectTimeout <= 0 {
			return fmt.Errorf("post-copy: %w", err)
		}
		s.log.WithError(err).Warn("connection lost after the switchover; reconnecting to finish the post-copy")
		if rerr := s.reconnect(ctx, claims, order); rerr != nil {
			return fmt.Errorf("post-copy: %w; reconnecting failed: %w", err, rerr)
		}
	}
}

// abortGrace is how long a broken post-copy round waits for the
// destination's word on main before it reconnects.
const abortGrace = time.Second

// postcopyRound pushes and serves faults over the current connections until
// the destination confirms every gfn, or a connection breaks.
func (s *sender) postcopyRound(ctx context.Context, claims *claimSet, order *pushOrder) error {
	g, gctx := errgroup.WithContext(ctx)
	var lastFault atomic.Int64
	lastFault.Store(time.Now().UnixNano())
	g.Go(func() error { // demand server on the urgent channel
		return s.serveFaults(gctx, claims, order, &lastFault)
	})
	width := newPushWidth(s.plan.Streams == 0, s.links.streams())
	for _, c := range s.links.streams() { // background push on every page stream
		g.Go(func() error { return s.push(gctx, c, order, &lastFault, width) })
	}
	complete := make(chan error, 1)
	go func() { // the destination's answer on the main channel
		_, err := s.links.main.expect(wire.TypeComplete)
		complete <- err
	}()
	var err error
	answered := false
	select {
	case err = <-complete:
		answered = true
	case <-gctx.Done():
	}
	if answered && err == nil {
		s.links.urgent.Close() // ends the demand server
		return g.Wait()
	}
	// Broken. The destination may have said why on main (an abort) just
	// before its other connections closed: read that before closing main.
	if !answered {
		s.links.urgent.Close()
		for _, c := range s.links.bulk {
			c.Close()
		}
		select {
		case err = <-complete:
			answered = true
		case <-time.After(abortGrace):
		}
	}
	// Close every connection so that no goroutine stays blocked on them,
	// then report the first cause.
	s.links.close()
	gerr := g.Wait()
	if !answered {
		err = <-complete
	}
	if gerr != nil && !errors.Is(err, ErrAborted) {
		return gerr // the cause; unless the destination said why it ended (its abort closed the pushers' connections)
	}
	return err
}

// push sends unclaimed gfns on c, in the order's sequence, until none is
// left; the other streams' pushers take their batches from the same order.
func (s *sender) push(ctx context.Context, c *conn, order *pushOrder, lastFault *atomic.Int64, width *pushWidth) error {
	sc := newScratch(s.plan.BatchPages * zeroBatches)
	queue := newSendQueue(c.tcp)
	if s.plan.Push == PushDemand {
		// Demand paging alone never completes; once the guest has gone
		// DemandIdle without a fault, or after DemandMax, send the rest in
		// order.
		deadline := time.Now().Add(s.plan.DemandMax)
		for time.Since(time.Unix(0, lastFault.Load())) < s.plan.DemandIdle && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(min(s.plan.DemandIdle/10, 50*time.Millisecond)):
			}
		}
	}
	buf := make([]hypervisor.GFN, 0, s.plan.BatchPages*zeroBatches)
push:
	for ctx.Err() == nil {
		if c.stream > 0 && width.narrowed(s.log, time.Now()) {
			select { // main carries the push meanwhile
			case <-ctx.Done():
			case <-width.drained:
				break push
			case <-time.After(narrowWindow):
			}
			continue
		}
		gfns := order.next(buf, queue.batch(s.plan.BatchPages, sc.zeroShare()))
		if len(gfns) == 0 {
			width.drain()
			break
		}
		if err := s.sendPages(ctx, c, sc, gfns, 0, "push"); err != nil {
			return err
		}
		queue.sent(sc.wrote)
		width.sent(sc.wrote)
		// Let the demand server run: Go does not preempt a busy goroutine
		// for up to 10 ms, which would be a fault's latency.
		runtime.Gosched()
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := c.w.Write(wire.TypePushDone); err != nil {
		return fmt.Errorf("send push-done on stream %d: %w", c.stream, err)
	}
	return nil
}

// pushWidth narrows a push whose plan chose its streams (AutoStreams) to the
// main stream alone while the streams move less than narrowRate together,
// measured over windows of narrowWindow, and the destination kept up with
// them (their receive windows limited them for under a tenth of it): one
// stream fills such a link, and every other stream's send buffer (two
// segments at the least) is more data a demanded page waits behind in the
// link's queue. A destination that is the limit installs from every
// stream in parallel, so the streams stay. The other streams wait
// meanwhile, and push again once main alone moves more (a window of zero
// pages moves few bytes on any link). On the 1 Gbit/s link the 1 GiB
// sequential writer's fault p50 went from 460 to 210 µs, its push no
// slower (docs/BENCH.md).
type pushWidth struct {
	auto    bool          // the plan left the streams to AutoStreams
	bytes   atomic.Uint64 // sent by every stream
	drained chan struct{} // closed once the order has nothing left
	once    sync.Once
	// rwndLimited returns how long the streams' receive windows have
	// limited them, summed, since they were made.
	rwndLimited func() time.Duration

	mu     sync.Mutex
	at     time.Time     // start of the window
	from   uint64        // bytes at its start
	fromRW time.Duration // rwndLimited at its start
	narrow bool
}

func newPushWidth(auto bool, streams []*conn) *pushWidth {
	return &pushWidth{auto: auto, drained: make(chan struct{}), rwndLimited: func() time.Duration {
		var sum time.Duration
		for _, c := range streams {
			if c.tcp == nil {
				continue
			}
			if info, ok := tcpInfo(c.tcp); ok {
				sum += time.Duration(info.Rwnd_limited) * time.Microsecond
			}
		}
		return sum
	}}
}

// narrowWindow is the window over which pushWidth measures the streams.
const narrowWindow = 20 * time.Millisecond

// narrowRate (1.2 Gbit/s) is half of what one stream carries with ease
// (oneStreamRate): a push this machine's CPU bounds near that rate moved
// 2.1 Gbit/s on one stream and 2.7 on two, and a single threshold between
// narrow and wide made it swap between them and lose a third.
const narrowRate = oneStreamRate / 2

// sent counts n bytes a stream sent.
func (w *pushWidth) sent(n int) { w.bytes.Add(uint64(n)) }

// drain says the order has nothing left: the waiting streams end.
func (w *pushWidth) drain() { w.once.Do(func() { close(w.drained) }) }

// narrowed reports whether the streams other than main should wait at
// now, deciding again at the end of each window.
func (w *pushWidth) narrowed(log *logrus.Entry, now time.Time) bool {
	if !w.auto {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.bytes.Load()
	if w.at.IsZero() {
		w.at, w.from, w.fromRW = now, b, w.rwndLimited()
		return false
	}
	if el := now.Sub(w.at); el >= narrowWindow {
		rw := w.rwndLimited()
		rate := float64(b-w.from) / el.Seconds()
		narrow := rate < narrowRate && rw-w.fromRW < el/10
		if narrow != w.narrow {
			w.narrow = narrow
			log.WithFields(logrus.Fields{"rate_mbps": rate * 8 / 1e6, "rwnd_limited_ms": ms(rw - w.fromRW),
				"main_only": narrow}).Debug("push width")
		}
		w.at, w.from, w.fromRW = now, b, rw
	}
	return w.narrow
}

// serveFaults answers the destination's requests on the urgent channel with
// the pages nobody has sent yet, and feeds the faults to the push order.
func (s *sender) serveFaults(ctx context.Context, claims *claimSet, order *pushOrder, lastFault *atomic.Int64) error {
	sc := newScratch(s.plan.BatchPages)
	for {
		typ, body, err := s.links.urgent.r.Read()
		if err != nil {
			// The destination closes its urgent side once it has every
			// page, maybe before its completion reaches us on main; a real
			// break shows on main too, which decides.
			s.log.WithError(err).Debug("urgent channel closed")
			return nil
		}
		if typ != wire.TypeRequest {
			return fmt.Errorf("urgent channel: unexpected %v record: %w", typ, wire.ErrMalformed)
		}
		gfns, err := wire.UnmarshalGFNs(body)
		if err != nil {
			return err
		}
		lastFault.Store(time.Now().UnixNano())
		mine := gfns[:0]
		for _, g := range gfns {
			order.fault(g)
			if claims.claim(g) {
				mine = append(mine, g)
			}
		}
		for len(mine) > 0 {
			n := min(len(mine), s.plan.BatchPages)
			if err := s.sendPages(ctx, s.links.urgent, sc, mine[:n], wire.PagesDemand, "demand"); err != nil {
				return err
			}
			mine = mine[n:]
		}
	}
}
