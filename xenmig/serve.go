package xenmig

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenmig/internal/wire"
)

// The destination after go: the guest runs here while post-copy serves its
// faults and installs what the source pushes, watches that it stays alive,
// waits out a broken connection, and measures the guest for the report.

// switchover resumes the guest here and, in post-copy, serves its faults and
// installs pushed pages until every gfn is present.
func (r *receiver) switchover(ctx context.Context, mode Mode, prepMS float64) (*Incoming, error) {
	goAt := time.Now()
	opsStart, _ := r.ops()
	// The source renamed its copy before it sent go: the name is free.
	if err := r.hv.Rename(r.dom, r.cfg.Domain.Name); err != nil {
		r.log.WithError(err).Warn("could not give the domain its name; it runs as " + r.cfg.Domain.Name + IncomingSuffix)
	}
	if err := r.hv.Unpause(r.dom); err != nil {
		// Nothing has run here yet, but the source has committed: keep
		// what we have and say so.
		return nil, fmt.Errorf("%w: unpause: %v", ErrCommitted, err)
	}
	resumeMS := ms(time.Since(goAt))
	r.emit(Event{Kind: EventResumed, Latency: time.Since(r.pausedAt)})
	if r.in == nil {
		r.l.remember(r.session, wire.SessionComplete) // pre-copy: every page is here
	}
	if err := r.links.main.w.Write(wire.TypeResumed); err != nil {
		if r.in == nil {
			return nil, r.lost(fmt.Errorf("send resumed: %w", err))
		}
		// The serving below finds the break and waits for the source.
		r.log.WithError(err).Warn("could not confirm the resume to the source")
	}
	r.log.WithField("resume_ms", resumeMS).Info("domain running here")
	if err := unmarkShell(r.hv, r.dom); err != nil { // not in the downtime
		r.log.WithError(err).Warn("could not remove the shell's receiver mark")
	}

	rep := receiverReport{PreparationMS: prepMS, ResumeMS: resumeMS}
	if r.in != nil {
		if err := r.serve(ctx); err != nil {
			return nil, r.lost(err)
		}
		if err := r.closePager(ctx); err != nil {
			return nil, r.lost(fmt.Errorf("detach pager: %w", err))
		}
		if err := r.guestStopped(); err != nil {
			return nil, r.lost(err) // it may have died before a watch saw it
		}
		r.l.remember(r.session, wire.SessionComplete)
		rep.NetworkFaults, rep.LocalFaults = r.in.networkFaults.Load(), r.in.localFaults.Load()
		rep.EarlyLate = r.earlyLate
		rep.ForeignFaults = r.in.foreignFaults.Load()
		lat := r.in.latencies()
		rep.FaultP50US, rep.FaultP99US = percentile(lat, 50), percentile(lat, 99)
	}
	completeAt := time.Now()
	if err := r.links.main.w.Write(wire.TypeComplete); err != nil {
		return nil, r.lost(fmt.Errorf("send complete: %w", err))
	}
	log := r.log
	if r.in != nil {
		r.in.mu.Lock()
		log = log.WithField("given_back", r.in.dropped.Count()) // by the guest's balloon, before their page came
		r.in.mu.Unlock()
	}
	log.Info("every page installed")
	r.measureGuest(&rep, opsStart, goAt, completeAt)
	if err := r.links.main.w.Write(wire.TypeStats, wire.MarshalJSON(rep)); err != nil {
		return nil, r.lost(fmt.Errorf("send stats: %w", err))
	}
	if _, err := r.links.main.expect(wire.TypeFinished); err != nil {
		r.log.WithError(err).Warn("source did not confirm the end; the domain is complete here")
	}
	inc := &Incoming{Domain: r.dom, Name: r.cfg.Domain.Name, Mode: mode, Pages: r.cfg.Populated.Count()}
	if r.cfg.ReportGuest {
		inc.Digest = r.reportGuest(ctx)
	}
	return inc, nil
}

// closePager detaches the pager once every gfn is installed. A vCPU may
// have faulted on a gfn just before its page was installed, its request
// still in the ring when the fault server stopped: such requests are
// answered (the page is there) until the pager can detach.
func (r *receiver) closePager(ctx context.Context) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := r.pager.Close()
		if err == nil || !errors.Is(err, hypervisor.ErrBusy) || time.Now().After(deadline) {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		reqs, rerr := r.pager.Requests(rctx)
		cancel()
		if rerr != nil && ctx.Err() != nil {
			return err
		}
		if len(reqs) > 0 {
			if _, ferr := r.in.fault(reqs); ferr != nil {
				return ferr
			}
		}
	}
}

// lost handles a failure after the switchover: the guest may be waiting on
// pages only the source has, so it is paused here rather than left hanging.
func (r *receiver) lost(err error) error {
	if errors.Is(err, ErrGuestStopped) {
		r.log.WithError(err).Error("migration failed after the switchover")
		return fmt.Errorf("%w: %w", ErrCommitted, err)
	}
	if r.in == nil || r.in.complete() {
		// Every page is here: the domain runs on; only the source's
		// clean-up is in doubt.
		r.log.WithError(err).Error("lost the source after the migration completed; the domain runs here")
		return fmt.Errorf("%w: %v; domain %d is complete and running here; the source may still hold its paused copy", ErrCommitted, err, r.dom)
	}
	if perr := r.hv.Pause(r.dom); perr != nil {
		r.log.WithError(perr).Error("could not pause the domain")
	}
	r.log.WithError(err).Error("migration failed after the switchover; domain paused here")
	return fmt.Errorf("%w: %v; domain %d paused here with memory still owed by the source", ErrCommitted, err, r.dom)
}

// serve runs post-copy until every gfn is installed. If the connections
// break, it pauses the domain, waits for the source to reopen the session,
// tells it which gfns are still missing, and goes on.
func (r *receiver) serve(ctx context.Context) error {
	kick, done := r.l.serving(r.session)
	defer done()
	for {
		err := r.serveRound(ctx, kick)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || errors.Is(err, ErrAborted) || errors.Is(err, wire.ErrMalformed) ||
			errors.Is(err, ErrGuestStopped) || r.options.reconnect <= 0 {
			return err // a protocol violation is not mended by reconnecting
		}
		r.log.WithError(err).Warn("connection to the source lost after the switchover; domain paused, waiting for the source to reconnect")
		if rerr := r.awaitSource(ctx); rerr != nil {
			return fmt.Errorf("%w; %w", err, rerr)
		}
		// A kick still pending was about the connections just replaced
		// (a resume hello that came before we waited for one): it must
		// not drop the new ones.
		select {
		case <-kick:
		default:
		}
		r.emit(Event{Kind: EventReconnected})
	}
}

// errSourceReopened: the source reopened the session while this side
// still held the old connections.
var errSourceReopened = errors.New("the source reopened the session: its side of the connections broke")

// serveRound serves faults and installs pages over the current connections
// until every gfn is installed or a connection breaks.
func (r *receiver) serveRound(ctx context.Context, kick <-chan struct{}) error {
	g, gctx := errgroup.WithContext(ctx)
	stop := make(chan struct{})
	g.Go(func() error { return r.serveFaults(gctx, stop) })
	g.Go(func() error { return r.readPages(gctx, r.links.urgent, stop) })
	r.pushDone.Store(0)
	for _, c := range r.links.streams() { // each ends at its push-done
		g.Go(func() error { return r.readPages(gctx, c, stop) })
	}
	g.Go(func() error { return r.in.drainStaged(gctx, stop) })
	g.Go(func() error { return r.watchGuest(gctx, stop) })
	kicked := false
	select {
	case <-r.in.done:
	case <-gctx.Done():
	case <-kick:
		kicked = true
	}
	close(stop)
	r.links.urgent.Close() // unblocks the urgent reader; the source closes its side too
	if r.in.complete() {
		return g.Wait()
	}
	r.links.close() // broken: unblock the stream readers too
	if err := g.Wait(); err != nil {
		return err
	}
	if kicked {
		return errSourceReopened
	}
	return ctx.Err()
}

// ErrGuestStopped: the domain crashed or shut down on the destination
// while post-copy still owed it memory.
var ErrGuestStopped = errors.New("the domain stopped on the destination during post-copy")

// guestWatchInterval is how often post-copy checks that the domain still
// runs (a guest that crashes waits for nothing, and nothing else notices).
const guestWatchInterval = 100 * time.Millisecond

// watchGuest fails once the domain has crashed, shut down or is being
// destroyed, until stop.
func (r *receiver) watchGuest(ctx context.Context, stop <-chan struct{}) error {
	tick := time.NewTicker(guestWatchInterval)
	defer tick.Stop()
	for {
		if err := r.guestStopped(); err != nil {
			// Before the round closes the connections: the source
			// stops pushing and keeps its copy paused.
			r.abortServing(err)
			return err
		}
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// abortServing tells the source why post-copy ends here, from whichever
// serving goroutine found it.
func (r *receiver) abortServing(err error) {
	r.abortMu.Lock()
	defer r.abortMu.Unlock()
	r.links.main.w.Write(wire.TypeAbort, abortRecord(err))
}

// guestStopped returns an error wrapping ErrGuestStopped if the domain has
// crashed, shut down or is being destroyed.
// Xen: xc_domain_getinfolist, the shutdown flags.
func (r *receiver) guestStopped() error {
	info, err := r.hv.Info(r.dom)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrGuestStopped, err)
	}
	switch info.State {
	case hypervisor.StateCrashed, hypervisor.StateShutdown, hypervisor.StateDying:
		return fmt.Errorf("%w: domain %d is %v (see `xl dmesg` and its console log)", ErrGuestStopped, r.dom, info.State)
	}
	return nil
}

// awaitSource pauses the domain until the source reopens the session, then
// sends it the gfns still missing, asks again for those vCPUs wait on, and
// unpauses.
func (r *receiver) awaitSource(ctx context.Context) error {
	if err := r.hv.Pause(r.dom); err != nil {
		return fmt.Errorf("pause while reconnecting: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, r.options.reconnect)
	defer cancel()
	links, err := r.l.awaitResume(wctx, r.session)
	if err != nil {
		return err // the domain stays paused: its missing pages are only on the source
	}
	r.links.close()
	r.links = links
	missing, wanted := r.in.missing()
	if err := r.links.main.w.Write(wire.TypeResume, wire.MarshalBitmap(missing)); err != nil {
		return fmt.Errorf("send the missing gfns: %w", err)
	}
	if len(wanted) > 0 {
		if err := r.links.urgent.w.Write(wire.TypeRequest, wire.MarshalGFNs(wanted)); err != nil {
			return fmt.Errorf("ask again for pages vCPUs wait on: %w", err)
		}
	}
	if err := r.hv.Unpause(r.dom); err != nil {
		return fmt.Errorf("unpause after reconnecting: %w", err)
	}
	r.log.WithFields(logrus.Fields{"missing": missing.Count(), "waited_on": len(wanted)}).Info("source reconnected; post-copy resumes")
	return nil
}

// serveFaults turns the guest's paging requests into requests to the source.
func (r *receiver) serveFaults(ctx context.Context, stop <-chan struct{}) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		reqs, err := r.pager.Requests(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("paging ring: %w", err)
		}
		r.emit(Event{Kind: EventRing, Pages: uint64(len(reqs))})
		ask, err := r.in.fault(reqs)
		if err != nil {
			return err
		}
		if len(ask) > 0 {
			if err := r.links.urgent.w.Write(wire.TypeRequest, wire.MarshalGFNs(ask)); err != nil {
				select {
				case <-stop:
					return nil
				default:
				}
				return fmt.Errorf("request pages from the source: %w", err)
			}
		}
	}
}

// readPages installs the pages arriving on c until stop, or until its
// push-done on a page stream.
func (r *receiver) readPages(ctx context.Context, c *conn, stop <-chan struct{}) error {
	name := "urgent"
	if c != r.links.urgent {
		name = fmt.Sprintf("stream %d", c.stream)
	}
	for {
		typ, body, err := c.r.Read()
		if err != nil {
			select {
			case <-stop:
				return nil
			default:
			}
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%s channel: %w", name, err)
		}
		switch typ {
		case wire.TypePages:
			p, err := wire.UnmarshalPages(body)
			if err != nil {
				return err
			}
			if err := r.in.installBatch(p); err != nil {
				return err
			}
			phase := "push"
			if p.Flags&wire.PagesDemand != 0 {
				phase = "demand"
			}
			r.emit(Event{Kind: EventPages, Phase: phase, Pages: uint64(len(p.GFNs)), Bytes: uint64(len(body))})
			runtime.Gosched() // let the fault path run between bulk batches
		case wire.TypePushDone:
			if c == r.links.urgent {
				return fmt.Errorf("push-done on the urgent channel: %w", wire.ErrMalformed)
			}
			if int(r.pushDone.Add(1)) < 1+len(r.links.bulk) {
				return nil // the other streams are still pushing
			}
			r.log.Debug("source finished pushing")
			// Every pushed page came before the last stream's push-done;
			// what is neither here, staged nor asked for will never come.
			if n, first := r.in.unsent(); n > 0 {
				err := fmt.Errorf("source finished pushing with %d owed gfns never sent (first %#x): %w", n, uint64(first), wire.ErrMalformed)
				r.abortServing(err) // so that it does not reconnect
				return err
			}
			return nil // the rest of the main channel is read by run
		case wire.TypeAbort:
			return abortError(body)
		default:
			return fmt.Errorf("unexpected %v record in post-copy: %w", typ, wire.ErrMalformed)
		}
	}
}

// measureGuest adds what the backend sees of the guest to rep.
func (r *receiver) measureGuest(rep *receiverReport, opsStart uint64, goAt, completeAt time.Time) {
	in, ok := r.hv.(hypervisor.Inspector)
	if !ok {
		return
	}
	p, err := in.Progress(r.dom)
	if err != nil {
		return
	}
	rep.DuringOps, rep.DuringMS = p.Ops-opsStart, ms(completeAt.Sub(goAt))
	for _, b := range p.Blocked {
		rep.VCPUBlockedMS = append(rep.VCPUBlockedMS, ms(time.Duration(b)))
	}
	if p.Done {
		return
	}
	const window = 300 * time.Millisecond
	time.Sleep(window)
	if q, err := in.Progress(r.dom); err == nil {
		rep.OpsAfter = float64(q.Ops-p.Ops) / window.Seconds()
	}
}

// reportGuest waits for a simulated guest to finish its run and sends the
// sender its memory digest.
func (r *receiver) reportGuest(ctx context.Context) string {
	var rep guestReport
	in, ok := r.hv.(hypervisor.Inspector)
	if !ok {
		rep.Err = "this backend cannot inspect guest memory"
	} else {
		for {
			p, err := in.Progress(r.dom)
			if err != nil {
				rep.Err = err.Error()
				break
			}
			if p.Done {
				d, err := in.Digest(r.dom)
				if err != nil {
					rep.Err = err.Error()
				}
				rep.Digest = d.String()
				break
			}
			select {
			case <-ctx.Done():
				rep.Err = ctx.Err().Error()
			case <-time.After(20 * time.Millisecond):
				continue
			}
			break
		}
	}
	if err := r.links.main.w.Write(wire.TypeGuestFinal, wire.MarshalJSON(rep)); err != nil {
		r.log.WithError(err).Warn("could not send the guest report")
	}
	return rep.Digest
}

func (r *receiver) ops() (uint64, bool) {
	in, ok := r.hv.(hypervisor.Inspector)
	if !ok {
		return 0, false
	}
	p, err := in.Progress(r.dom)
	return p.Ops, err == nil
}
