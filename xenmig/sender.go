package xenmig

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenmig/internal/wire"
)

// ErrCommitted wraps failures after the switchover: the domain may already
// have run on the destination, so the source keeps it paused (renamed with
// MigratedAwaySuffix) and never resumes it.
var ErrCommitted = errors.New("failure after the switchover")

// MigratedAwaySuffix is appended to the source copy's name at the switchover,
// as `xl migrate` does, so nobody starts it by mistake.
const MigratedAwaySuffix = "--migratedaway"

// sender is one outgoing migration.
type sender struct {
	hv   hypervisor.Hypervisor
	dom  hypervisor.DomID
	plan Plan
	options
	log *logrus.Entry

	start   time.Time
	limiter *rate.Limiter
	counter *counters

	addr       string
	session    sessionID
	streams    int    // page streams: main and the bulk connections
	links      *links // the session's connections, replaced on a reconnection
	reconnects atomic.Int64
	populated  *hypervisor.Bitmap
	owned      atomic.Uint64 // non-zero pages seen, across phases (for pages_owned)
	ownedSeen  *claimSet     // gfns counted in owned
	progress   progressState
}

// Migrate moves domain dom from hv to the xenmig receiver at addr according
// to plan, and returns its measures.
//
// Until the receiver has confirmed it holds the vCPU state (the switchover),
// any failure leaves the domain running here, unchanged. After it, the domain
// is the destination's: a failure then wraps ErrCommitted and the source copy
// stays paused, renamed with MigratedAwaySuffix.
func Migrate(ctx context.Context, hv hypervisor.Hypervisor, dom hypervisor.DomID, addr string, plan Plan, opts ...Option) (*Result, error) {
	if err := plan.Validate(); err != nil {
		return nil, err
	}
	s := &sender{hv: hv, dom: dom, plan: plan, options: buildOptions(opts), counter: &counters{}}
	s.log = s.options.log.WithFields(logrus.Fields{"domain": dom, "mode": plan.Mode, "peer": addr})
	if plan.Bandwidth > 0 {
		burst := max(int(plan.Bandwidth/50), (plan.BatchPages+1)*hypervisor.PageSize+64<<10)
		s.limiter = rate.NewLimiter(rate.Limit(plan.Bandwidth), burst)
	}
	return s.run(ctx, addr)
}

func (s *sender) run(ctx context.Context, addr string) (*Result, error) {
	info, err := s.hv.Info(s.dom)
	if err != nil {
		return nil, fmt.Errorf("domain %d: %w", s.dom, err)
	}
	if err := checkGuest(info, s.plan); err != nil {
		return nil, err
	}
	if err := s.checkAwayName(info.Name); err != nil {
		return nil, err
	}
	s.log = s.log.WithField("name", info.Name)
	res := &Result{Mode: s.plan.Mode, Domain: info.Name}
	if s.plan.Mode != PreCopy {
		res.Push = s.plan.Push
	}
	res.OpsBefore = s.sampleOps(ctx)
	s.start = time.Now()
	stopProgress := s.reportProgress()
	defer stopProgress()

	s.progress.set("connect", 0, 0)
	cfg, err := s.hv.Config(s.dom)
	if err != nil {
		return nil, fmt.Errorf("domain %s: config: %w", info.Name, err)
	}
	s.addr, s.session, s.streams = addr, newSessionID(), s.plan.streams()
	links, err := s.transport.dial(ctx, addr, s.session, false, s.streams)
	if err != nil {
		return nil, err
	}
	s.use(links)
	defer func() { s.links.close() }() // the last ones, after reconnections
	s.log = s.log.WithField("streams", s.streams)

	// Until the switchover, every failure lands here and resumes the domain.
	var suspendAsked, logDirty bool
	cancelBalloon := func() {}
	undo := func(cause error) error {
		s.links.main.w.Write(wire.TypeAbort, abortRecord(cause))
		cancelBalloon()
		if logDirty {
			s.hv.DisableLogDirty(s.dom)
		}
		if suspendAsked {
			if err := s.giveBack(); err != nil {
				return fmt.Errorf("%w (and resuming the domain here failed: %v)", cause, err)
			}
		}
		s.log.WithError(cause).Warn("migration failed before the switchover; domain resumed on the source")
		return cause
	}

	if s.plan.Balloon {
		cancelBalloon = s.squeeze(ctx)
	}
	{
		// Before the layout is read: a gfn the guest's balloon takes again
		// after that read, and the guest then writes, must show in a
		// dirty log, or it is never sent. Post-copy needs the log for the
		// pages sent while the destination prepares.
		if err := s.hv.EnableLogDirty(s.dom); err != nil {
			return nil, undo(fmt.Errorf("enable log-dirty: %w", err))
		}
		logDirty = true
	}
	maxGFN, err := s.hv.MaxGFN(s.dom)
	if err != nil {
		return nil, undo(fmt.Errorf("domain %s: %w", info.Name, err))
	}
	if s.populated, err = s.hv.Populated(s.dom); err != nil {
		return nil, undo(fmt.Errorf("domain %s: %w", info.Name, err))
	}
	s.ownedSeen = newClaimSet(uint64(maxGFN) + 1)
	res.GuestPages = s.populated.Count()
	if res.GuestPages < info.MaxPages {
		// The guest's balloon has given these back (now, or earlier on its
		// own): they are neither read, paged out, nor sent.
		res.BalloonedPagesSkipped = info.MaxPages - res.GuestPages
	}

	s.progress.set("prepare", 0, res.GuestPages)
	wc := wire.Config{Mode: string(s.plan.Mode), Domain: cfg, MaxGFN: maxGFN, Populated: s.populated,
		Ballooned: res.BalloonedPagesSkipped, ReportGuest: s.plan.ReportGuest}
	body, err := wc.Marshal()
	if err != nil {
		return nil, undo(err)
	}
	if err := s.links.main.w.Write(wire.TypeConfig, body); err != nil {
		return nil, undo(fmt.Errorf("send config: %w", err))
	}
	var prepared []byte
	var early *hypervisor.Bitmap // post-copy: sent while the destination prepared (maybe none)
	switch {
	case s.plan.Mode == PostCopy && s.plan.EarlyPush:
		prepared, early, err = s.earlyPush(ctx)
	case s.plan.Mode == PostCopy:
		early = hypervisor.NewBitmap(s.populated.Len())
		if _, err = s.links.main.expect(wire.TypeShell); err == nil {
			prepared, err = s.links.main.expect(wire.TypePrepared)
		}
	default:
		prepared, err = s.links.main.expect(wire.TypePrepared)
	}
	if err != nil {
		return nil, undo(fmt.Errorf("destination preparation: %w", err))
	}
	// The gfns the destination could not page out: sent in the downtime.
	direct := hypervisor.NewBitmap(uint64(maxGFN) + 1)
	if err := addGFNs(direct, prepared); err != nil {
		return nil, undo(fmt.Errorf("destination preparation: %w", err))
	}
	res.PreparationMS = ms(time.Since(s.start))
	s.log.WithField("ms", res.PreparationMS).Info("destination prepared")

	// Pre-copy rounds while the guest runs.
	var heat []uint8 // rounds each gfn was seen dirty, for the working-set push
	var roundsStart time.Time
	var roundsOps uint64
	var dirty *hypervisor.Bitmap
	if s.plan.Mode != PostCopy {
		if s.plan.Push == PushWorkingSet {
			heat = make([]uint8, uint64(maxGFN)+1)
		}
		roundsStart = time.Now()
		roundsOps, _ = s.ops()
		dirty, res.PrecopyRounds, err = s.precopy(ctx, heat)
		if err != nil {
			return nil, undo(err)
		}
	}

	// A guest that registers pages with Xen again as it resumes (Linux:
	// its vcpu_info and event-channel control blocks) must find them
	// present: Xen 4.17 refuses a paged-out gfn there. Its suspend writes
	// each of them (its event handler clears their flags), so the log is
	// cleaned here and what the suspend dirties, the resume set, is sent
	// in the downtime.
	var beforeSuspend *hypervisor.Bitmap
	if logDirty && s.plan.usesPaging() && info.PagedResumeFails {
		if beforeSuspend, err = s.hv.DirtyLog(s.dom, true); err != nil {
			return nil, undo(fmt.Errorf("dirty log before the suspend: %w", err))
		}
	}

	// The guest suspends itself, as for `xl migrate`: only then is its vCPU
	// state one it can resume from in a new domain.
	s.progress.set("suspend", 0, 0)
	pausedAt := time.Now()
	suspendAsked = true
	if err := s.hv.Suspend(ctx, s.dom, s.plan.SuspendTimeout); err != nil {
		return nil, undo(fmt.Errorf("suspend: %w", err))
	}
	var srcOps uint64 // guest work done on the source while memory moved
	var srcDur time.Duration
	if now, ok := s.ops(); ok && !roundsStart.IsZero() {
		srcOps, srcDur = now-roundsOps, pausedAt.Sub(roundsStart)
	}
	s.log.WithField("ms", ms(time.Since(pausedAt))).Info("domain suspended")

	// The guest ran since the layout was read: its balloon may have given
	// gfns back or taken some again. The destination matches the layout
	// at the suspend, and only that is owed.
	now, err := s.hv.Populated(s.dom)
	if err != nil {
		return nil, undo(fmt.Errorf("layout at the suspend: %w", err))
	}
	if err := s.syncStreams(); err != nil {
		return nil, undo(err)
	}
	if err := s.links.main.w.Write(wire.TypeLayout, wire.MarshalBitmap(now)); err != nil {
		return nil, undo(fmt.Errorf("send the layout at the suspend: %w", err))
	}
	s.populated = now

	owed := s.populated.Clone()
	var resumeSet *hypervisor.Bitmap
	if logDirty {
		final, err := s.hv.DirtyLog(s.dom, true)
		if err != nil {
			return nil, undo(fmt.Errorf("final dirty log: %w", err))
		}
		if beforeSuspend != nil {
			resumeSet = final.Clone()
			final.Or(beforeSuspend)
		}
		logDirty = false
		if err := s.hv.DisableLogDirty(s.dom); err != nil {
			return nil, undo(fmt.Errorf("disable log-dirty: %w", err))
		}
		if dirty != nil {
			final.Or(dirty) // pages dirtied in the last round and not yet resent
		}
		final.And(s.populated)
		if s.plan.Mode != PreCopy {
			final.AndNot(direct)
		}
		owed = final
		if heat != nil {
			final.ForEach(func(g hypervisor.GFN) { heat[g]++ })
		}
		if early != nil {
			// Owed: what was not sent early, and what was but has been
			// written since; the owed list names the latter, which the
			// destination pages out again.
			final.And(early)
			owed = s.populated.Clone()
			owed.AndNot(early)
			owed.Or(final)
			owed.AndNot(direct)
			res.EarlyPages, res.EarlyStale = early.Count(), final.Count()
			s.log.WithFields(logrus.Fields{"early": res.EarlyPages, "stale": res.EarlyStale}).Info("sent while the destination prepared")
		}
		if s.plan.Mode == PreCopy {
			s.progress.set("stop-and-copy", 0, owed.Count())
			if err := s.sendSet(ctx, owed, 0, "stop"); err != nil {
				return nil, undo(err)
			}
		} else {
			list := owed // hybrid: the staged copies to drop
			if early != nil {
				list = final // the early pages to page out again
			}
			if err := s.links.main.w.Write(wire.TypeOwed, wire.MarshalGFNs(list.GFNs())); err != nil {
				return nil, undo(fmt.Errorf("send owed list: %w", err))
			}
			if early != nil {
				// The early pages written again that the destination
				// could not page out: sent in the downtime.
				body, err := s.links.main.expect(wire.TypeDirect)
				if err == nil {
					err = addGFNs(direct, body)
				}
				if err != nil {
					return nil, undo(fmt.Errorf("destination paging out at the suspend: %w", err))
				}
			}
		}
	}

	if s.plan.usesPaging() {
		if resumeSet != nil {
			resumeSet.And(s.populated)
			resumeSet.AndNot(direct)
			for _, g := range cfg.SpecialPages { // rings the destination's own daemons own
				if uint64(g) < resumeSet.Len() {
					resumeSet.Clear(g)
				}
			}
			res.ResumePages = resumeSet.Count()
			s.log.WithField("pages", res.ResumePages).Info("resume set: pages the guest's suspend wrote, sent in the downtime")
			direct.Or(resumeSet)
		}
		direct.And(s.populated)
		owed.AndNot(direct)
		if n := direct.Count(); n > 0 {
			s.progress.set("stop-and-copy", 0, n)
			if err := s.sendSet(ctx, direct, 0, "stop"); err != nil {
				return nil, undo(err)
			}
		}
	}

	s.progress.set("switchover", 0, 0)
	cpu, err := s.hv.SaveCPU(s.dom)
	if err != nil {
		return nil, undo(fmt.Errorf("save vCPU state: %w", err))
	}
	if err := s.syncStreams(); err != nil {
		return nil, undo(err)
	}
	if err := s.links.main.w.Write(wire.TypeCPU, wire.MarshalCPU(cpu)); err != nil {
		return nil, undo(fmt.Errorf("send vCPU state: %w", err))
	}
	if _, err := s.links.main.expect(wire.TypeReady); err != nil {
		return nil, undo(fmt.Errorf("destination restoring vCPU state: %w", err))
	}

	// The point of no return: once Go is sent the guest may run there.
	if err := s.hv.Rename(s.dom, info.Name+MigratedAwaySuffix); err != nil {
		s.log.WithError(err).Warn("could not rename the source copy")
	}
	committed := func(err error) error {
		s.log.WithError(err).Error("migration failed after the switchover; source copy kept paused")
		return fmt.Errorf("%w: %w; the domain is paused here as %s%s and may be running on %s",
			ErrCommitted, err, info.Name, MigratedAwaySuffix, addr)
	}
	err = s.links.main.w.Write(wire.TypeGo)
	if err == nil {
		_, err = s.links.main.expect(wire.TypeResumed)
	}
	if err != nil {
		// Did go arrive? Only the destination knows: ask it.
		lost := fmt.Errorf("connection lost at the switchover: %w", err)
		if errors.Is(err, ErrAborted) || s.plan.ReconnectTimeout <= 0 {
			return nil, committed(lost)
		}
		s.log.WithError(err).Warn("connection lost at the switchover; asking the destination whether it took the domain over")
		_, answer := s.redial(ctx)
		switch {
		case errors.Is(answer, errNotSwitched):
			if err := s.hv.Rename(s.dom, info.Name); err != nil {
				s.log.WithError(err).Warn("could not give the source copy its name back")
			}
			return nil, undo(fmt.Errorf("%w; %w", lost, answer))
		case errors.Is(answer, errDestinationComplete):
			return s.settled(res, pausedAt)
		case answer != nil:
			return nil, committed(fmt.Errorf("%w; asking the destination how it ended failed: %w", lost, answer))
		}
		// It had taken over: the post-copy goes on over the new connections.
	}
	res.DowntimeMS = ms(time.Since(pausedAt)) // with a break at the switchover, an upper bound
	s.log.WithField("downtime_ms", res.DowntimeMS).Info("domain resumed on the destination")

	if s.plan.usesPaging() {
		if err := s.postcopy(ctx, owed, heat); errors.Is(err, errDestinationComplete) {
			return s.settled(res, pausedAt)
		} else if err != nil {
			return nil, committed(err)
		}
	} else if _, err := s.links.main.expect(wire.TypeComplete); err != nil {
		return nil, committed(err)
	}
	res.TotalMS = ms(time.Since(s.start))
	s.progress.set("complete", 0, 0)

	body, err = s.links.main.expect(wire.TypeStats)
	if err != nil {
		return nil, committed(err)
	}
	var rep receiverReport
	if err := wire.UnmarshalJSON(wire.TypeStats, body, &rep); err != nil {
		return nil, committed(err)
	}
	if err := s.hv.Destroy(s.dom); err != nil {
		s.log.WithError(err).Warn("could not destroy the source copy")
	}
	if err := s.links.main.w.Write(wire.TypeFinished); err != nil {
		s.log.WithError(err).Warn("could not tell the destination we finished")
	}
	s.fill(res, rep)
	if d := srcDur + time.Duration(rep.DuringMS*float64(time.Millisecond)); d > 0 && res.OpsBefore > 0 {
		res.OpsDuring = float64(srcOps+rep.DuringOps) / d.Seconds()
	}
	if s.plan.ReportGuest {
		s.guestReport(res)
	}
	s.log.WithFields(logrus.Fields{"total_ms": res.TotalMS, "pages_sent": res.PagesSent}).Info("migration complete")
	return res, nil
}

// giveBack resumes the source domain after a failure before the
// switchover: a guest that suspended gets its suspend cancelled and goes on
// where it was, as `xl migrate` does with libxl_domain_resume. A guest that
// never suspended (its suspend timed out) is running still.
func (s *sender) giveBack() error {
	info, err := s.hv.Info(s.dom)
	if err != nil {
		return err
	}
	if info.State != hypervisor.StateSuspended {
		return nil
	}
	return s.hv.CancelSuspend(s.dom)
}

// checkGuest refuses, before anything is touched, a domain this migration
// cannot move.
func checkGuest(info hypervisor.DomainInfo, plan Plan) error {
	unsupported := func(why string) error {
		return fmt.Errorf("domain %s: %s: %w", info.Name, why, hypervisor.ErrGuestUnsupported)
	}
	switch {
	case info.State != hypervisor.StateRunning && info.State != hypervisor.StatePaused:
		return fmt.Errorf("domain %s is %v: %w", info.Name, info.State, hypervisor.ErrInvalid)
	case info.PagedPages > 0:
		return fmt.Errorf("domain %s still has %d pages paged out (an incoming migration is not complete): %w", info.Name, info.PagedPages, hypervisor.ErrBusy)
	case !info.HVM:
		return unsupported("it is a PV guest; xenmig migrates PVH guests (type = \"pvh\")")
	case info.DeviceModel:
		return unsupported("it is an HVM guest with a device model, whose state xenmig does not carry; xenmig migrates PVH guests (type = \"pvh\"); use `xl migrate` for this one")
	case plan.usesPaging() && !info.HAP:
		return unsupported("it does not use hardware-assisted paging (HAP), which post-copy needs; migrate it with --mode precopy")
	}
	return nil
}

// checkAwayName refuses, before anything is touched, to migrate name while
// a domain holds the name its source copy takes at the switchover: it is
// the source copy of an earlier migration that failed after its switchover,
// kept paused for the administrator. Renaming onto it would fail after the
// point of no return.
func (s *sender) checkAwayName(name string) error {
	away := name + MigratedAwaySuffix
	id, err := s.hv.Lookup(away)
	if errors.Is(err, hypervisor.ErrNotFound) {
		return nil
	} else if err != nil {
		return fmt.Errorf("look up %q: %w", away, err)
	}
	return fmt.Errorf("domain %s: a domain called %q (id %d) is here already, the source copy of an earlier migration that failed after its switchover; "+
		"once the guest is known to run elsewhere, destroy it (`xl destroy %d`) and migrate again: %w", name, away, id, id, hypervisor.ErrBusy)
}

// addGFNs sets in b the gfns of a gfn-list body (empty: none).
func addGFNs(b *hypervisor.Bitmap, body []byte) error {
	if len(body) == 0 {
		return nil
	}
	gfns, err := wire.UnmarshalGFNs(body)
	if err != nil {
		return err
	}
	for _, g := range gfns {
		if uint64(g) < b.Len() {
			b.Set(g)
		}
	}
	return nil
}

// settled ends a migration whose connections broke after the switchover but
// whose destination, asked again, had every page: the source copy is
// destroyed, and the result lacks the destination's measures.
func (s *sender) settled(res *Result, pausedAt time.Time) (*Result, error) {
	s.log.Warn("the destination had every page when the connection broke; the migration is complete, without the destination's measures")
	if err := s.hv.Destroy(s.dom); err != nil {
		s.log.WithError(err).Warn("could not destroy the source copy")
	}
	res.TotalMS = ms(time.Since(s.start))
	if res.DowntimeMS == 0 {
		res.DowntimeMS = ms(time.Since(pausedAt)) // an upper bound
	}
	s.fill(res, receiverReport{})
	s.progress.set("complete", 0, 0)
	s.log.WithFields(logrus.Fields{"total_ms": res.TotalMS, "pages_sent": res.PagesSent}).Info("migration complete")
	return res, nil
}

// fill completes res with the sender's counters and the receiver's report.
func (s *sender) fill(res *Result, rep receiverReport) {
	res.PhasePages = s.counter.snapshot(&s.counter.phasePages)
	res.PhaseBytes = s.counter.snapshot(&s.counter.phaseBytes)
	for _, n := range res.PhasePages {
		res.PagesSent += n
	}
	res.BytesSent = s.counter.bytes.Load()
	res.ZeroPagesSkipped = s.counter.zero.Load()
	res.PagesOwned = s.owned.Load()
	res.ResumeMS, res.EarlyLate = rep.ResumeMS, rep.EarlyLate
	res.NetworkFaults, res.LocalFaults, res.ForeignFaults = rep.NetworkFaults, rep.LocalFaults, rep.ForeignFaults
	res.FaultP50US, res.FaultP99US = rep.FaultP50US, rep.FaultP99US
	res.VCPUBlockedMS = rep.VCPUBlockedMS
	res.OpsAfter = rep.OpsAfter
	res.Reconnects = s.reconnects.Load()
}

// guestReport waits for the destination's word on a simulated guest's final
// memory.
func (s *sender) guestReport(res *Result) {
	body, err := s.links.main.expect(wire.TypeGuestFinal)
	if err != nil {
		s.log.WithError(err).Warn("no guest report from the destination")
		return
	}
	var g guestReport
	if err := wire.UnmarshalJSON(wire.TypeGuestFinal, body, &g); err != nil || g.Err != "" {
		s.log.WithField("error", g.Err).Warn("destination could not report the guest's digest")
		return
	}
	res.Digest = g.Digest
}
