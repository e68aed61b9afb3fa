package sim

import (
	"math/bits"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
)

// pacingSlack is how far a paced vCPU may run ahead of its schedule before
// it sleeps: steps run in short bursts whose average is the rate, since Go
// cannot sleep for the microseconds between two steps of a fast workload.
const pacingSlack = time.Millisecond

// noGFN is the published gfn of a vCPU that is not touching memory.
const noGFN = ^uint64(0)

// where a vCPU waits, as SaveCPU needs to know.
const (
	atRunning  = iota // executing guest code
	atBoundary        // parked between two steps
	atFault           // blocked inside a step on a paging fault or ring slot
	atExited          // the domain crashed or was destroyed
)

// vcpu is one virtual CPU: a goroutine running its workload program step by
// step. Its context (what SaveCPU returns) is rng, the counters, acc, the
// allocation bitmap and the program's own state.
type vcpu struct {
	d     *domain
	id    int
	arena *arena

	// Context. Only the vCPU's goroutine changes it, and only while running;
	// steps and ops are atomic so Progress can read them.
	rng   uint64
	steps atomic.Uint64
	ops   atomic.Uint64
	acc   uint64   // fold of every value read from static or own pages
	alloc []uint64 // bit i: arena.pages[i] in use; guarded by d.guestMu
	prog  program

	blocked atomic.Int64 // ns spent blocked on paging faults

	// cur is the gfn being accessed; curPub publishes it to Nominate and
	// Depopulate, which wait for accesses in flight to finish.
	cur    uint64
	curPub atomic.Uint64

	interval time.Duration // pacing: time between steps, 0 = unpaced
	next     time.Time     // pacing: earliest start of the next step
	kick     chan struct{} // wakes the vCPU from a timed or idle wait
	probes   probeQueue    // accesses queued by Host.Touch

	// Guarded by d.mu.
	where        int
	pagingPaused int // responses owed by the pager (vm_event_pause_count)
	done         bool
}

func newVCPU(d *domain, i int) *vcpu {
	v := &vcpu{
		d:     d,
		id:    i,
		arena: &d.lay.arenas[i],
		cur:   noGFN,
		kick:  make(chan struct{}, 1),
		where: atBoundary,
	}
	v.curPub.Store(noGFN)
	if r := d.spec.Workload.Rate; r > 0 {
		v.interval = time.Duration(float64(time.Second) / r)
	}
	return v
}

// boot gives the vCPU its initial context: seeded PRNG, boot pages
// allocated, the program's start state.
func (v *vcpu) boot() {
	v.rng = mix64(v.d.spec.Seed ^ uint64(v.id+1)*0xd1b54a32d192ed03)
	v.alloc = make([]uint64, (len(v.arena.pages)+63)/64)
	for i := range v.arena.boot {
		v.alloc[i/64] |= 1 << (i % 64)
	}
	v.prog = programs[v.d.spec.Workload.Kind](v)
}

// allocated returns the number of arena pages in use; d.guestMu must be held
// or the vCPU not yet started.
func (v *vcpu) allocated() uint64 {
	var n int
	for _, w := range v.alloc {
		n += bits.OnesCount64(w)
	}
	return uint64(n)
}

// reached reports whether the vCPU has done its steps under target stopAt.
func (v *vcpu) reached(stopAt uint64) bool {
	return stopAt != 0 && v.steps.Load() >= stopAt
}

// wake ends a timed or idle wait early.
func (v *vcpu) wake() {
	select {
	case v.kick <- struct{}{}:
	default:
	}
}

// run is the vCPU's goroutine. The vCPU starts parked at its first step
// boundary, not running.
func (v *vcpu) run() {
	defer v.d.wg.Done()
	v.d.mu.Lock()
	v.d.running++
	v.where = atRunning
	ok := v.boundaryLocked()
	v.d.mu.Unlock()
	for ok {
		if v.prog.step(v) {
			v.steps.Add(1)
		} else {
			v.idle() // nothing to do (a probe with an empty queue)
		}
		ok = v.boundary()
	}
}

// boundary runs between two steps: the only point where the vCPU pauses,
// stops or is paced. It reports false when the vCPU must exit.
func (v *vcpu) boundary() bool {
	if v.cur != noGFN {
		v.cur = noGFN
		v.curPub.Store(noGFN)
	}
	d := v.d
	if d.gate.Load() == 0 && v.interval == 0 && !v.reached(d.stopAt.Load()) {
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return v.boundaryLocked()
}

// boundaryLocked is boundary's slow path; d.mu must be held.
func (v *vcpu) boundaryLocked() bool {
	d := v.d
	for {
		switch {
		case d.dying || d.crashed:
			v.exitLocked()
			return false
		case d.hasContext && v.reached(d.stopAt.Load()):
			d.setDone(v, true)
			v.waitLocked(atBoundary)
		case d.stoppedLocked() || !d.hasContext:
			v.waitLocked(atBoundary)
		case v.interval > 0 && time.Until(v.next) > pacingSlack:
			v.sleepLocked(v.next)
		default:
			if v.interval > 0 {
				now := time.Now()
				v.next = v.next.Add(v.interval)
				if v.next.Before(now.Add(-pacingSlack)) {
					v.next = now // fell behind (paused): do not catch up in a burst
				}
			}
			return true
		}
	}
}

// idle parks the vCPU at a step boundary until it is woken.
func (v *vcpu) idle() {
	v.d.mu.Lock()
	v.sleepLocked(time.Time{})
	v.d.mu.Unlock()
}

// waitLocked blocks on d.runCond as not running; d.mu must be held.
func (v *vcpu) waitLocked(where int) {
	d := v.d
	v.where = where
	d.stopRunning()
	d.runCond.Wait()
	d.running++
	v.where = atRunning
}

// sleepLocked parks the vCPU at a step boundary, not running, until until
// (zero: no deadline), a wake or a halt; d.mu must be held and is released
// meanwhile.
func (v *vcpu) sleepLocked(until time.Time) {
	d := v.d
	v.where = atBoundary
	d.stopRunning()
	d.mu.Unlock()
	var timeout <-chan time.Time
	if !until.IsZero() {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-v.kick:
	case <-timeout:
	case <-d.halted:
	}
	d.mu.Lock()
	d.running++
	v.where = atRunning
}

// exitLocked accounts for the vCPU leaving for good; d.mu must be held.
func (v *vcpu) exitLocked() {
	v.where = atExited
	v.d.stopRunning()
}

// stall ends the vCPU's goroutine from inside a step, as a vCPU of a crashed
// domain never returns from its faulting access; d.mu must be held.
func (v *vcpu) stall() {
	v.exitLocked()
	v.d.mu.Unlock()
	runtime.Goexit()
}

// stopRunning accounts for a vCPU (or the balloon driver) that stops
// executing guest code, waking Pause when none runs; d.mu must be held.
func (d *domain) stopRunning() {
	if d.running--; d.running == 0 {
		d.idleCond.Broadcast()
	}
}

// quiesce waits until no vCPU of d is in the middle of an access to g. A gfn
// whose type was just changed away from RAM is safe to drop afterwards: any
// later access sees the new type.
func (d *domain) quiesce(g hypervisor.GFN) {
	for _, v := range d.vcpus {
		for v.curPub.Load() == uint64(g) {
			runtime.Gosched()
		}
	}
}
