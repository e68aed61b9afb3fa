package sim

import (
	"strconv"

	"github.com/xenmig/xenmig/hypervisor"
)

// balloonChunk is how many pages the balloon driver moves between checks
// that the domain still runs.
const balloonChunk = 256

// balloon is the guest's balloon driver. Its target is set by the toolstack
// through memory/target (KiB) or by the guest itself (SetBalloonTarget, what
// Linux's sysfs target_kb does for xenmig-balloond); the latest wins. It
// releases free pages (highest gfns first) or populates ballooned-out ones
// until the guest's populated memory meets the target. The memory/target
// found at boot (applied) is taken as met, so a migrated guest keeps the
// layout it arrived with. It is guest code: it runs only while the domain
// runs, and counts as a running vCPU meanwhile, so Pause waits for it.
func (d *domain) balloon(targets <-chan string, applied string) {
	defer d.wg.Done()
	key := domainPath(d.id) + "/memory/target"
	for {
		select {
		case <-d.halted:
			return
		case _, ok := <-targets:
			if !ok {
				return
			}
		case <-d.balloonKick:
		}
		if v, err := d.h.store.read(key); err == nil && v != applied {
			applied = v
			if kib, err := strconv.ParseUint(v, 10, 64); err == nil {
				d.setBalloonTarget(kib * 1024 / hypervisor.PageSize)
			} else {
				d.log.WithField("target", v).Warn("balloon: bad memory/target")
			}
		}
		if target, ok := d.balloonTarget(); ok {
			d.balloonTo(target)
		}
	}
}

// setBalloonTarget makes target pages the balloon driver's goal.
func (d *domain) setBalloonTarget(target uint64) {
	d.mu.Lock()
	d.balloonGoal, d.balloonSet = target, true
	d.mu.Unlock()
}

// balloonTarget returns the balloon driver's goal, if one was set.
func (d *domain) balloonTarget() (uint64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.balloonGoal, d.balloonSet
}

// kickBalloon wakes the balloon driver.
func (d *domain) kickBalloon() {
	select {
	case d.balloonKick <- struct{}{}:
	default:
	}
}

// balloonTo moves the guest's populated memory toward target pages, a chunk
// at a time, until it is reached, no free page is left to release, or the
// domain is paused (Unpause kicks the driver again).
func (d *domain) balloonTo(target uint64) {
	cursor := len(d.lay.usable) - 1 // inflate scans down from here, once
	for {
		moved, running := d.balloonStep(target, &cursor)
		if !running || moved < balloonChunk {
			return
		}
	}
}

// balloonStep moves up to balloonChunk pages toward target. It returns how
// many it moved and whether the domain was running.
func (d *domain) balloonStep(target uint64, cursor *int) (moved uint64, running bool) {
	d.guestMu.Lock()
	defer d.guestMu.Unlock()
	d.mu.Lock()
	if d.stoppedLocked() || !d.hasContext || d.crashed || d.dying {
		d.mu.Unlock()
		return 0, false
	}
	d.running++
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.stopRunning()
		d.mu.Unlock()
	}()
	cur := uint64(d.mem.populated.Load())
	switch {
	case target < cur:
		return d.inflate(min(cur-target, balloonChunk), cursor), true
	case target > cur:
		return d.deflate(min(target-cur, balloonChunk)), true
	}
	return 0, true
}

// inflate releases up to n free pages, scanning down from *cursor (highest
// gfns first), and returns how many it released; d.guestMu must be held. A
// guest cannot tell a paged-out frame from a present one, so free pages that
// are nominated or paged out go too, as Linux's balloon would give them:
// the pager hears of it by a PagingDropPage request, and its load of the
// gfn fails with ErrNotPopulated. A gfn being paged in is one the guest (or
// a backend) is touching, so it is not free.
func (d *domain) inflate(n uint64, cursor *int) uint64 {
	var done uint64
	for ; *cursor >= 0 && done < n; *cursor-- {
		g := d.lay.usable[*cursor]
		if st := d.mem.state(g); (st != stRAM && st != stPaged && st != stPagingOut) || d.inUseLocked(g) {
			continue
		}
		if d.depopulate(g) == nil {
			done++
		}
	}
	return done
}

// deflate populates up to n ballooned-out pages, lowest gfns first, and
// returns how many it populated; d.guestMu must be held.
func (d *domain) deflate(n uint64) uint64 {
	var done uint64
	for _, g := range d.lay.usable {
		if done == n {
			break
		}
		if d.mem.state(g) == stUnpopulated && d.populate(g) == nil {
			done++
		}
	}
	return done
}
