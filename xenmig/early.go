package xenmig

import (
	"context"
	"errors"
	"fmt"
	mathbits "math/bits"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenmig/internal/wire"
)

// preparer pages a post-copy destination's memory out while the source
// sends pages early (sender.earlyPush). Each gfn goes to whichever comes
// first: the evictor, walking down from the top gfn, pages it out; an early
// page, the sender walking up from the bottom, is written in place. At the
// pause only the early pages the guest wrote again since (the owed list) are
// paged out. On Xen, where nominate and evict cost about 16 µs a gfn, each
// page that arrives early saves its own, and the rest is paged out while
// the source still runs.
//
// The source names the gfns its early push leaves out, written lately
// (hot): the evictor pages those out first, as they come. It walks down
// through the rest only while the early pages cover gfns more slowly than
// it would page them out itself (evictPace): an early page costs a write,
// a gfn paged out an evict now and a load after the switchover, both under
// Xen's p2m lock, which the guest's faults need then.
//
// An early page that comes after the evictor took its gfn (late) is not
// loaded then: it is held at once, without waiting for the evictor to be
// done with the gfn (waiting spun on this machine's scarce CPU), and
// installed after the switchover like a staged pre-copy page (on the
// guest's first touch, or in the background); one whose gfn paging could
// not take is dropped then, as the source sends every such gfn again in
// the downtime.
// A load costs several times an evict and shares the evictor's lock in Xen;
// loading late pages as they came slowed the early push to the evictor's
// pace, and every page still in flight at the pause was loaded in the
// downtime (294 ms of it for a 256 MiB guest, with a real host's costs).
// Zero pages are held as a bit; other pages up to maxLate bytes, beyond
// which they are loaded at once.
type preparer struct {
	r        *receiver
	out      *hypervisor.Bitmap // to page out or receive: populated, not special
	taken    *claimSet          // by the evictor or an early page, whichever came first
	evicted  *claimSet          // the evictor is done with these
	busy     *claimSet          // of those, the ones paging could not take (r.direct)
	early    *claimSet          // written, loaded or held from an early page
	lateZero *claimSet          // zero pages held for after the switchover
	lateMu   sync.Mutex
	late     map[hypervisor.GFN][]byte // other pages held for after the switchover
	lateMem  int                       // bytes of the pages in late
	hotMu    sync.Mutex
	hot      []hypervisor.GFN // named by the source, to page out first
	covered  atomic.Uint64    // gfns early records have named, pages or hot
	news     chan struct{}    // an early record came (buffered, 1)
	cancel   context.CancelFunc
	done     chan struct{} // the evictor finished and prepared was sent
	err      error         // why the evictor failed; read after done
	start    time.Time
}

// startPreparer pages out out in the background and sends prepared once
// every gfn of it is paged out or written.
func (r *receiver) startPreparer(ctx context.Context, out *hypervisor.Bitmap, start time.Time) *preparer {
	p := newPreparer(r, out, start)
	ctx, p.cancel = context.WithCancel(ctx)
	go p.evict(ctx)
	return p
}

// newPreparer returns r's preparer of out, its evictor not started.
func newPreparer(r *receiver, out *hypervisor.Bitmap, start time.Time) *preparer {
	n := out.Len()
	return &preparer{r: r, out: out, taken: newClaimSet(n), evicted: newClaimSet(n), busy: newClaimSet(n), early: newClaimSet(n),
		lateZero: newClaimSet(n), late: map[hypervisor.GFN][]byte{}, news: make(chan struct{}, 1),
		done: make(chan struct{}), start: start}
}

// evict pages out every gfn no early page has taken, the hot ones first and
// the rest top down, then tells the source the destination is prepared. If
// it fails, it tells the source why (an abort record), so that neither side
// waits for prepared.
func (p *preparer) evict(ctx context.Context) {
	defer close(p.done)
	defer func() {
		if p.err != nil && ctx.Err() == nil {
			p.r.links.main.w.Write(wire.TypeAbort, abortRecord(p.err))
		}
	}()
	var pace evictPace
	wait := time.NewTimer(paceWait)
	wait.Stop()
	words := p.out.Words()
	var hot []hypervisor.GFN
	// untold gfns were paged out down from the top since the source
	// was last told how far the walk has come (walked).
	untold := 0
	tell := func(w int) error {
		if untold == 0 || p.covered.Load() == 0 {
			return nil // nothing new; or the source does not push early
		}
		untold = 0
		if err := p.r.links.main.w.Write(wire.TypeWalked, wire.MarshalGFNs([]hypervisor.GFN{hypervisor.GFN(w * 64)})); err != nil {
			return fmt.Errorf("send walked: %w", err)
		}
		return nil
	}
	for w := len(words) - 1; w >= 0; {
		if ctx.Err() != nil {
			p.err = ctx.Err()
			return
		}
		if hot = p.takeHot(hot[:0]); len(hot) > 0 {
			t, n := time.Now(), 0
			for _, g := range hot {
				if n, p.err = p.evictOne(g, n); p.err != nil {
					return
				}
			}
			pace.paged(n, time.Since(t))
			continue
		}
		if d := pace.yield(p.covered.Load(), time.Now()); d > 0 {
			if p.err = tell(w + 1); p.err != nil {
				return
			}
			wait.Reset(d)
			select {
			case <-p.news:
			case <-wait.C:
			case <-ctx.Done():
			}
			continue
		}
		t, n := time.Now(), 0
		for bits := words[w]; bits != 0; {
			b := 63 - mathbits.LeadingZeros64(bits)
			bits &^= 1 << b
			if n, p.err = p.evictOne(hypervisor.GFN(w*64+b), n); p.err != nil {
				return
			}
		}
		pace.paged(n, time.Since(t))
		w--
		if untold += n; untold >= streamChunk {
			if p.err = tell(w + 1); p.err != nil {
				return
			}
		}
	}
	p.r.prepMS = ms(time.Since(p.start))
	if err := p.r.links.main.w.Write(wire.TypePrepared, wire.MarshalGFNs(p.r.direct.GFNs())); err != nil {
		p.err = fmt.Errorf("send prepared: %w", err)
		return
	}
	p.lateMu.Lock()
	late := uint64(len(p.late)) + p.lateZero.count()
	p.lateMu.Unlock()
	p.r.log.WithFields(map[string]any{"ms": p.r.prepMS, "paged_out": p.evicted.count() - p.busy.count(),
		"early": p.early.count(), "late": late, "busy": p.busy.count(), "waits": pace.waits, "walks": pace.walks,
		"evict_us": pace.perGFN() * 1e6}).Info("domain shell prepared")
}

// evictOne pages g out unless an early page (or the evictor) took it first,
// and returns n plus one if it did.
func (p *preparer) evictOne(g hypervisor.GFN, n int) (int, error) {
	if !p.out.Test(g) || !p.taken.claim(g) {
		return n, nil // special, or written from an early page
	}
	err := p.r.pageOutOne(g) // an EBUSY gfn joins r.direct
	if p.r.direct.Test(g) {
		p.busy.claim(g)
	}
	p.evicted.claim(g)
	return n + 1, err
}

// hint queues gfns the source will not send early (hot), to be paged out
// first.
func (p *preparer) hint(gfns []hypervisor.GFN) error {
	for _, g := range gfns {
		if uint64(g) >= p.out.Len() {
			return fmt.Errorf("hot gfn %#x beyond the guest: %w", uint64(g), wire.ErrMalformed)
		}
	}
	p.hotMu.Lock()
	p.hot = append(p.hot, gfns...)
	p.hotMu.Unlock()
	p.covered.Add(uint64(len(gfns)))
	p.notify()
	return nil
}

// takeHot moves the hot gfns queued so far into buf.
func (p *preparer) takeHot(buf []hypervisor.GFN) []hypervisor.GFN {
	p.hotMu.Lock()
	defer p.hotMu.Unlock()
	buf = append(buf, p.hot...)
	p.hot = p.hot[:0]
	return buf
}

// notify wakes the evictor if it waits for the early push.
func (p *preparer) notify() {
	select {
	case p.news <- struct{}{}:
	default:
	}
}

// evictPace decides whether the evictor walks on or leaves the gfns ahead
// of it to the early push: it waits while the early records cover gfns at
// least as fast as it would page them out, counting what a gfn paged out
// costs after the switchover too (pagedCost), and walks on once the early
// push is slower or has gone quiet.
type evictPace struct {
	n       int           // gfns paged out
	spent   time.Duration // paging them out
	at      time.Time     // start of the coverage window
	from    uint64        // gfns covered at its start
	rate    float64       // gfns covered per second over the last window
	last    uint64        // gfns covered at the last look
	stirred time.Time     // when coverage last grew
	waits   int           // times it waited
	walks   int           // words it walked
}

// perGFN returns the seconds paging out has taken a gfn.
func (e *evictPace) perGFN() float64 {
	if e.n == 0 {
		return 0
	}
	return e.spent.Seconds() / float64(e.n)
}

// Pacing's constants: paging out is measured over at least learnGFNs
// before the evictor ever waits; the early push's rate over windows of
// paceWindow; it is quiet after earlyQuiet without a record; a wait lasts
// paceWait unless an early record comes first.
//
// earlyQuiet is several windows: on a loaded host the destination may read
// no record for a few milliseconds while the push goes on, and every gfn the
// evictor takes then costs what pagedCost says.
const (
	learnGFNs  = 64
	paceWindow = 2 * time.Millisecond
	earlyQuiet = 10 * time.Millisecond
	paceWait   = 500 * time.Microsecond
)

// pagedCost is what a gfn paged out costs, in evicts: its nominate and evict
// now, and its load after the switchover, under the lock the guest's faults
// need then (its page must come then, zero or not). An early page costs a
// write. The lab measured a load at 3.5 times a nominate and evict (266
// against 77 µs), the simulator's estimate of a real host at 4.8: walking
// pays only while the push covers gfns more slowly than one per 5 evicts.
// Counting the evict alone, the evictor walked into the zero pages ahead of
// a sequential writer's early push, which covers them fast, and each cost
// the 1 GiB writer some 7 µs after the switchover (docs/BENCH.md).
const pagedCost = 5

// paged records n gfns paged out in d.
func (e *evictPace) paged(n int, d time.Duration) {
	if n > 0 {
		e.n += n
		e.spent += d
	}
}

// yield returns how long the evictor should wait for the early push, 0 to
// walk on, given the gfns early records have covered so far.
func (e *evictPace) yield(covered uint64, now time.Time) time.Duration {
	if e.at.IsZero() {
		e.at, e.from = now, covered
	}
	if covered != e.last {
		e.last, e.stirred = covered, now
	}
	// A window without a record keeps the last rate: the push is slow
	// or has gone quiet only once earlyQuiet has passed.
	if now.Sub(e.at) >= paceWindow && covered > e.from {
		e.rate = float64(covered-e.from) / now.Sub(e.at).Seconds()
		e.at, e.from = now, covered
	}
	if e.n < learnGFNs || now.Sub(e.stirred) > earlyQuiet || e.rate*pagedCost*e.perGFN() < 1 {
		e.walks++
		return 0
	}
	e.waits++
	return paceWait
}

// failed returns why the evictor failed, if it has.
func (p *preparer) failed() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// stop ends the evictor and waits for it.
func (p *preparer) stop() {
	p.cancel()
	<-p.done
}

// maxLate bounds the memory the late non-zero pages may hold.
const maxLate = 16 << 20

// install takes a batch sent early: written in place where the evictor has
// not been, held where it has (late), or loaded once late is full. The
// pages written are taken from the record as they are while it can (every
// non-zero page so far written, in order), and zero pages from zeroPages:
// copying each batch into a buffer grown page by page was most of the
// destination's CPU for early pages.
func (p *preparer) install(b wire.Pages) error {
	var gfns, zero []hypervisor.GFN
	var data []byte // nil while it is b.Data[:kept*PageSize]
	kept, gap := 0, false
	for g, page := range b.All() {
		if uint64(g) >= p.out.Len() {
			return fmt.Errorf("early page for gfn %#x beyond the guest: %w", uint64(g), wire.ErrMalformed)
		}
		if !p.out.Test(g) || !p.early.claim(g) {
			gap = gap || page != nil
			continue // a special page, or one ballooned in since (owed if at all); or a duplicate
		}
		if p.taken.claim(g) {
			switch {
			case page == nil:
				zero = append(zero, g) // the shell's page may hold the builder's bytes
			case gap:
				if data == nil {
					data = append(make([]byte, 0, len(b.Data)), b.Data[:kept*hypervisor.PageSize]...)
				}
				gfns = append(gfns, g)
				data = append(data, page...)
			default:
				gfns = append(gfns, g)
				kept++
			}
			continue
		}
		gap = gap || page != nil
		if page == nil {
			page = zeroPage[:]
		}
		if p.hold(g, page) {
			continue // even while the evictor is still at it: finish sorts it out
		}
		for !p.evicted.test(g) {
			select {
			case <-p.done: // it stopped before this gfn
				if !p.evicted.test(g) {
					return fmt.Errorf("early page of gfn %#x: the preparation stopped: %w", uint64(g), errors.Join(p.err, errPreparationStopped))
				}
			default:
				runtime.Gosched() // the evictor is paging it out right now
			}
		}
		if p.busy.test(g) {
			continue // paging could not take it: the source sends it in the downtime
		}
		if err := p.r.pager.Load(g, page); err != nil {
			return fmt.Errorf("install early page of gfn %#x: %w", uint64(g), err)
		}
	}
	if data == nil {
		data = b.Data[:kept*hypervisor.PageSize]
	}
	if len(gfns) > 0 {
		if err := p.r.hv.WritePages(p.r.dom, gfns, data); err != nil {
			return fmt.Errorf("write %d early pages: %w", len(gfns), err)
		}
	}
	for len(zero) > 0 {
		n := min(len(zero), len(zeroPages)/hypervisor.PageSize)
		if err := p.r.hv.WritePages(p.r.dom, zero[:n], zeroPages[:n*hypervisor.PageSize]); err != nil {
			return fmt.Errorf("write %d early zero pages: %w", n, err)
		}
		zero = zero[n:]
	}
	p.covered.Add(uint64(len(b.GFNs)))
	p.notify()
	return nil
}

// zeroPages is the source of the zero pages a batch writes.
var zeroPages [64 * hypervisor.PageSize]byte

// hold keeps a late page (its gfn taken by the evictor, paged out or being
// paged out) for after the switchover, and reports whether it did: not once
// late holds maxLate bytes of data.
func (p *preparer) hold(g hypervisor.GFN, page []byte) bool {
	if &page[0] == &zeroPage[0] {
		p.lateZero.claim(g)
		return true
	}
	p.lateMu.Lock()
	defer p.lateMu.Unlock()
	if p.lateMem+len(page) > maxLate {
		return false
	}
	p.lateMem += len(page)
	p.late[g] = slices.Clone(page) // the record's buffer is reused
	return true
}

// finish pages out, at the pause, the early pages the guest wrote again
// since (stale). It returns the gfns installed early and current; the late
// pages held and current (zero ones as a bitmap), which the installer owes
// and installs (stagePages); and the stale gfns paging could not take
// (they join r.direct: the source sends them in the downtime). A stale late
// page is dropped: its gfn is paged out already, and the source sends it
// again. The bulk streams have synced: no early page comes any more.
func (p *preparer) finish(populated *hypervisor.Bitmap, stale []hypervisor.GFN) (kept *hypervisor.Bitmap, late map[hypervisor.GFN][]byte, lateZero *hypervisor.Bitmap, busy []hypervisor.GFN, err error) {
	<-p.done
	if p.err != nil {
		return nil, nil, nil, nil, p.err
	}
	p.lateMu.Lock()
	late, p.late = p.late, nil
	p.lateMu.Unlock()
	lateZero = p.lateZero.bitmap()
	kept = p.early.bitmap()
	kept.And(populated)
	// A page held for a gfn paging could not take is not installed: the
	// source sends every such gfn (r.direct) again in the downtime.
	unpageable := p.busy.bitmap()
	for g := range late {
		if unpageable.Test(g) {
			delete(late, g)
		}
	}
	lateZero.AndNot(unpageable)
	kept.AndNot(unpageable)
	again := hypervisor.NewBitmap(populated.Len())
	for _, g := range stale {
		if uint64(g) >= kept.Len() {
			continue
		}
		if _, ok := late[g]; ok || lateZero.Test(g) {
			delete(late, g)
			lateZero.Clear(g)
			kept.Clear(g)
		} else if kept.Test(g) {
			kept.Clear(g)
			again.Set(g)
		}
	}
	kept.AndNot(lateZero) // owed: installed from what was held
	for g := range late {
		kept.Clear(g)
	}
	before := p.r.direct.Clone()
	if err := p.r.pageOut(again); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("page out at the pause: %w", err)
	}
	now := p.r.direct.Clone()
	now.AndNot(before)
	p.r.log.WithFields(map[string]any{"paged_out": again.Count(), "busy": now.Count(), "late": uint64(len(late)) + lateZero.Count()}).Debug("paged out at the pause the early pages written again")
	return kept, late, lateZero, now.GFNs(), nil
}

// errPreparationStopped: an early page came for a gfn the evictor took but
// never paged out, because it stopped.
var errPreparationStopped = errors.New("preparation stopped")
