package sim

import (
	"fmt"

	"github.com/xenmig/xenmig/hypervisor"
)

// MaxGFN returns the highest gfn of id's physmap.
func (h *Host) MaxGFN(id hypervisor.DomID) (hypervisor.GFN, error) {
	d, err := h.acquire(id)
	if err != nil {
		return 0, fmt.Errorf("max gfn: %w", err)
	}
	defer d.release()
	return hypervisor.GFN(d.mem.pages() - 1), nil
}

// Populated returns the gfns backed by memory, paged-out ones included.
func (h *Host) Populated(id hypervisor.DomID) (*hypervisor.Bitmap, error) {
	d, err := h.acquire(id)
	if err != nil {
		return nil, fmt.Errorf("populated: %w", err)
	}
	defer d.release()
	b := hypervisor.NewBitmap(d.mem.pages())
	for g := range d.mem.p2m {
		if d.mem.p2m[g].Load() != stUnpopulated {
			b.Set(hypervisor.GFN(g))
		}
	}
	return b, nil
}

// checkBatch validates a batch of gfns and its buffer.
func checkBatch(d *domain, op string, gfns []hypervisor.GFN, buf []byte) error {
	if len(buf) < len(gfns)*hypervisor.PageSize {
		return fmt.Errorf("%s %d pages of domain %d: buffer of %d bytes: %w", op, len(gfns), d.id, len(buf), hypervisor.ErrInvalid)
	}
	for _, g := range gfns {
		if err := checkGFN(d, op, g); err != nil {
			return err
		}
	}
	return nil
}

// mapForeign resolves g for a foreign mapping, as a dom0 mapping of a guest
// page does: a gfn with a frame maps; an evicted one fails with ErrPaged
// (raising a foreign paging request); an unpopulated one fails with
// ErrNotPopulated.
func (d *domain) mapForeign(op string, g hypervisor.GFN) ([]byte, error) {
	switch st := d.mem.state(g); {
	case hasFrame(st):
		return d.mem.page(g), nil
	case st == stPaged:
		d.foreignFault(g)
		return nil, &hypervisor.PageError{Op: op, GFN: g, Err: hypervisor.ErrPaged}
	case st == stPagingIn:
		return nil, &hypervisor.PageError{Op: op, GFN: g, Err: hypervisor.ErrPaged}
	default:
		return nil, &hypervisor.PageError{Op: op, GFN: g, Err: hypervisor.ErrNotPopulated}
	}
}

// ReadPages copies the pages gfns[i] into dst[i*PageSize:]. Reading an
// evicted gfn fails with a *PageError wrapping ErrPaged and posts a
// FlagForeign request, pausing nothing.
func (h *Host) ReadPages(id hypervisor.DomID, gfns []hypervisor.GFN, dst []byte) error {
	d, err := h.acquire(id)
	if err != nil {
		return fmt.Errorf("read pages: %w", err)
	}
	defer d.release()
	defer d.lanes.mapping.pay(h.costs.Read.of(len(gfns)))()
	if err := checkBatch(d, "read", gfns, dst); err != nil {
		return err
	}
	for i, g := range gfns {
		p, err := d.mapForeign("read", g)
		if err != nil {
			return err
		}
		copy(dst[i*hypervisor.PageSize:(i+1)*hypervisor.PageSize], p)
	}
	return nil
}

// WritePages copies src[i*PageSize:] into the pages gfns[i]. The pages are
// marked dirty, as Xen does when a writable foreign mapping is torn down.
func (h *Host) WritePages(id hypervisor.DomID, gfns []hypervisor.GFN, src []byte) error {
	d, err := h.acquire(id)
	if err != nil {
		return fmt.Errorf("write pages: %w", err)
	}
	defer d.release()
	defer d.lanes.mapping.pay(h.costs.Write.of(len(gfns)))()
	if err := checkBatch(d, "write", gfns, src); err != nil {
		return err
	}
	for i, g := range gfns {
		p, err := d.mapForeign("write", g)
		if err != nil {
			return err
		}
		// A zero page over a zero page changes nothing, and copying it
		// would give the host memory for it (as Load spares it).
		if s := src[i*hypervisor.PageSize : (i+1)*hypervisor.PageSize]; !isZero(s) || !isZero(p) {
			copy(p, s)
		}
		d.mem.markDirty(g)
	}
	return nil
}

// Populate backs gfns with fresh zeroed memory; a gfn that is RAM already is
// zeroed. ErrBusy for a gfn in the paging life cycle (the
// pager owns it), ErrInvalid for a hole.
func (h *Host) Populate(id hypervisor.DomID, gfns []hypervisor.GFN) error {
	d, err := h.acquire(id)
	if err != nil {
		return fmt.Errorf("populate: %w", err)
	}
	defer d.release()
	defer d.lanes.p2m.pay(h.costs.Populate.of(len(gfns)))()
	for _, g := range gfns {
		if err := d.populate(g); err != nil {
			return err
		}
	}
	return nil
}

// populate backs g with a zero page.
func (d *domain) populate(g hypervisor.GFN) error {
	if err := checkGFN(d, "populate", g); err != nil {
		return err
	}
	if d.lay.holes.Test(g) {
		return &hypervisor.PageError{Op: "populate", GFN: g, Err: fmt.Errorf("in a hole: %w", hypervisor.ErrInvalid)}
	}
	for {
		switch st := d.mem.state(g); st {
		case stUnpopulated:
			if !d.mem.cas(g, stUnpopulated, stRAM) {
				continue
			}
		case stRAM:
			clear(d.mem.page(g))
		default:
			return &hypervisor.PageError{Op: "populate", GFN: g, Err: fmt.Errorf("owned by the pager: %w", hypervisor.ErrBusy)}
		}
		d.mem.markDirty(g)
		return nil
	}
}

// Depopulate releases the memory behind gfns, as a balloon driver's
// decrease_reservation does. A gfn in the paging life cycle is released too,
// and the pager told with a PagingDropPage request (if a ring slot is free).
// ErrNotPopulated for a gfn without memory.
func (h *Host) Depopulate(id hypervisor.DomID, gfns []hypervisor.GFN) error {
	d, err := h.acquire(id)
	if err != nil {
		return fmt.Errorf("depopulate: %w", err)
	}
	defer d.release()
	defer d.lanes.p2m.pay(h.costs.Depopulate.of(len(gfns)))()
	for _, g := range gfns {
		if err := d.depopulate(g); err != nil {
			return err
		}
	}
	return nil
}

// depopulate releases g's memory.
func (d *domain) depopulate(g hypervisor.GFN) error {
	if err := checkGFN(d, "depopulate", g); err != nil {
		return err
	}
	for {
		st := d.mem.state(g)
		if st == stUnpopulated {
			return &hypervisor.PageError{Op: "depopulate", GFN: g, Err: hypervisor.ErrNotPopulated}
		}
		if !d.mem.cas(g, st, stUnpopulated) {
			continue
		}
		if st == stRAM {
			d.quiesce(g)
		}
		if hasFrame(st) {
			d.mem.drop(g)
		}
		if inPaging(st) {
			d.dropNotice(g, st)
		}
		d.mem.setEvictFail(g, false)
		d.mem.markDirty(g)
		return nil
	}
}
