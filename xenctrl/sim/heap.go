package sim

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/xenmig/xenmig/hypervisor"
)

// heap is a host's resident memory (WithResidentMemory): one mapping,
// faulted in when the host is made, from which domains take their gfn
// space and to which they give it back, zeroed, when destroyed. A Xen
// host's domains take their memory from RAM that is resident before any
// page arrives, and an evicted frame goes back to Xen's heap, still
// resident; memory mapped per domain is filled by the kernel on first
// touch instead, at 4-18 µs a page on a VM whose own host backs it lazily,
// which a real host never pays.
type heap struct {
	buf []byte

	mu   sync.Mutex
	free []span // ascending, never adjacent
}

// span is a run of pages of a heap.
type span struct{ start, n uint64 }

// newHeap maps pages and faults every one in.
func newHeap(pages uint64) (*heap, error) {
	buf, err := unix.Mmap(-1, 0, int(pages*hypervisor.PageSize),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("mmap %d resident pages: %w", pages, err)
	}
	if err := unix.Madvise(buf, unix.MADV_POPULATE_WRITE); err != nil {
		for off := 0; off < len(buf); off += hypervisor.PageSize { // before Linux 5.14
			buf[off] = 0
		}
	}
	return &heap{buf: buf, free: []span{{0, pages}}}, nil
}

// take returns pages of the heap (the first run long enough) and the
// index of the first, or false if no free run is that long.
func (hp *heap) take(pages uint64) (start uint64, buf []byte, ok bool) {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	for i, s := range hp.free {
		if s.n < pages {
			continue
		}
		if s.n == pages {
			hp.free = append(hp.free[:i], hp.free[i+1:]...)
		} else {
			hp.free[i] = span{s.start + pages, s.n - pages}
		}
		lo, hi := s.start*hypervisor.PageSize, (s.start+pages)*hypervisor.PageSize
		return s.start, hp.buf[lo:hi:hi], true
	}
	return 0, nil, false
}

// give takes back the pages take returned, zeroing them for their next
// domain.
func (hp *heap) give(start, pages uint64) {
	clear(hp.buf[start*hypervisor.PageSize : (start+pages)*hypervisor.PageSize])
	hp.mu.Lock()
	defer hp.mu.Unlock()
	i := 0
	for i < len(hp.free) && hp.free[i].start < start {
		i++
	}
	hp.free = append(hp.free, span{})
	copy(hp.free[i+1:], hp.free[i:])
	hp.free[i] = span{start, pages}
	if i+1 < len(hp.free) && start+pages == hp.free[i+1].start { // joins the next run
		hp.free[i].n += hp.free[i+1].n
		hp.free = append(hp.free[:i+1], hp.free[i+2:]...)
	}
	if i > 0 && hp.free[i-1].start+hp.free[i-1].n == start { // and the one before
		hp.free[i-1].n += hp.free[i].n
		hp.free = append(hp.free[:i], hp.free[i+1:]...)
	}
}

// unmap releases the mapping; every domain must have given its pages back.
func (hp *heap) unmap() error {
	if err := unix.Munmap(hp.buf); err != nil {
		return fmt.Errorf("munmap resident memory: %w", err)
	}
	hp.buf = nil
	return nil
}
