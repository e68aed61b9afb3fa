package sim

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/xenmig/xenmig/hypervisor"
)

// domain is one simulated guest.
//
// Locks, in the order they nest: life (held shared by every host call on the
// domain, exclusively by destroy), guestMu (the guest's page allocator and
// balloon driver), mu (run state: pauses, vCPU waits, the paging ring).
type domain struct {
	h    *Host
	id   hypervisor.DomID
	spec GuestSpec
	lay  *layout
	mem  *memory
	log  *logrus.Entry

	lanes lanes // where the host's Costs are booked

	life sync.RWMutex
	dead bool // guarded by life

	// guestMu guards the vCPUs' allocation bitmaps and inUse.
	guestMu sync.Mutex
	inUse   uint64

	stopAt atomic.Uint64
	// gate is non-zero whenever vCPUs must take the slow path at a step
	// boundary: the domain is paused, has no context, crashed or is dying.
	gate atomic.Uint32

	mu         sync.Mutex
	runCond    *sync.Cond // vCPUs wait here for the domain to let them run
	idleCond   *sync.Cond // Pause waits here for running to drop to 0
	pauseCount int
	running    int  // vCPUs executing guest code
	hasContext bool // vCPU state is loaded: booted or restored
	suspend    int  // suspendNone, suspendInProgress, suspendDone
	// instance tells this domain's vCPU contexts from another's: a context
	// restored into another domain must have been saved suspended.
	instance uint64
	// unsuspended: the context restored here was saved from another domain
	// that had not suspended; the guest cannot run on here.
	unsuspended bool
	// resumedNew: the context restored here was saved suspended from
	// another domain; the guest takes its resume-in-a-new-domain path when
	// it next runs.
	resumedNew bool
	uuid       string
	cpuPolicy  uint64 // the CPU features the guest may use
	crashed    bool
	dying      bool
	halted     chan struct{} // closed on crash or destroy
	doneCount  int
	doneCh     chan struct{} // closed while every vCPU is done
	vcpus      []*vcpu
	pager      *pager
	ring       ring
	tsc        hypervisor.TSCInfo
	params     map[uint32]uint64 // HVM parameters set by RestoreCPU
	created    time.Time         // start of the TSC's elapsed time

	balloonKick chan struct{}
	balloonGoal uint64             // the balloon driver's target, pages; under mu
	balloonSet  bool               // balloonGoal has been set since boot
	stopBalloon context.CancelFunc // ends the balloon driver's watch
	wg          sync.WaitGroup     // vCPU and balloon goroutines
}

// newDomain maps memory for spec and builds paused vCPUs without context.
func (h *Host) newDomain(id hypervisor.DomID, s GuestSpec) (*domain, error) {
	lay, err := newLayout(&s)
	if err != nil {
		return nil, err
	}
	mem, err := newMemory(s.MemoryPages, h.heap)
	if err != nil {
		return nil, fmt.Errorf("create domain %q: %w", s.Name, err)
	}
	d := &domain{
		h:           h,
		id:          id,
		spec:        s,
		lay:         lay,
		mem:         mem,
		log:         h.log.WithFields(logrus.Fields{"domid": id, "domain": s.Name}),
		pauseCount:  1,
		halted:      make(chan struct{}),
		doneCh:      make(chan struct{}),
		balloonKick: make(chan struct{}, 1),
		tsc:         hypervisor.TSCInfo{GTSCkHz: 2_000_000},
		instance:    rand.Uint64(),
		params:      make(map[uint32]uint64),
		created:     time.Now(),
	}
	d.runCond = sync.NewCond(&d.mu)
	d.idleCond = sync.NewCond(&d.mu)
	d.ring.notify = make(chan struct{}, 1)
	d.stopAt.Store(s.StopAt)
	d.updateGate()
	for _, g := range lay.usable {
		mem.cas(g, stUnpopulated, stRAM)
	}
	for _, g := range lay.special {
		mem.cas(g, stUnpopulated, stRAM)
		h.stampRing(mem.page(g), id)
	}
	for i := range s.VCPUs {
		d.vcpus = append(d.vcpus, newVCPU(d, i))
	}
	return d, nil
}

// start writes the domain's xenstore entries and starts its goroutines.
func (d *domain) start() error {
	home := domainPath(d.id)
	kib := fmt.Sprint(uint64(len(d.lay.usable)) * hypervisor.PageSize / 1024)
	for _, kv := range [][2]string{
		{"/name", d.spec.Name},
		{"/memory/target", kib},
		{"/memory/static-max", kib},
		{"/control", ""},
		{"/data", ""},
	} {
		if err := d.h.store.write(home+kv[0], kv[1]); err != nil {
			return fmt.Errorf("create domain %q: %w", d.spec.Name, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	targets, err := d.h.store.watch(ctx, home+"/memory/target")
	if err != nil {
		cancel()
		return fmt.Errorf("create domain %q: %w", d.spec.Name, err)
	}
	shutdowns, err := d.h.store.watch(ctx, shutdownKey(d.id))
	if err != nil {
		cancel()
		return fmt.Errorf("create domain %q: %w", d.spec.Name, err)
	}
	d.stopBalloon = cancel
	d.wg.Add(len(d.vcpus) + 2)
	for _, v := range d.vcpus {
		go v.run()
	}
	go d.balloon(targets, kib)
	go d.watchShutdown(shutdowns)
	if d.spec.Balloond != nil {
		if err := d.startBalloond(ctx); err != nil {
			d.halt()
			return err
		}
	}
	return nil
}

// name returns the domain's current name.
func (d *domain) name() string {
	n, _ := d.h.store.read(domainPath(d.id) + "/name")
	return n
}

// release ends a host call begun by Host.acquire.
func (d *domain) release() { d.life.RUnlock() }

// updateGate recomputes gate; d.mu must be held (or d unpublished).
func (d *domain) updateGate() {
	var g uint32
	if d.stoppedLocked() || !d.hasContext || d.crashed || d.dying {
		g = 1
	}
	d.gate.Store(g)
}

// stampRing writes what this host's xenstored and xenconsoled keep in a
// domain's ring page: their own state, not the guest's.
func (h *Host) stampRing(p []byte, id hypervisor.DomID) {
	copy(p, "XSRING\x00\x00")
	binary.LittleEndian.PutUint64(p[8:], h.instance)
	binary.LittleEndian.PutUint64(p[16:], uint64(id))
}

// ringsIntact reports whether d's ring pages still hold this host's state.
func (d *domain) ringsIntact() bool {
	want := make([]byte, hypervisor.PageSize)
	d.h.stampRing(want, d.id)
	for _, g := range d.lay.special {
		if hasFrame(d.mem.state(g)) && !bytes.Equal(d.mem.page(g), want) {
			return false
		}
	}
	return true
}

// stoppedLocked reports whether the guest may not run: paused, or
// suspending or suspended; d.mu must be held.
func (d *domain) stoppedLocked() bool { return d.pauseCount > 0 || d.suspend != suspendNone }

// state returns the domain's run state.
func (d *domain) state() hypervisor.State {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.dying:
		return hypervisor.StateDying
	case d.crashed:
		return hypervisor.StateCrashed
	case d.suspend == suspendDone:
		return hypervisor.StateSuspended
	case d.pauseCount > 0:
		return hypervisor.StatePaused
	}
	return hypervisor.StateRunning
}

// halt stops the vCPUs for good; d.mu must be held.
func (d *domain) halt() {
	select {
	case <-d.halted:
	default:
		close(d.halted)
		if d.stopBalloon != nil {
			d.stopBalloon()
		}
	}
	d.updateGate()
	d.runCond.Broadcast()
}

// crash shuts the domain down with SHUTDOWN_crash, as Xen's domain_crash
// does; d.mu must be held.
func (d *domain) crash(why string) {
	if d.crashed {
		return
	}
	d.log.WithField("reason", why).Error("domain crashed")
	d.crashed = true
	d.halt()
}

// destroy stops every goroutine of the domain and unmaps its memory.
func (d *domain) destroy() error {
	d.mu.Lock()
	d.dying = true
	if d.pager != nil {
		d.pager.detach()
	}
	d.halt()
	d.mu.Unlock()
	d.wg.Wait()
	d.life.Lock()
	defer d.life.Unlock()
	d.dead = true
	if err := d.h.store.remove(domainPath(d.id)); err != nil {
		d.log.WithError(err).Warn("remove xenstore home")
	}
	if err := d.mem.unmap(); err != nil {
		return fmt.Errorf("destroy domain %d: %w", d.id, err)
	}
	return nil
}

// Pause stops every vCPU of id and returns once none runs: each is parked at
// a step boundary or blocked on a paging fault. Pauses nest.
func (h *Host) Pause(id hypervisor.DomID) error {
	d, err := h.acquire(id)
	if err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	defer d.release()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pauseCount++
	d.updateGate()
	for d.running > 0 {
		d.idleCond.Wait()
	}
	return nil
}

// Unpause undoes one Pause. ErrInvalid if id is not paused, has crashed, or
// is a shell whose vCPU context was never restored.
func (h *Host) Unpause(id hypervisor.DomID) error {
	d, err := h.acquire(id)
	if err != nil {
		return fmt.Errorf("unpause: %w", err)
	}
	defer d.release()
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.crashed:
		return fmt.Errorf("unpause domain %d: crashed: %w", id, hypervisor.ErrInvalid)
	case d.pauseCount == 0:
		return fmt.Errorf("unpause domain %d: not paused: %w", id, hypervisor.ErrInvalid)
	case !d.hasContext:
		return fmt.Errorf("unpause domain %d: no vCPU context loaded: %w", id, hypervisor.ErrInvalid)
	}
	d.pauseCount--
	d.updateGate()
	if d.pauseCount == 0 && d.unsuspended {
		// Real Linux hangs here, silently: its event channels, timer
		// and PV devices were never re-made.
		d.crash("resumed in a new domain from a context saved without a suspend")
		return nil
	}
	if d.pauseCount == 0 && d.resumedNew {
		d.resumedNew = false
		if err := d.registerVCPUInfo(); err != nil {
			d.crash(err.Error())
			return nil
		}
	}
	if d.pauseCount == 0 && !d.ringsIntact() {
		d.crash("its xenstore or console ring was overwritten: this host's xenstored and xenconsoled lost it")
		return nil
	}
	if d.pauseCount == 0 {
		d.runCond.Broadcast()
		for _, v := range d.vcpus {
			v.wake()
		}
		d.kickBalloon()
	}
	return nil
}

// WaitDone blocks until every vCPU of id has run StopAt steps. It fails if
// the domain crashes or is destroyed, or ctx ends first.
func (h *Host) WaitDone(ctx context.Context, id hypervisor.DomID) error {
	d, err := h.acquire(id)
	if err != nil {
		return fmt.Errorf("wait done: %w", err)
	}
	d.mu.Lock()
	done, halted := d.doneCh, d.halted
	d.mu.Unlock()
	d.release()
	select {
	case <-done:
		return nil
	case <-halted:
		return fmt.Errorf("wait for domain %d: crashed or destroyed: %w", id, hypervisor.ErrInvalid)
	case <-ctx.Done():
		return fmt.Errorf("wait for domain %d: %w", id, ctx.Err())
	}
}

// SetStopAt changes the number of steps after which each vCPU of id stops;
// 0 runs forever. Raising it restarts vCPUs that had stopped.
func (h *Host) SetStopAt(id hypervisor.DomID, steps uint64) error {
	d, err := h.acquire(id)
	if err != nil {
		return fmt.Errorf("set stop-at: %w", err)
	}
	defer d.release()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopAt.Store(steps)
	for _, v := range d.vcpus {
		if v.done && !v.reached(steps) {
			d.setDone(v, false)
		}
		v.wake()
	}
	d.runCond.Broadcast()
	return nil
}

// setDone records whether v has reached its step target; d.mu must be held.
func (d *domain) setDone(v *vcpu, done bool) {
	if v.done == done {
		return
	}
	v.done = done
	if done {
		d.doneCount++
		if d.doneCount == len(d.vcpus) {
			close(d.doneCh)
		}
		return
	}
	if d.doneCount == len(d.vcpus) {
		d.doneCh = make(chan struct{})
	}
	d.doneCount--
}

// GuestPages returns the pages the guest has in use ("committed memory"):
// its static pages and every page its vCPUs have allocated. The rest of its
// memory is free, zero, and may be ballooned out.
func (h *Host) GuestPages(id hypervisor.DomID) (uint64, error) {
	d, err := h.acquire(id)
	if err != nil {
		return 0, fmt.Errorf("guest pages: %w", err)
	}
	defer d.release()
	d.guestMu.Lock()
	defer d.guestMu.Unlock()
	return d.inUse, nil
}
