package xenmig

import (
	"context"
	"errors"
	"fmt"
	mathbits "math/bits"
	"runtime"
	"slices"
	"sync"
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
	cancel   context.CancelFunc
	done     chan struct{} // the evictor finished and prepared was sent
	err      error         // why the evictor failed; read after done
	start    time.Time
}

// startPreparer pages out out in the background and sends prepared once
// every gfn of it is paged out or written.
func (r *receiver) startPreparer(ctx context.Context, out *hypervisor.Bitmap, start time.Time) *preparer {
	ctx, cancel := context.WithCancel(ctx)
	n := out.Len()
	p := &preparer{r: r, out: out, taken: newClaimSet(n), evicted: newClaimSet(n), busy: newClaimSet(n), early: newClaimSet(n),
		lateZero: newClaimSet(n), late: map[hypervisor.GFN][]byte{}, cancel: cancel, done: make(chan struct{}), start: start}
	go p.evict(ctx)
	return p
}

// evict pages out, top down, every gfn no early page has taken, then tells
// the source the destination is prepared. If it fails, it tells the source
// why (an abort record), so that neither side waits for prepared.
func (p *preparer) evict(ctx context.Context) {
	defer close(p.done)
	defer func() {
		if p.err != nil && ctx.Err() == nil {
			p.r.links.main.w.Write(wire.TypeAbort, abortRecord(p.err))
		}
	}()
	words := p.out.Words()
	for w := len(words) - 1; w >= 0; w-- {
		if ctx.Err() != nil {
			p.err = ctx.Err()
			return
		}
		for bits := words[w]; bits != 0; {
			b := 63 - mathbits.LeadingZeros64(bits)
			bits &^= 1 << b
			g := hypervisor.GFN(w*64 + b)
			if !p.taken.claim(g) {
				continue // written from an early page
			}
			err := p.r.pageOutOne(g) // an EBUSY gfn joins r.direct
			if p.r.direct.Test(g) {
				p.busy.claim(g)
			}
			p.evicted.claim(g)
			if err != nil {
				p.err = err
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
		"early": p.early.count(), "late": late, "busy": p.busy.count()}).Info("domain shell prepared")
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
