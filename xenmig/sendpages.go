package xenmig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenmig/internal/wire"
)

// phasePrecopy names the pages sent while the guest still runs here.
const phasePrecopy = "precopy"

// sendSet sends every gfn of set in ascending order on the main channel.
func (s *sender) sendSet(ctx context.Context, set *hypervisor.Bitmap, flags wire.PageFlags, phase string) error {
	sc := newScratch(s.plan.BatchPages)
	batch := make([]hypervisor.GFN, 0, s.plan.BatchPages)
	var err error
	set.ForEach(func(g hypervisor.GFN) {
		if err != nil {
			return
		}
		if batch = append(batch, g); len(batch) == cap(batch) {
			err = s.sendPages(ctx, s.main, sc, batch, flags, phase)
			batch = batch[:0]
		}
	})
	if err == nil && len(batch) > 0 {
		err = s.sendPages(ctx, s.main, sc, batch, flags, phase)
	}
	return err
}

// scratch is one sending goroutine's buffers.
type scratch struct {
	pages []byte
	hdr   []byte
	zero  []bool
	wrote int // bytes of the last record sent
}

func newScratch(batch int) *scratch {
	return &scratch{pages: make([]byte, batch*hypervisor.PageSize), zero: make([]bool, batch)}
}

var zeroPage [hypervisor.PageSize]byte

// sendPages reads gfns from the domain and sends them as one Pages record on
// c, zero pages as flags only.
func (s *sender) sendPages(ctx context.Context, c *conn, sc *scratch, gfns []hypervisor.GFN, flags wire.PageFlags, phase string) error {
	buf := sc.pages[:len(gfns)*hypervisor.PageSize]
	for {
		err := s.hv.ReadPages(s.dom, gfns, buf)
		if err == nil {
			break
		}
		var pe *hypervisor.PageError
		if phase != phasePrecopy || !errors.As(err, &pe) || !errors.Is(pe.Err, hypervisor.ErrNotPopulated) {
			return fmt.Errorf("read pages: %w", err)
		}
		// The guest runs: its balloon gave pe.GFN back since the set was
		// made. Giving it back dirtied it, so a later round or the layout
		// at the pause settles it; the rest of the batch goes now.
		n := len(gfns)
		if gfns = slices.DeleteFunc(gfns, func(g hypervisor.GFN) bool { return g == pe.GFN }); len(gfns) == n {
			return fmt.Errorf("read pages: %w", err) // not one of ours: do not loop
		}
		if len(gfns) == 0 {
			return nil
		}
		buf = buf[:len(gfns)*hypervisor.PageSize]
	}
	zero := sc.zero[:len(gfns)]
	data := buf[:0]
	for i := range gfns {
		p := buf[i*hypervisor.PageSize : (i+1)*hypervisor.PageSize]
		zero[i] = bytes.Equal(p, zeroPage[:])
		if !zero[i] {
			data = append(data, p...) // compacts in place: data never overtakes p
			if s.ownedSeen.claim(gfns[i]) {
				s.owned.Add(1)
			}
		}
	}
	sc.hdr = wire.AppendPagesHeader(sc.hdr[:0], flags, gfns, zero)
	if s.limiter != nil {
		if err := s.limiter.WaitN(ctx, min(len(sc.hdr)+len(data)+wire.HeaderSize, s.limiter.Burst())); err != nil {
			return err
		}
	}
	if err := c.w.Write(wire.TypePages, sc.hdr, data); err != nil {
		return fmt.Errorf("send %s pages: %w", phase, err)
	}
	sc.wrote = len(sc.hdr) + len(data) + wire.HeaderSize
	n := uint64(len(data) / hypervisor.PageSize)
	s.counter.add(&s.counter.phasePages, phase, n)
	s.counter.add(&s.counter.phaseBytes, phase, uint64(sc.wrote))
	s.counter.zero.Add(uint64(len(gfns)) - n)
	s.progress.done.Add(uint64(len(gfns)))
	return nil
}
