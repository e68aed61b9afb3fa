package sim

import (
	"strconv"

	"github.com/xenmig/xenmig/hypervisor"
)

// balloonChunk is how many pages the balloon driver moves between checks
// that the domain still runs.
const balloonChunk = 256

// balloon is the guest's balloon driver: when memory/target (KiB) changes,
// it releases free pages (highest gfns first) or populates ballooned-out
// ones until the guest's populated memory meets the new target. The target
// found at boot (applied) is taken as met, so a migrated guest keeps the layout it
// arrived with. It is guest code: it runs only while the domain runs, and
// counts as a running vCPU meanwhile, so Pause waits for it.
func (d *domain) balloon(targets <-chan string, applied string) {
	defer d.wg.Done()
	key := domainPath(d.id) + "/memory/target"
	pending := false
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
			applied, pending = v, true
		}
		if !pending {
			continue
		}
		kib, err := strconv.ParseUint(applied, 10, 64)
		if err != nil {
			d.log.WithField("target", applied).Warn("balloon: bad memory/target")
			pending = false
			continue
		}
		pending = d.balloonTo(kib * 1024 / hypervisor.PageSize)
	}
}

// balloonTo moves the guest's populated memory toward target pages, a chunk
// at a time, and reports whether it stopped because the domain was paused
// (so the next Unpause resumes it).
func (d *domain) balloonTo(target uint64) bool {
	for {
		moved, running := d.balloonStep(target)
		if !running {
			return true
		}
		if moved < balloonChunk {
			return false // reached, or no free page left to release
		}
	}
}

// balloonStep moves up to balloonChunk pages toward target. It returns how
// many it moved and whether the domain was running.
func (d *domain) balloonStep(target uint64) (moved uint64, running bool) {
	d.guestMu.Lock()
	defer d.guestMu.Unlock()
	d.mu.Lock()
	if d.pauseCount > 0 || !d.hasContext || d.crashed || d.dying {
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
		return d.inflate(min(cur-target, balloonChunk)), true
	case target > cur:
		return d.deflate(min(target-cur, balloonChunk)), true
	}
	return 0, true
}

// inflate releases up to n free pages, highest gfns first, and returns how
// many it released; d.guestMu must be held.
func (d *domain) inflate(n uint64) uint64 {
	var done uint64
	for i := len(d.lay.usable) - 1; i >= 0 && done < n; i-- {
		g := d.lay.usable[i]
		if st := d.mem.state(g); st != stRAM && st != stPaged || d.inUseLocked(g) {
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
