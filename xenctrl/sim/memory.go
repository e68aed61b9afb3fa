package sim

import (
	"bytes"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/xenmig/xenmig/hypervisor"
)

// p2m types of a gfn, after Xen's p2m_type_t for the states mem_paging uses.
const (
	stUnpopulated  uint32 = iota // no frame: a hole or ballooned out (p2m_invalid)
	stRAM                        // present (p2m_ram_rw)
	stPagingOut                  // nominated: frame kept, guest access faults (p2m_ram_paging_out)
	stPaged                      // evicted: no frame (p2m_ram_paged)
	stPagingIn                   // evicted, a fault posted: no frame (p2m_ram_paging_in)
	stPagingInKept               // nominated, then touched: frame kept, fault posted (p2m_ram_paging_in with a valid mfn)
)

// hasFrame reports whether a gfn in state st has its content in memory.
func hasFrame(st uint32) bool {
	return st == stRAM || st == stPagingOut || st == stPagingInKept
}

// pagedOut reports whether a gfn in state st has lost its content to the pager.
func pagedOut(st uint32) bool { return st == stPaged || st == stPagingIn }

// inPaging reports whether st is one of the pager's states.
func inPaging(st uint32) bool { return st >= stPagingOut }

// memory is one domain's guest-physical memory: the whole gfn space, an
// anonymous mapping of its own or a run of its host's resident memory, and
// the p2m type of every gfn. Each gfn changes type only by compare-and-swap,
// so the vCPUs' fast path is a single atomic load.
type memory struct {
	buf  []byte
	heap *heap // buf is pages of it from base; nil: buf is a mapping of its own
	base uint64
	p2m  []atomic.Uint32
	// evictFail has a bit per gfn whose nomination a guest access cancelled
	// (MEM_PAGING_EVICT_FAIL): Evict then fails with ErrBusy, not ErrInvalid.
	evictFail []atomic.Uint64

	frames    atomic.Int64 // gfns with a frame (tot_pages)
	populated atomic.Int64 // gfns not unpopulated, paged ones included
	paged     atomic.Int64 // gfns without their frame (paged_pages)
	paging    atomic.Int64 // gfns in any pager state

	dirty atomic.Pointer[dirtyLog] // nil unless log-dirty is enabled
}

// newMemory returns pages zeroed, unpopulated pages: from h, resident, if
// it has a free run that long, else a mapping of their own.
func newMemory(pages uint64, h *heap) (*memory, error) {
	m := &memory{
		p2m:       make([]atomic.Uint32, pages),
		evictFail: make([]atomic.Uint64, (pages+63)/64),
	}
	if h != nil {
		var ok bool
		if m.base, m.buf, ok = h.take(pages); ok {
			m.heap = h
			return m, nil
		}
	}
	buf, err := unix.Mmap(-1, 0, int(pages*hypervisor.PageSize),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("mmap %d guest pages: %w", pages, err)
	}
	// Guest memory is left on 4 KiB pages (no MADV_HUGEPAGE). A Xen
	// domain's memory is resident before a page arrives; here the first
	// touch of a page faults it in. On a host that backs its own memory
	// lazily (a VM), the first touch of a 2 MiB page stops that CPU for
	// milliseconds while the host fills it, and the link with it: 4 KiB
	// faults cost about a microsecond each and never stall.
	m.buf = buf
	return m, nil
}

// unmap releases the memory (to the host's heap, zeroed, if it came from there);
// nothing may touch it afterwards.
func (m *memory) unmap() error {
	if m.heap != nil {
		m.heap.give(m.base, m.pages())
	} else if err := unix.Munmap(m.buf); err != nil {
		return fmt.Errorf("munmap guest memory: %w", err)
	}
	m.buf = nil
	return nil
}

// pages returns the size of the gfn space.
func (m *memory) pages() uint64 { return uint64(len(m.p2m)) }

// state returns the p2m type of g.
func (m *memory) state(g hypervisor.GFN) uint32 { return m.p2m[g].Load() }

// page returns the memory of g.
func (m *memory) page(g hypervisor.GFN) []byte {
	off := uint64(g) * hypervisor.PageSize
	return m.buf[off : off+hypervisor.PageSize : off+hypervisor.PageSize]
}

// cas moves g from one state to another, keeping the counters in step.
func (m *memory) cas(g hypervisor.GFN, from, to uint32) bool {
	if !m.p2m[g].CompareAndSwap(from, to) {
		return false
	}
	count := func(st uint32, n int64) {
		if st != stUnpopulated {
			m.populated.Add(n)
		}
		if hasFrame(st) {
			m.frames.Add(n)
		}
		if pagedOut(st) {
			m.paged.Add(n)
		}
		if inPaging(st) {
			m.paging.Add(n)
		}
	}
	count(from, -1)
	count(to, 1)
	return true
}

// drop discards g's content: its page reads as zero afterwards. Resident
// memory is zeroed and stays resident, as a frame Xen takes back goes to
// its heap; a mapping of the domain's own gives the page back to the
// kernel, whose next touch faults a zero page in.
func (m *memory) drop(g hypervisor.GFN) {
	p := m.page(g)
	if m.heap != nil {
		clear(p)
		return
	}
	if err := unix.Madvise(p, unix.MADV_DONTNEED); err != nil {
		clear(p)
	}
}

// markDirty records a write to g if log-dirty is on. Callers mark after
// writing, so a clean between the write and the mark reports the page in the
// next round rather than losing it.
func (m *memory) markDirty(g hypervisor.GFN) {
	if l := m.dirty.Load(); l != nil {
		l.mark(g)
	}
}

// setEvictFail records that a guest access cancelled g's nomination.
func (m *memory) setEvictFail(g hypervisor.GFN, on bool) {
	w, bit := &m.evictFail[g/64], uint64(1)<<(g%64)
	if on {
		w.Or(bit)
	} else {
		w.And(^bit)
	}
}

// evictFailed reports whether g's nomination was cancelled by an access.
func (m *memory) evictFailed(g hypervisor.GFN) bool {
	return m.evictFail[g/64].Load()&(1<<(g%64)) != 0
}

var zeroPage [hypervisor.PageSize]byte

// isZero reports whether p, a whole page, holds only zero bytes.
func isZero(p []byte) bool { return bytes.Equal(p, zeroPage[:]) }
