package xenmig

import (
	"context"
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenmig/internal/wire"
)

// precopy runs rounds over the dirty log until it converges or a limit is
// reached, and returns the gfns dirtied in the last round (not yet resent).
func (s *sender) precopy(ctx context.Context, heat []uint8) (*hypervisor.Bitmap, int, error) {
	flags := wire.PageFlags(0)
	if s.plan.Mode == Hybrid {
		flags = wire.PagesStage
	}
	limitBytes := uint64(s.plan.PrecopyMaxFactor * float64(s.populated.Count()) * hypervisor.PageSize)
	toSend := s.populated
	maxRounds := s.plan.PrecopyMaxRounds
	if s.plan.Mode == Hybrid && s.plan.HybridRounds > 0 {
		maxRounds = s.plan.HybridRounds
	}
	prev := ^uint64(0)
	for round := 1; ; round++ {
		s.progress.set("precopy", round, toSend.Count())
		if err := s.sendSet(ctx, toSend, flags, phasePrecopy); err != nil {
			return nil, round, err
		}
		dirty, err := s.hv.DirtyLog(s.dom, true)
		if err != nil {
			return nil, round, fmt.Errorf("pre-copy round %d: dirty log: %w", round, err)
		}
		// Only what is populated now can be read: the guest's balloon may
		// have moved since the layout was read. A gfn it gives back and
		// takes again is dirtied by that, so it comes round again.
		pop, err := s.hv.Populated(s.dom)
		if err != nil {
			return nil, round, fmt.Errorf("pre-copy round %d: layout: %w", round, err)
		}
		dirty.And(pop)
		n := dirty.Count()
		if heat != nil {
			dirty.ForEach(func(g hypervisor.GFN) {
				if heat[g] < 255 {
					heat[g]++
				}
			})
		}
		s.log.WithFields(logrus.Fields{"round": round, "sent": toSend.Count(), "dirty": n}).Info("pre-copy round")
		sent := s.counter.snapshot(&s.counter.phaseBytes)[phasePrecopy]
		switch {
		case n <= uint64(s.plan.PrecopyDirtyThreshold),
			round >= maxRounds,
			sent >= limitBytes,
			s.plan.Mode == Hybrid && s.plan.HybridRounds == 0 && n >= prev:
			return dirty, round, nil
		}
		prev = n
		toSend = dirty
	}
}
