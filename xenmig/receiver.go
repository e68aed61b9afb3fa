package xenmig

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenmig/internal/wire"
)

// Incoming describes a migration this host received.
type Incoming struct {
	Domain hypervisor.DomID
	Name   string
	Mode   Mode
	Pages  uint64 // gfns installed
	// Digest is the guest's final memory digest, when the sender asked for
	// one and the backend can compute it.
	Digest string
}

// Receive accepts the next migration on l and carries it out on hv. It returns
// once the sender has confirmed the end of the migration (and, when asked, the
// simulated guest has finished its run).
//
// Before the switchover, any failure destroys the half-built domain here and
// the source keeps running. After it, a failure wraps ErrCommitted and the
// domain is left paused here.
func Receive(ctx context.Context, hv hypervisor.Hypervisor, l *Listener, opts ...Option) (*Incoming, error) {
	o := buildOptions(opts)
	links, id, err := l.accept(ctx)
	if err != nil {
		return nil, err
	}
	r := &receiver{hv: hv, options: o, l: l, session: id, links: links,
		log: o.log.WithFields(logrus.Fields{"peer": links.main.RemoteAddr().String(), "streams": 1 + len(links.bulk)})}
	defer func() { r.links.close() }()
	r.emit(Event{Kind: EventStarted})
	inc, err := r.run(ctx)
	r.emit(Event{Kind: EventEnded, Err: err})
	return inc, err
}

// receiver is one incoming migration.
type receiver struct {
	hv hypervisor.Hypervisor
	options
	log     *logrus.Entry
	l       *Listener
	session sessionID
	links   *links // the session's connections, replaced on a reconnection
	bulk    *bulkReaders

	cfg   wire.Config
	dom   hypervisor.DomID
	pager hypervisor.Pager
	in    *installer

	// abortMu serializes the aborts that post-copy's goroutines (the
	// guest watch, the page readers) may write on main at once.
	abortMu sync.Mutex

	// Pre-copy: gfns whose page here may not be zero. A zero page for any
	// other gfn needs no write. The shell starts with every page it has
	// in it: the toolstack booted it to its entry point, so kernel and
	// firmware bytes sit where the source may have zeros. Pages come from
	// every stream at once: precopyMu guards it and cfg.Populated.
	precopyMu sync.Mutex
	written   *hypervisor.Bitmap
	// special are the toolstack's ring pages: never written, never paged
	// out; this host's daemons own their contents.
	special *hypervisor.Bitmap
	// direct are the gfns paging could not take (EBUSY: something here
	// holds them mapped); their pages come in the downtime, written
	// directly, before the guest runs.
	direct *hypervisor.Bitmap

	pausedAt time.Time // when the layout at the source's pause arrived
	prepMS   float64   // how long the preparation took

	// Post-copy: the preparation runs while the source sends pages early
	// (prep); early are the gfns so installed and still current; earlyLate
	// counts those staged instead, having come after their gfn was paged out.
	prep      *preparer
	early     *hypervisor.Bitmap
	earlyLate uint64

	pushDone atomic.Int32 // streams whose push-done came, this round
}

// IncomingSuffix is appended to a domain's name on the destination until the
// switchover, as `xl migrate` does, so that a migration to the same host
// can hold both copies at once and nobody starts the incoming one.
const IncomingSuffix = "--incoming"

func (r *receiver) run(ctx context.Context) (*Incoming, error) {
	start := time.Now()
	body, err := r.links.main.expect(wire.TypeConfig)
	if err != nil {
		return nil, fmt.Errorf("waiting for the domain's config: %w", err)
	}
	if r.cfg, err = wire.UnmarshalConfig(body); err != nil {
		return nil, r.refuse(err)
	}
	mode := Mode(r.cfg.Mode)
	r.log = r.log.WithFields(logrus.Fields{"name": r.cfg.Domain.Name, "mode": mode})
	r.log.WithFields(logrus.Fields{"pages": r.cfg.Populated.Count(), "ballooned": r.cfg.Ballooned}).Info("incoming migration")

	built := false
	undo := func(cause error) error {
		// A sender that lost its connections at the switchover and
		// comes back learns that nothing of the domain is kept here.
		r.l.remember(r.session, wire.SessionNotSwitched)
		if r.prep != nil {
			r.prep.stop() // it writes prepared on main
		}
		r.links.main.w.Write(wire.TypeAbort, abortRecord(cause))
		if r.pager != nil {
			r.pager.Close()
		}
		if built {
			if err := r.hv.Destroy(r.dom); err != nil {
				r.log.WithError(err).Warn("could not destroy the half-built domain")
			}
		}
		r.log.WithError(cause).Warn("incoming migration failed before the switchover; nothing kept")
		return cause
	}

	if err := r.checkName(); err != nil {
		return nil, r.refuse(err)
	}
	shellCfg := r.cfg.Domain
	shellCfg.Name += IncomingSuffix
	if old, err := r.hv.Lookup(shellCfg.Name); err == nil {
		// In the way: gone if a receiver killed before its switchover
		// left it, kept (and this migration refused) otherwise.
		if _, err := reapStaleShell(r.hv, r.log, old, shellCfg.Name); err != nil {
			r.log.WithError(err).Warn("could not remove the domain in the shell's way")
		}
	}
	if r.dom, err = r.hv.CreateShell(shellCfg); err != nil {
		return nil, undo(fmt.Errorf("create domain shell: %w", err))
	}
	built = true
	r.log = r.log.WithField("domain", r.dom)
	r.log.WithField("ms", ms(time.Since(start))).Info("domain shell created")
	if err := markShell(r.hv, r.dom); err != nil {
		r.log.WithError(err).Warn("could not mark the shell as this receiver's: if this process is killed, destroy it by hand")
	}
	if err := r.checkSpecial(); err != nil {
		return nil, undo(err)
	}
	if err := r.prepare(ctx, mode, start); err != nil {
		return nil, undo(err)
	}
	if r.prep == nil {
		r.prepMS = ms(time.Since(start))
		if err := r.links.main.w.Write(wire.TypePrepared, wire.MarshalGFNs(r.direct.GFNs())); err != nil {
			return nil, undo(fmt.Errorf("send prepared: %w", err))
		}
		r.log.WithField("ms", r.prepMS).Info("domain shell prepared")
	} // else the preparer says prepared once it is

	// Until Go: pages (pre-copy), the owed list (hybrid), the vCPU state.
	// Pages come on every stream; the layout and the vCPU state are taken
	// only once each bulk stream's sync says its earlier pages are in.
	r.bulk = r.readBulk()
	for ready := false; ; {
		typ, body, err := r.links.main.r.Read()
		if err != nil {
			if r.prep != nil {
				if perr := r.prep.failed(); perr != nil {
					return nil, undo(fmt.Errorf("preparation: %w", perr))
				}
			}
			return nil, undo(r.bulk.cause(fmt.Errorf("connection to the source lost before the switchover: %w", err)))
		}
		if typ == wire.TypeLayout || typ == wire.TypeCPU {
			if err := r.bulk.wait(); err != nil {
				return nil, undo(err)
			}
		}
		switch typ {
		case wire.TypePages:
			if err := r.earlyPages(body); err != nil {
				return nil, undo(err)
			}
		case wire.TypeHot:
			if err := r.hotGFNs(body); err != nil {
				return nil, undo(err)
			}
		case wire.TypeLayout:
			if r.pausedAt.IsZero() {
				r.pausedAt = time.Now()
			}
			now, err := wire.UnmarshalBitmap(body, r.cfg.Populated.Len())
			if err == nil && now.Len() != r.cfg.Populated.Len() {
				err = fmt.Errorf("layout of %d gfns, config %d: %w", now.Len(), r.cfg.Populated.Len(), wire.ErrMalformed)
			}
			if err == nil {
				err = r.relayout(now)
			}
			if err != nil {
				return nil, undo(fmt.Errorf("layout at pause: %w", err))
			}
			r.bulk = r.readBulk() // the last dirty pages (pre-copy) come next
		case wire.TypeOwed:
			gfns, err := wire.UnmarshalGFNs(body)
			if err == nil && r.prep != nil {
				err = r.installEarly(gfns)
			} else if err != nil || r.in == nil {
				return nil, undo(fmt.Errorf("owed list: %w", errors.Join(err, wire.ErrMalformed)))
			} else {
				r.in.forget(gfns)
			}
			if err != nil {
				return nil, undo(fmt.Errorf("owed list: %w", err))
			}
		case wire.TypeCPU:
			s, err := wire.UnmarshalCPU(body)
			if err == nil {
				err = r.hv.RestoreCPU(r.dom, s)
			}
			if err != nil {
				return nil, undo(fmt.Errorf("restore vCPU state: %w", err))
			}
			if err := r.links.main.w.Write(wire.TypeReady); err != nil {
				return nil, undo(fmt.Errorf("send ready: %w", err))
			}
			ready = true
		case wire.TypeGo:
			if !ready {
				return nil, undo(fmt.Errorf("go before vCPU state: %w", wire.ErrMalformed))
			}
			if r.prep != nil && r.in == nil {
				return nil, undo(fmt.Errorf("go without the owed list: %w", wire.ErrMalformed))
			}
			return r.switchover(ctx, mode, r.prepMS)
		case wire.TypeAbort:
			return nil, undo(abortError(body))
		default:
			return nil, undo(fmt.Errorf("unexpected %v record before the switchover: %w", typ, wire.ErrMalformed))
		}
	}
}

// checkName refuses a domain whose name another domain holds here: only the
// source itself may, when it migrates to its own host (same UUID).
func (r *receiver) checkName() error {
	name := r.cfg.Domain.Name
	id, err := r.hv.Lookup(name)
	if errors.Is(err, hypervisor.ErrNotFound) {
		return nil
	} else if err != nil {
		return fmt.Errorf("look up %q: %w", name, err)
	}
	info, err := r.hv.Info(id)
	if err != nil {
		return fmt.Errorf("look up %q: %w", name, err)
	}
	if r.cfg.Domain.UUID == "" || info.UUID != r.cfg.Domain.UUID {
		return fmt.Errorf("a domain called %q (id %d, uuid %s) already runs here and is not the one migrating: %w",
			name, id, info.UUID, hypervisor.ErrIncompatible)
	}
	return nil // the source itself: a migration to the same host
}

// checkSpecial finds the shell's toolstack ring pages and checks they are
// where the source has them: the guest keeps using its own gfns.
func (r *receiver) checkSpecial() error {
	shell, err := r.hv.Config(r.dom)
	if err != nil {
		return fmt.Errorf("shell config: %w", err)
	}
	if !slices.Equal(shell.SpecialPages, r.cfg.Domain.SpecialPages) {
		return fmt.Errorf("the shell's xenstore and console pages are at gfns %#x, the source's at %#x: %w",
			shell.SpecialPages, r.cfg.Domain.SpecialPages, hypervisor.ErrIncompatible)
	}
	r.special = hypervisor.NewBitmap(r.cfg.Populated.Len())
	for _, g := range shell.SpecialPages {
		if uint64(g) < r.special.Len() {
			r.special.Set(g)
		}
	}
	r.direct = hypervisor.NewBitmap(r.cfg.Populated.Len())
	return nil
}

// refuse tells the sender why and returns err.
func (r *receiver) refuse(err error) error {
	r.links.main.w.Write(wire.TypeAbort, abortRecord(err))
	return err
}

// prepare makes the shell's memory layout the source's and, for post-copy,
// pages every gfn out so the guest's first touch of each faults to us. It runs
// while the source still runs: on Xen each evict costs microseconds.
func (r *receiver) prepare(ctx context.Context, mode Mode, start time.Time) error {
	paging := mode != PreCopy
	shell, err := r.hv.Populated(r.dom)
	if err != nil {
		return fmt.Errorf("shell layout: %w", err)
	}
	want := r.cfg.Populated
	if shell.Len() != want.Len() {
		return fmt.Errorf("shell has %d gfns, source %d: %w", shell.Len(), want.Len(), hypervisor.ErrInvalid)
	}
	extra := shell.Clone()
	extra.AndNot(want) // ballooned out on the source
	if gfns := extra.GFNs(); len(gfns) > 0 {
		if err := r.hv.Depopulate(r.dom, gfns); err != nil {
			return fmt.Errorf("release %d ballooned gfns: %w", len(gfns), err)
		}
	}
	missing := want.Clone()
	missing.AndNot(shell)
	if gfns := missing.GFNs(); len(gfns) > 0 {
		if err := r.hv.Populate(r.dom, gfns); err != nil {
			return fmt.Errorf("populate %d gfns: %w", len(gfns), err)
		}
	}
	if !paging {
		// Every page the shell has may hold the builder's bytes: a zero
		// page from the source must be written over it.
		r.written = want.Clone()
		r.written.AndNot(r.special)
		return nil
	}
	if r.pager, err = r.hv.EnablePaging(r.dom); err != nil {
		if errors.Is(err, hypervisor.ErrPagingUnsupported) {
			return fmt.Errorf("%w; migrate with --mode precopy instead", err)
		}
		return fmt.Errorf("enable paging: %w", err)
	}
	out := want.Clone()
	out.AndNot(r.special)
	if mode == PostCopy {
		// Paged out while the source sends pages early; the installer
		// comes with the owed list, at the pause. The source holds its
		// early pages until the shell exists: building it may take
		// longer than a stalled write may last. Shell goes before the
		// preparer can say prepared.
		if err := r.links.main.w.Write(wire.TypeShell); err != nil {
			return fmt.Errorf("send shell: %w", err)
		}
		r.prep = r.startPreparer(ctx, out, start)
		return nil
	}
	if err := r.pageOut(out); err != nil {
		return err
	}
	r.newInstaller(want)
	if n := r.direct.Count(); n > 0 {
		r.log.WithField("gfns", n).Info("pages held mapped here cannot be paged out; they come in the downtime")
	}
	return nil
}

// newInstaller makes the installer of what populated owes.
func (r *receiver) newInstaller(populated *hypervisor.Bitmap) {
	r.in = newInstaller(r.pager, r.owed(populated))
	if r.options.events != nil {
		r.in.onFault = func(d time.Duration) { r.emit(Event{Kind: EventFault, Latency: d}) }
	}
}

// installEarly settles the pages sent while this side prepared: those
// written again since (stale) are paged out again with what never came,
// the late ones are staged, and the installer owes the rest.
func (r *receiver) installEarly(stale []hypervisor.GFN) error {
	kept, late, lateZero, busy, err := r.prep.finish(r.cfg.Populated, stale)
	if err != nil {
		return err
	}
	r.early, r.earlyLate = kept, uint64(len(late))+lateZero.Count()
	r.newInstaller(r.cfg.Populated)
	r.in.stagePages(late, lateZero)
	// The source sends these with the other unpageable ones, in the
	// downtime.
	if err := r.links.main.w.Write(wire.TypeDirect, wire.MarshalGFNs(busy)); err != nil {
		return fmt.Errorf("send the gfns paging could not take: %w", err)
	}
	return nil
}

// owed is what the installer waits for out of the populated set: all but
// the special pages, the gfns paging could not take, and the pages that
// came before the switchover and are current.
func (r *receiver) owed(populated *hypervisor.Bitmap) *hypervisor.Bitmap {
	o := populated.Clone()
	o.AndNot(r.special)
	o.AndNot(r.direct)
	if r.early != nil {
		o.AndNot(r.early)
	}
	return o
}

// pageOut nominates and evicts every gfn of set: each first touch will
// fault. A gfn Xen will not page (EBUSY: a dom0 process holds it mapped, as
// xenpaging finds) joins r.direct instead.
func (r *receiver) pageOut(set *hypervisor.Bitmap) error {
	var evictErr error
	set.ForEach(func(g hypervisor.GFN) {
		if evictErr == nil {
			evictErr = r.pageOutOne(g)
		}
	})
	return evictErr
}

// pageOutOne nominates and evicts g; if Xen will not page it, it joins
// r.direct.
func (r *receiver) pageOutOne(g hypervisor.GFN) error {
	err := r.pager.Nominate(g)
	if err == nil {
		err = r.pager.Evict(g)
		if err != nil && !errors.Is(err, hypervisor.ErrBusy) {
			return fmt.Errorf("evict gfn %#x: %w", uint64(g), err)
		}
	}
	switch {
	case errors.Is(err, hypervisor.ErrBusy):
		// Nominated and touched (evict EBUSY) leaves the gfn
		// present too: it is written directly as well.
		r.direct.Set(g)
	case err != nil:
		return fmt.Errorf("nominate gfn %#x: %w", uint64(g), err)
	}
	return nil
}

// relayout matches the shell to the source's layout at its pause: gfns the
// guest's balloon gave back since the preparation are released (and no
// longer owed); gfns it took again are populated and, in post-copy, paged
// out like the others. Only the few that changed are touched, in the
// downtime.
func (r *receiver) relayout(now *hypervisor.Bitmap) error {
	removed := r.cfg.Populated.Clone()
	removed.AndNot(now)
	added := now.Clone()
	added.AndNot(r.cfg.Populated)
	if gfns := removed.GFNs(); len(gfns) > 0 {
		if r.pager != nil {
			// A paged-out gfn removed with nobody draining the ring
			// posts a drop request Xen may lose, and its paged count
			// never reaches zero: load it (a zero page) first, so the
			// removal is an ordinary one.
			for _, g := range gfns {
				if r.special.Test(g) || r.direct.Test(g) {
					continue
				}
				if err := r.pager.Load(g, zeroPage[:]); err != nil && !errors.Is(err, hypervisor.ErrNotPopulated) {
					return fmt.Errorf("load gfn %#x before releasing it: %w", uint64(g), err)
				}
			}
		}
		if err := r.hv.Depopulate(r.dom, gfns); err != nil {
			return fmt.Errorf("release %d gfns ballooned out since the preparation: %w", len(gfns), err)
		}
		if r.in != nil {
			r.in.forget(gfns)
		}
	}
	if gfns := added.GFNs(); len(gfns) > 0 {
		if err := r.hv.Populate(r.dom, gfns); err != nil {
			return fmt.Errorf("populate %d gfns ballooned in since the preparation: %w", len(gfns), err)
		}
		if r.pager != nil {
			if err := r.pageOut(added); err != nil {
				return err
			}
		}
	}
	r.log.WithFields(logrus.Fields{"released": removed.Count(), "populated": added.Count()}).Debug("layout at the suspend")
	r.cfg.Populated = now
	if r.in != nil {
		r.in.setOwed(r.owed(now))
	}
	return nil
}
