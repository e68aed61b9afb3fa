package xenmig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	mathbits "math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenmig/internal/wire"
)

// phasePrecopy names the pages sent while the guest still runs here.
const phasePrecopy = "precopy"

// streamChunk is how many consecutive gfns go on one page stream before the
// next stream takes over (2 MiB). A gfn always travels on the same stream, so
// a later round's copy of it can never overtake an earlier one.
const streamChunk = 512

// shareOf yields, in ascending order, the gfns set in words (a bitmap's)
// that fall in stream i's chunks of streams.
func shareOf(words []uint64, i, streams int) iter.Seq[hypervisor.GFN] {
	return func(yield func(hypervisor.GFN) bool) {
		for w := i * chunkWords; w < len(words); w += streams * chunkWords {
			if !chunkOf(words, w, yield) {
				return
			}
		}
	}
}

// chunkWords is how many bitmap words a chunk of streamChunk gfns spans.
const chunkWords = streamChunk / 64

// chunkOf yields, in ascending order, the gfns set in the chunk of words
// that starts at word w, and reports whether yield wants more.
func chunkOf(words []uint64, w int, yield func(hypervisor.GFN) bool) bool {
	for j := w; j < min(w+chunkWords, len(words)); j++ {
		for bits := words[j]; bits != 0; bits &= bits - 1 {
			if !yield(hypervisor.GFN(j*64 + mathbits.TrailingZeros64(bits))) {
				return false
			}
		}
	}
	return true
}

// chunks hands out the chunks of a bitmap's words in ascending order, one
// at a time, to whichever early pusher asks next, up to a ceiling the
// destination lowers. The destination's evictor walks down from the top and
// pages out what the push has not reached; it says how far it has come
// (walked records), and the pushers stop there. Pages sent for gfns the
// evictor had taken would arrive late: held, then loaded after the
// switchover under the lock the guest's faults need. The pushers walk up
// side by side for the same reason: one left behind in chunks of its own
// would send, after the meeting, pages of gfns the evictor took.
type chunks struct {
	words   []uint64
	next    atomic.Int64  // the next chunk to hand out
	ceiling atomic.Uint64 // the gfns from here up are the evictor's
}

// newChunks returns the chunks of words, no ceiling lowered yet.
func newChunks(words []uint64) *chunks {
	c := &chunks{words: words}
	c.ceiling.Store(uint64(len(words)) * 64)
	return c
}

// lower lowers the ceiling to g, if it is lower.
func (c *chunks) lower(g hypervisor.GFN) {
	for {
		old := c.ceiling.Load()
		if uint64(g) >= old || c.ceiling.CompareAndSwap(old, uint64(g)) {
			return
		}
	}
}

// all yields, in ascending order within each chunk, the gfns set in the
// chunks this caller takes, and ends at the ceiling.
func (c *chunks) all() iter.Seq[hypervisor.GFN] {
	return func(yield func(hypervisor.GFN) bool) {
		below := func(g hypervisor.GFN) bool { return uint64(g) < c.ceiling.Load() && yield(g) }
		for {
			w := int(c.next.Add(1)-1) * chunkWords
			if w >= len(c.words) || !chunkOf(c.words, w, below) {
				return
			}
		}
	}
}

// awaitPrepared reads the destination's records on main until prepared,
// lowering todo's ceiling as its evictor walks down.
func (s *sender) awaitPrepared(todo *chunks) ([]byte, error) {
	for {
		typ, body, err := s.links.main.r.Read()
		if err != nil || typ != wire.TypeWalked {
			return expected(wire.TypePrepared, typ, body, err)
		}
		g, err := wire.UnmarshalGFNs(body)
		if err == nil && len(g) != 1 {
			err = wire.ErrMalformed
		}
		if err != nil {
			return nil, fmt.Errorf("walked: %w", err)
		}
		todo.lower(g[0])
	}
}

// sendSet sends every gfn of set in ascending order, each stream its share
// of chunks, in parallel.
func (s *sender) sendSet(ctx context.Context, set *hypervisor.Bitmap, flags wire.PageFlags, phase string) error {
	streams := s.links.streams()
	g, gctx := errgroup.WithContext(ctx)
	for i, c := range streams {
		g.Go(func() error { return s.sendShare(gctx, c, set, i, len(streams), flags, phase) })
	}
	return g.Wait()
}

// sendShare sends the gfns of set in stream i's chunks on c.
// A batch holds BatchPages data pages, and more gfns where the last one's
// were zero (zeroBatch): a record per 64 zero pages made the rounds over
// an idle guest's memory a round trip of small records.
func (s *sender) sendShare(ctx context.Context, c *conn, set *hypervisor.Bitmap, i, streams int, flags wire.PageFlags, phase string) error {
	most := s.plan.BatchPages * zeroBatches
	sc := newScratch(most)
	batch := make([]hypervisor.GFN, 0, most)
	want := s.plan.BatchPages
	for g := range shareOf(set.Words(), i, streams) {
		if batch = append(batch, g); len(batch) == want {
			if err := s.sendPages(ctx, c, sc, batch, flags, phase); err != nil {
				return err
			}
			want = zeroBatch(s.plan.BatchPages, most, sc.zeroShare())
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		return s.sendPages(ctx, c, sc, batch, flags, phase)
	}
	return nil
}

// earlyPush sends pages while the destination prepares (post-copy): a page
// that arrives before the switchover is installed there rather than paged
// out and fetched again, so the preparation overlaps the transfer instead of
// adding to it. Pages the guest has written since log-dirty began are left
// out (they would be stale by the switchover); the dirty log at the pause
// names those sent here and written since. It returns the body of the
// destination's prepared record and the gfns sent.
func (s *sender) earlyPush(ctx context.Context) ([]byte, *hypervisor.Bitmap, error) {
	s.progress.set("prepare", 0, s.populated.Count())
	// Nothing is read on the destination until its shell exists, which
	// on Xen (libxl building it) may take longer than a write may stall.
	if _, err := s.links.main.expect(wire.TypeShell); err != nil {
		return nil, nil, err
	}
	sent := newClaimSet(s.populated.Len())
	stop := make(chan struct{})
	g, gctx := errgroup.WithContext(ctx)
	streams := s.links.streams()
	peek := &dirtyPeek{hv: s.hv, dom: s.dom}
	todo := newChunks(s.populated.Words())
	for _, c := range streams {
		g.Go(func() error { return s.earlyShare(gctx, c, todo, stop, sent, peek) })
	}
	type answer struct {
		body []byte
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		body, err := s.awaitPrepared(todo)
		got <- answer{body, err}
	}()
	var a answer
	select {
	case a = <-got:
	case <-gctx.Done():
		// A pusher failed (a stalled or broken connection) or ctx
		// ended: nothing will come on main that we can trust.
		s.links.close()
		a = <-got
	}
	close(stop)
	if gerr := g.Wait(); gerr != nil {
		a.err = gerr
	}
	if a.err != nil {
		return nil, nil, a.err
	}
	return a.body, sent.bitmap(), nil
}

// hotRefresh is how often an early pusher looks at the dirty log again: a
// guest writing in order at memory speed dirties some 2000 pages a
// millisecond, which would cross the link again.
const hotRefresh = time.Millisecond

// dirtyPeek is one look at the dirty log shared by the early pushers, taken
// again once it is hotRefresh old: a peek walks the whole log, and Xen runs
// one log-dirty operation per domain at a time.
type dirtyPeek struct {
	hv  hypervisor.Hypervisor
	dom hypervisor.DomID

	mu  sync.Mutex
	log *hypervisor.Bitmap // never changed once taken: readers keep it
	at  time.Time
}

// get returns a look at the dirty log at most hotRefresh old.
func (p *dirtyPeek) get() (*hypervisor.Bitmap, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.at) >= hotRefresh {
		l, err := p.hv.DirtyLog(p.dom, false)
		if err != nil {
			return nil, fmt.Errorf("peek at the dirty log: %w", err)
		}
		p.log, p.at = l, time.Now()
	}
	return p.log, nil
}

// earlyShare sends, on c, the populated gfns of the chunks it takes from
// todo that the guest has not written since log-dirty began (as peek last
// saw it), until stop closes or none is left. A gfn sent early is sent once,
// on whichever stream took its chunk: the streams sync before the pause, so
// no later copy can be overtaken by it.
func (s *sender) earlyShare(ctx context.Context, c *conn, todo *chunks, stop <-chan struct{}, sent *claimSet, peek *dirtyPeek) error {
	sc := newScratch(s.plan.BatchPages * zeroBatches)
	sc.sent = sent
	// Whatever is queued when the destination is prepared waits in front
	// of the layout and the vCPU state, in the downtime: queue little.
	// Batches of zero pages grow as the push's do (sendQueue.batch): the
	// early push of a mostly empty guest covers its gfns at the rate of
	// its records, and 64 gfns a record made the destination's
	// preparation wait for it.
	queue := newSendQueue(c.tcp)
	batch := make([]hypervisor.GFN, 0, s.plan.BatchPages*zeroBatches)
	want := queue.batch(s.plan.BatchPages, 0)
	var hot []hypervisor.GFN // of the batch, those left out
	start, pages, hotPages := time.Now(), 0, 0
	var peeking, sending time.Duration
	defer func() {
		s.log.WithFields(logrus.Fields{"stream": c.stream, "pages": pages, "hot": hotPages, "ms": ms(time.Since(start)),
			"peek_ms": ms(peeking), "send_ms": ms(sending)}).Debug("early pusher done")
	}()
	flush := func() error {
		select {
		case <-stop:
			return errStopped
		default:
		}
		t := time.Now()
		dirty, err := peek.get()
		peeking += time.Since(t)
		if err != nil {
			return err
		}
		// The guest wrote these since the last look: they would be
		// stale by the switchover. The destination pages them out
		// first, and leaves the rest to the pages sent here.
		hot = hot[:0]
		batch = slices.DeleteFunc(batch, func(g hypervisor.GFN) bool {
			if dirty.Test(g) {
				hot = append(hot, g)
				return true
			}
			return false
		})
		if len(hot) > 0 {
			if err := c.w.Write(wire.TypeHot, wire.MarshalGFNs(hot)); err != nil {
				return fmt.Errorf("send hot gfns: %w", err)
			}
			hotPages += len(hot)
		}
		if len(batch) == 0 {
			return nil
		}
		t = time.Now()
		err = s.sendPages(ctx, c, sc, batch, 0, phasePrecopy)
		sending += time.Since(t)
		pages += len(batch)
		queue.sent(sc.wrote)
		want = queue.batch(s.plan.BatchPages, sc.zeroShare())
		batch = batch[:0]
		return err
	}
	for g := range todo.all() {
		if batch = append(batch, g); len(batch) == want {
			if err := flush(); errors.Is(err, errStopped) {
				return nil
			} else if err != nil {
				return err
			}
		}
	}
	if len(batch) > 0 {
		if err := flush(); err != nil && !errors.Is(err, errStopped) {
			return err
		}
	}
	return nil
}

// errStopped ends an early pusher when the destination is prepared.
var errStopped = errors.New("stopped")

// syncStreams tells the receiver that every page sent so far on the bulk
// streams precedes main's next control record.
func (s *sender) syncStreams() error {
	for _, c := range s.links.bulk {
		if err := c.w.Write(wire.TypeSync); err != nil {
			return fmt.Errorf("sync bulk stream %d: %w", c.stream, err)
		}
	}
	return nil
}

// scratch is one sending goroutine's buffers.
type scratch struct {
	pages []byte
	hdr   []byte
	zero  []bool
	wrote int       // bytes of the last record sent
	gfns  int       // gfns in it
	zeros int       // of those, the ones sent as zero
	sent  *claimSet // if set, every gfn sent is marked in it
}

// zeroShare returns the share of the last record's gfns sent as zero.
func (sc *scratch) zeroShare() float64 {
	if sc.gfns == 0 {
		return 0
	}
	return float64(sc.zeros) / float64(sc.gfns)
}

func newScratch(batch int) *scratch {
	return &scratch{pages: make([]byte, batch*hypervisor.PageSize), zero: make([]bool, batch)}
}

var zeroPage [hypervisor.PageSize]byte

// sendPages reads gfns from the domain and sends them as one Pages record on
// c, zero pages as flags only.
func (s *sender) sendPages(ctx context.Context, c *conn, sc *scratch, gfns []hypervisor.GFN, flags wire.PageFlags, phase string) error {
	buf := sc.pages[:len(gfns)*hypervisor.PageSize]
	for {
		err := s.hv.ReadPages(s.dom, gfns, buf)
		if err == nil {
			break
		}
		var pe *hypervisor.PageError
		if phase != phasePrecopy || !errors.As(err, &pe) || !errors.Is(pe.Err, hypervisor.ErrNotPopulated) {
			return fmt.Errorf("read pages: %w", err)
		}
		// The guest runs: its balloon gave pe.GFN back since the set was
		// made. Giving it back dirtied it, so a later round or the layout
		// at the pause settles it; the rest of the batch goes now.
		n := len(gfns)
		if gfns = slices.DeleteFunc(gfns, func(g hypervisor.GFN) bool { return g == pe.GFN }); len(gfns) == n {
			return fmt.Errorf("read pages: %w", err) // not one of ours: do not loop
		}
		if len(gfns) == 0 {
			return nil
		}
		buf = buf[:len(gfns)*hypervisor.PageSize]
	}
	zero := sc.zero[:len(gfns)]
	data := buf[:0]
	for i := range gfns {
		p := buf[i*hypervisor.PageSize : (i+1)*hypervisor.PageSize]
		zero[i] = bytes.Equal(p, zeroPage[:])
		if !zero[i] {
			data = append(data, p...) // compacts in place: data never overtakes p
			if s.ownedSeen.claim(gfns[i]) {
				s.owned.Add(1)
			}
		}
	}
	sc.hdr = wire.AppendPagesHeader(sc.hdr[:0], flags, gfns, zero)
	if s.limiter != nil {
		if err := s.limiter.WaitN(ctx, min(len(sc.hdr)+len(data)+wire.HeaderSize, s.limiter.Burst())); err != nil {
			return err
		}
	}
	if err := c.w.Write(wire.TypePages, sc.hdr, data); err != nil {
		return fmt.Errorf("send %s pages: %w", phase, err)
	}
	sc.wrote = len(sc.hdr) + len(data) + wire.HeaderSize
	if sc.sent != nil {
		for _, g := range gfns {
			sc.sent.claim(g)
		}
	}
	n := uint64(len(data) / hypervisor.PageSize)
	sc.gfns, sc.zeros = len(gfns), len(gfns)-int(n)
	s.counter.add(&s.counter.phasePages, phase, n)
	s.counter.add(&s.counter.phaseBytes, phase, uint64(sc.wrote))
	s.counter.zero.Add(uint64(len(gfns)) - n)
	s.progress.done.Add(uint64(len(gfns)))
	return nil
}
