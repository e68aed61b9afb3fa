package sim

import (
	"fmt"
	"sync/atomic"

	"github.com/xenmig/xenmig/hypervisor"
)

// dirtyLog is a log-dirty bitmap that vCPUs mark concurrently.
type dirtyLog struct {
	words []atomic.Uint64
	n     uint64
}

func newDirtyLog(n uint64) *dirtyLog {
	return &dirtyLog{words: make([]atomic.Uint64, (n+63)/64), n: n}
}

// mark sets g's bit; the load first keeps an already-dirty page's write path
// free of a locked instruction.
func (l *dirtyLog) mark(g hypervisor.GFN) {
	w, bit := &l.words[g/64], uint64(1)<<(g%64)
	if w.Load()&bit == 0 {
		w.Or(bit)
	}
}

// snapshot copies the bitmap, resetting each word in the same atomic step
// when clean is set.
func (l *dirtyLog) snapshot(clean bool) *hypervisor.Bitmap {
	words := make([]uint64, len(l.words))
	for i := range l.words {
		if clean {
			words[i] = l.words[i].Swap(0)
		} else {
			words[i] = l.words[i].Load()
		}
	}
	return hypervisor.BitmapFromWords(words, l.n)
}

// EnableLogDirty starts tracking d's writes, every page clean. ErrInvalid if
// tracking is already on, as Xen's paging_log_dirty_enable answers.
func (h *Host) EnableLogDirty(id hypervisor.DomID) error {
	d, err := h.acquire(id)
	if err != nil {
		return fmt.Errorf("enable log-dirty: %w", err)
	}
	defer d.release()
	if !d.mem.dirty.CompareAndSwap(nil, newDirtyLog(d.mem.pages())) {
		return fmt.Errorf("enable log-dirty on domain %d: already enabled: %w", id, hypervisor.ErrInvalid)
	}
	return nil
}

// DirtyLog returns the gfns written since log-dirty was enabled or last
// cleaned, resetting the log if clean is set. Writes by the guest, by
// WritePages and changes of population (Populate, Depopulate, ballooning)
// are reported.
func (h *Host) DirtyLog(id hypervisor.DomID, clean bool) (*hypervisor.Bitmap, error) {
	d, err := h.acquire(id)
	if err != nil {
		return nil, fmt.Errorf("dirty log: %w", err)
	}
	defer d.release()
	defer d.lanes.logDirty.pay(h.costs.DirtyLog.of(int(d.mem.pages())))()
	l := d.mem.dirty.Load()
	if l == nil {
		return nil, fmt.Errorf("dirty log of domain %d: log-dirty is off: %w", id, hypervisor.ErrInvalid)
	}
	return l.snapshot(clean), nil
}

// DisableLogDirty stops tracking d's writes; it is a no-op if tracking is off.
func (h *Host) DisableLogDirty(id hypervisor.DomID) error {
	d, err := h.acquire(id)
	if err != nil {
		return fmt.Errorf("disable log-dirty: %w", err)
	}
	defer d.release()
	d.mem.dirty.Store(nil)
	return nil
}
