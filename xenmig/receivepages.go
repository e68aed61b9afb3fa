package xenmig

// The destination's side of the pages that come before the switchover: the
// bulk streams' readers up to each sync, pre-copy and hybrid batches, the
// resume set, and post-copy's early pages and hot gfns (the preparer,
// early.go, takes those).

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenmig/internal/wire"
)

// precopyPages takes a batch sent before the switchover: written straight
// into the guest in pre-copy, kept aside in hybrid until the owed list says
// which copies are current.
func (r *receiver) precopyPages(p wire.Pages) error {
	if p.Flags&wire.PagesStage != 0 {
		if r.in == nil {
			return fmt.Errorf("staged pages without paging: %w", wire.ErrMalformed)
		}
		return r.in.stage(p)
	}
	gfns, data, err := r.precopyPlan(p)
	if err != nil || len(gfns) == 0 {
		return err
	}
	// Outside the lock: the streams copy into the guest in parallel (a
	// gfn always travels on the same stream).
	if err := r.hv.WritePages(r.dom, gfns, data); err != nil {
		return fmt.Errorf("write %d pages: %w", len(gfns), err)
	}
	return nil
}

// precopyPlan returns what of a pre-copy batch to write into the guest: the
// data, and zero pages over gfns written before. Zero pages over zero pages
// (most of a guest's free memory in the first round) are skipped, or writing
// them would trail the source and lengthen the downtime. The data is the
// batch's own unless a page must be left out or a zero page written.
func (r *receiver) precopyPlan(p wire.Pages) ([]hypervisor.GFN, []byte, error) {
	// Pages come from every stream at once.
	r.precopyMu.Lock()
	defer r.precopyMu.Unlock()
	if r.in != nil {
		// In the downtime: the gfns paging could not take, written
		// directly, and the resume set, installed as a fault's page is.
		var err error
		if p, err = r.installResumeSet(p); err != nil {
			return nil, nil, err
		}
		if r.written == nil {
			r.written = r.direct.Clone()
		}
	}
	// The guest may have ballooned gfns in since the preparation: back
	// them before writing (the layout at the pause settles the rest).
	var fresh []hypervisor.GFN
	for _, g := range p.GFNs {
		if uint64(g) < r.cfg.Populated.Len() && !r.cfg.Populated.Test(g) {
			fresh = append(fresh, g)
			r.cfg.Populated.Set(g)
		}
	}
	if len(fresh) > 0 {
		if err := r.hv.Populate(r.dom, fresh); err != nil {
			return nil, nil, fmt.Errorf("populate %d gfns ballooned in since the preparation: %w", len(fresh), err)
		}
	}
	if r.written == nil {
		r.written = hypervisor.NewBitmap(r.cfg.Populated.Len())
	}
	gfns := make([]hypervisor.GFN, 0, len(p.GFNs))
	var data []byte // nil while it is p.Data[:kept*PageSize]
	kept := 0
	own := func() {
		if data == nil {
			data = append(make([]byte, 0, len(p.Data)+hypervisor.PageSize), p.Data[:kept*hypervisor.PageSize]...)
		}
	}
	for g, page := range p.All() {
		if uint64(g) >= r.written.Len() {
			return nil, nil, fmt.Errorf("page for gfn %#x beyond the guest: %w", uint64(g), wire.ErrMalformed)
		}
		switch {
		case r.special.Test(g):
			// This host's xenstored and xenconsoled own the rings.
			if page != nil {
				own()
			}
		case page != nil:
			gfns = append(gfns, g)
			if data != nil {
				data = append(data, page...)
			} else {
				kept++
			}
			r.written.Set(g)
		case r.written.Test(g):
			own()
			gfns = append(gfns, g)
			data = append(data, zeroPage[:]...)
			r.written.Clear(g)
		}
	}
	if data == nil {
		data = p.Data[:kept*hypervisor.PageSize]
	}
	return gfns, data, nil
}

// installResumeSet installs the pages of p that the installer owes (the
// resume set: what the guest registers with Xen again as it resumes, which
// must not be paged out then), drops the special ones (the guest's suspend
// writes its xenstore ring too, which this host's xenstored owns) and
// returns the rest, which must be gfns paging could not take. It runs before
// the switchover, in the downtime.
func (r *receiver) installResumeSet(p wire.Pages) (wire.Pages, error) {
	if r.pausedAt.IsZero() {
		return p, fmt.Errorf("unstaged pages before the pause in post-copy: %w", wire.ErrMalformed)
	}
	rest := wire.Pages{Flags: p.Flags}
	for g, page := range p.All() {
		if uint64(g) < r.special.Len() && r.special.Test(g) {
			continue
		}
		if uint64(g) < r.direct.Len() && r.direct.Test(g) {
			rest.GFNs = append(rest.GFNs, g)
			rest.Zero = append(rest.Zero, page == nil)
			rest.Data = append(rest.Data, page...)
			continue
		}
		if page == nil {
			page = zeroPage[:]
		}
		if !r.in.owes(g) {
			return p, fmt.Errorf("page for gfn %#x in the downtime, neither owed nor held here: %w", uint64(g), wire.ErrMalformed)
		}
		if err := r.in.install(g, page); err != nil {
			return p, fmt.Errorf("resume set: %w", err)
		}
	}
	return rest, nil
}

// bulkReaders take the pages the bulk streams carry before the switchover,
// each stream up to its next sync.
type bulkReaders struct {
	g     errgroup.Group
	first atomic.Pointer[error]
}

// readBulk reads every bulk stream up to its next sync record, writing or
// staging the pages on the way. A failing stream closes main, so that the
// control loop stops waiting there and finds the cause with cause.
func (r *receiver) readBulk() *bulkReaders {
	b := &bulkReaders{}
	main := r.links.main
	for _, c := range r.links.bulk {
		b.g.Go(func() error {
			err := r.readUntilSync(c)
			if err != nil {
				b.first.CompareAndSwap(nil, &err)
				main.Close()
			}
			return err
		})
	}
	return b
}

// wait waits for every bulk stream to reach its sync.
func (b *bulkReaders) wait() error { return b.g.Wait() }

// cause returns the first bulk stream's failure if there was one (the real
// cause of err), else err.
func (b *bulkReaders) cause(err error) error {
	if first := b.first.Load(); first != nil {
		return *first
	}
	return err
}

// earlyPages writes or stages a Pages record sent before the switchover.
func (r *receiver) earlyPages(body []byte) error {
	p, err := wire.UnmarshalPages(body)
	if err == nil && r.prep != nil && r.pausedAt.IsZero() {
		err = r.prep.install(p)
	} else if err == nil {
		err = r.precopyPages(p)
	}
	if err != nil {
		return err
	}
	phase := "precopy"
	if !r.pausedAt.IsZero() {
		phase = "stop"
	}
	r.emit(Event{Kind: EventPages, Phase: phase, Pages: uint64(len(p.GFNs)), Bytes: uint64(len(body))})
	return nil
}

// hotGFNs takes the gfns the source's early push leaves out: the
// preparer pages them out first.
func (r *receiver) hotGFNs(body []byte) error {
	gfns, err := wire.UnmarshalGFNs(body)
	if err != nil {
		return fmt.Errorf("hot gfns: %w", err)
	}
	if r.prep == nil || !r.pausedAt.IsZero() {
		return fmt.Errorf("hot gfns outside a post-copy preparation: %w", wire.ErrMalformed)
	}
	return r.prep.hint(gfns)
}

// readUntilSync takes c's pages until its sync record.
func (r *receiver) readUntilSync(c *conn) error {
	start := time.Now()
	var reading, installing time.Duration
	records := 0
	for {
		t := time.Now()
		typ, body, err := c.r.Read()
		reading += time.Since(t)
		if err != nil {
			return fmt.Errorf("bulk stream %d lost before the switchover: %w", c.stream, err)
		}
		switch typ {
		case wire.TypeSync:
			r.log.WithFields(logrus.Fields{"stream": c.stream, "records": records, "ms": ms(time.Since(start)),
				"read_ms": ms(reading), "install_ms": ms(installing)}).Debug("bulk stream synced")
			return nil
		case wire.TypePages:
			t = time.Now()
			err := r.earlyPages(body)
			installing += time.Since(t)
			records++
			if err != nil {
				return fmt.Errorf("bulk stream %d: %w", c.stream, err)
			}
		case wire.TypeHot:
			if err := r.hotGFNs(body); err != nil {
				return fmt.Errorf("bulk stream %d: %w", c.stream, err)
			}
		default:
			return fmt.Errorf("bulk stream %d: unexpected %v record before the switchover: %w", c.stream, typ, wire.ErrMalformed)
		}
	}
}
