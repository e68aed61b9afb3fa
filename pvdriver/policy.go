package pvdriver

import (
	"errors"
	"fmt"
)

// Params tune the self-ballooning policy. All sizes are KiB, the unit of
// the balloon driver's target_kb and of /proc/meminfo.
type Params struct {
	// ReserveKiB is the headroom kept above the demand (see Target) in normal
	// operation: room for page cache and for allocations made between two
	// ticks. The larger of ReserveKiB and ReserveFraction applies.
	ReserveKiB uint64 `toml:"reserve_kb"`
	// ReserveFraction is the headroom as a fraction of the demand
	// (0.1 = 10 %), so big guests keep proportionally more cache.
	ReserveFraction float64 `toml:"reserve_fraction"`
	// HysteresisKiB is the dead band of normal operation: while the
	// target is within this distance of the goal it is left alone, so the
	// balloon does not chase every small change of the demand. It must not
	// exceed ReserveKiB; the policy grows regardless of it whenever the
	// target has fallen below the demand.
	HysteresisKiB uint64 `toml:"hysteresis_kb"`
	// MaxShrinkKiB bounds how much one normal step gives back (0: no
	// bound), so a momentary dip in demand does not throw away the page
	// cache at once. Squeezing is never step-bounded.
	MaxShrinkKiB uint64 `toml:"max_shrink_kb"`
	// FloorKiB is the size the guest is never ballooned below, squeeze
	// included: the kernel, its slab and the agent itself must fit.
	FloorKiB uint64 `toml:"floor_kb"`
	// SqueezeReserveKiB is the headroom kept available above the demand while
	// dom0 migrates the domain: as small as is safe for the seconds a
	// migration lasts, since every KiB kept is a KiB sent over the network.
	SqueezeReserveKiB uint64 `toml:"squeeze_reserve_kb"`
}

// DefaultParams are the defaults of xenmig-balloond: 64 MiB or 10 % of
// the demand of headroom, a 16 MiB dead band, at most 256 MiB given
// back per tick, never below 128 MiB, 16 MiB of headroom when squeezed.
func DefaultParams() Params {
	return Params{
		ReserveKiB:        64 << 10,
		ReserveFraction:   0.10,
		HysteresisKiB:     16 << 10,
		MaxShrinkKiB:      256 << 10,
		FloorKiB:          128 << 10,
		SqueezeReserveKiB: 16 << 10,
	}
}

// Validate reports parameters the policy cannot honour.
func (p Params) Validate() error {
	var errs []error
	if p.ReserveFraction < 0 || p.ReserveFraction > 4 {
		errs = append(errs, fmt.Errorf("reserve_fraction %v: want 0..4", p.ReserveFraction))
	}
	if p.HysteresisKiB > p.ReserveKiB {
		errs = append(errs, fmt.Errorf("hysteresis_kb %d exceeds reserve_kb %d: the dead band would eat the headroom", p.HysteresisKiB, p.ReserveKiB))
	}
	if p.FloorKiB == 0 {
		errs = append(errs, errors.New("floor_kb is 0: a guest ballooned to nothing dies"))
	}
	return errors.Join(errs...)
}

// Inputs are what the guest measured at one tick.
type Inputs struct {
	// CommittedKiB is Committed_AS of /proc/meminfo: memory the guest's
	// processes have been promised and may touch.
	CommittedKiB uint64
	// UsedKiB is the memory the guest could not give back without
	// swapping: its current size (current_kb) less MemAvailable; 0 means
	// unknown. It counts what Committed_AS leaves out: the kernel's own
	// memory (slab, page tables, the image), tmpfs and an initramfs.
	UsedKiB uint64
	// CurrentKiB is the balloon target now in force (target_kb); 0 means
	// unknown, and any goal is then a change.
	CurrentKiB uint64
	// MaxKiB is the ceiling: the memory the toolstack gave the domain, as
	// the guest's balloon driver counts it (0: no ceiling). The guest never
	// asks for more than dom0 gave it.
	MaxKiB uint64
	// Squeeze is set while dom0 migrates the domain and asked for the
	// smallest safe size.
	Squeeze bool
}

// Decision is the policy's answer.
type Decision struct {
	// TargetKiB is the balloon target to be in force after this tick.
	TargetKiB uint64
	// Change reports whether TargetKiB differs from Inputs.CurrentKiB, that
	// is, whether the caller has to write it.
	Change bool
	// Reason says in a few words why, for logs.
	Reason string
}

// Target is the dynamic self-ballooning policy: a pure function of what the
// guest measured, so the real agent and the simulator's guest model run the
// same code.
//
// The goal is the guest's demand plus a reserve (the larger of ReserveKiB
// and ReserveFraction of the demand, or SqueezeReserveKiB when squeezing),
// raised
// to FloorKiB and capped at MaxKiB (the cap wins over the floor: the guest
// cannot have more than it was given). In normal operation the target moves
// to the goal only when it is at least HysteresisKiB away, and shrinks by at
// most MaxShrinkKiB per call (counted from MaxKiB when the target is above
// it); it moves whatever the dead band when it lies outside [floor, max] or
// below the demand. Squeezing moves straight to the goal.
//
// The demand is the larger of Committed_AS and the memory in use (UsedKiB):
// Committed_AS alone misses the kernel's memory, so a guest ballooned to it
// plus a small reserve is left with almost nothing available, and its
// drivers' allocations fail (in the Xen lab, blkfront could not rebuild its
// grants after a squeezed guest moved, and its disk stayed disconnected).
// The goal thus keeps the reserve available, not merely promised.
func Target(in Inputs, p Params) Decision {
	demand, what := in.CommittedKiB, "committed"
	if in.UsedKiB > demand {
		demand, what = in.UsedKiB, "in use"
	}
	reserve := p.ReserveKiB
	if f := uint64(p.ReserveFraction * float64(demand)); f > reserve {
		reserve = f
	}
	if in.Squeeze {
		reserve = p.SqueezeReserveKiB
	}
	goal := satAdd(demand, reserve)
	reason := what + "+reserve"
	if in.Squeeze {
		reason = "squeeze: " + what + "+squeeze reserve"
	}
	floor := p.FloorKiB
	if in.MaxKiB > 0 && floor > in.MaxKiB {
		floor = in.MaxKiB
	}
	if goal < floor {
		goal, reason = floor, "floor"
	}
	if in.MaxKiB > 0 && goal > in.MaxKiB {
		goal, reason = in.MaxKiB, "capped at max"
	}

	cur := in.CurrentKiB
	switch {
	case cur == 0:
		return Decision{TargetKiB: goal, Change: true, Reason: reason + " (target unknown)"}
	case goal == cur:
		return Decision{TargetKiB: cur, Reason: "at goal"}
	case in.Squeeze:
		return Decision{TargetKiB: goal, Change: true, Reason: reason}
	}

	outside := cur < floor || (in.MaxKiB > 0 && cur > in.MaxKiB)
	short := cur < goal && cur < demand
	if !outside && !short && absDiff(goal, cur) < p.HysteresisKiB {
		return Decision{TargetKiB: cur, Reason: fmt.Sprintf("within hysteresis of goal %d", goal)}
	}
	if goal < cur && p.MaxShrinkKiB > 0 {
		// Step from the ceiling when above it: a lowered ceiling is obeyed
		// at once, the rest of the shrink goes at the usual pace.
		base := cur
		if in.MaxKiB > 0 && base > in.MaxKiB {
			base = in.MaxKiB
		}
		if base-goal > p.MaxShrinkKiB {
			return Decision{TargetKiB: base - p.MaxShrinkKiB, Change: true, Reason: fmt.Sprintf("shrink toward %d (step-limited)", goal)}
		}
	}
	if goal > cur {
		reason = "grow: " + reason
	} else {
		reason = "shrink: " + reason
	}
	return Decision{TargetKiB: goal, Change: true, Reason: reason}
}

func satAdd(a, b uint64) uint64 {
	if s := a + b; s >= a {
		return s
	}
	return ^uint64(0)
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}
