package xenmig

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/xenmig/xenmig/xenmig/internal/wire"
)

// Mode is how memory moves.
type Mode string

// Migration modes.
const (
	// PreCopy copies memory in rounds while the guest runs, then pauses it
	// to copy the rest (what `xl migrate` does). Needs no mem_paging.
	PreCopy Mode = "precopy"
	// PostCopy sends the vCPU state first and resumes the guest on the
	// destination at once; memory follows, pushed and fetched on demand.
	PostCopy Mode = "postcopy"
	// Hybrid runs pre-copy rounds, then switches to post-copy for what is
	// still dirty.
	Hybrid Mode = "hybrid"
)

// Push is the order in which the sender pushes pages after the switchover.
type Push string

// Push orders.
const (
	// PushDemand sends pages only when the guest faults on them; the rest
	// follows in order once the guest has gone DemandIdle without a fault,
	// or DemandMax after the switchover at the latest: a busy guest never
	// stops faulting, and demand paging alone would never complete.
	PushDemand Push = "demand"
	// PushSequential pushes in ascending gfn order.
	PushSequential Push = "sequential"
	// PushPrepaging pushes outward from the most recent faulting gfns
	// (bubbling, Hines et al. 2009), both directions, Pivots at a time.
	PushPrepaging Push = "prepaging"
	// PushWorkingSet (hybrid only) pushes first the pages the pre-copy
	// rounds saw dirty, hottest first, then bubbles like PushPrepaging.
	PushWorkingSet Push = "workingset"
)

// Plan is what a migration will do: deterministic choices, no I/O. The
// sender carries it out; the receiver learns the parts it needs.
type Plan struct {
	Mode Mode
	Push Push
	// Pivots is how many recent faults the pre-paging bubbles grow around.
	Pivots int
	// BatchPages is the number of pages in one bulk record.
	BatchPages int
	// Streams is how many TCP connections carry pages (main and bulk ones,
	// as QEMU's multifd): the push and the pre-copy rounds go on all of
	// them in parallel, and the receiver installs from each in parallel.
	// 0 chooses from the CPU count and the bandwidth limit (AutoStreams).
	Streams int
	// Bandwidth limits the bytes per second the sender puts on the wire
	// (both channels together); 0 means no limit.
	Bandwidth int64
	// PrecopyMaxRounds, PrecopyDirtyThreshold and PrecopyMaxFactor end
	// pre-copy: after that many rounds, once fewer pages than the
	// threshold are dirty, or once more than factor x guest memory was sent.
	PrecopyMaxRounds      int
	PrecopyDirtyThreshold int
	PrecopyMaxFactor      float64
	// HybridRounds is the number of pre-copy rounds before a hybrid switch;
	// 0 switches when the dirty set stops shrinking (at most PrecopyMaxRounds).
	HybridRounds int
	// EarlyPush (post-copy) sends pages while the destination prepares:
	// those that arrive before the switchover are installed there, not
	// paged out, so the preparation overlaps the transfer. Pages the guest
	// writes again before the switchover cross twice.
	EarlyPush bool
	// DemandIdle is how long demand-only paging waits without a fault
	// before it sends what is left in order; DemandMax bounds the whole
	// demand-only phase.
	DemandIdle, DemandMax time.Duration
	// Balloon asks the guest's self-ballooning agent to squeeze before the
	// copy, waiting at most BalloonWait for its answer.
	Balloon     bool
	BalloonWait time.Duration
	// ReconnectTimeout is how long the two sides try to reopen a session
	// whose connections broke after the switchover before they give up,
	// the domain paused on the destination (0: no reconnection).
	ReconnectTimeout time.Duration
	// SuspendTimeout is how long the guest has to suspend itself when asked
	// (libxl waits 60 s); a guest that does not is left running.
	SuspendTimeout time.Duration
	// ThroughputSample is how long the sender watches the guest's
	// throughput before it starts, where the backend can see it (0: not at
	// all). It is not part of the migration's measured time.
	ThroughputSample time.Duration
	// ReportGuest asks the receiver to wait until a simulated guest has run
	// to its end and report its memory digest.
	ReportGuest bool
}

// DefaultPlan is a post-copy migration with pre-paging, as the paper found best.
func DefaultPlan() Plan {
	return Plan{
		Mode:                  PostCopy,
		Push:                  PushPrepaging,
		Pivots:                7,
		BatchPages:            64,
		PrecopyMaxRounds:      5,
		PrecopyDirtyThreshold: 50,
		PrecopyMaxFactor:      3,
		HybridRounds:          2,
		EarlyPush:             true,
		DemandIdle:            time.Second,
		DemandMax:             10 * time.Second,
		BalloonWait:           10 * time.Second,
		ReconnectTimeout:      time.Minute,
		SuspendTimeout:        time.Minute,
		ThroughputSample:      250 * time.Millisecond,
	}
}

// ErrBadPlan is wrapped by Validate's errors.
var ErrBadPlan = errors.New("invalid migration plan")

// Validate checks that the plan can be carried out.
func (p Plan) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadPlan, fmt.Sprintf(format, args...))
	}
	switch p.Mode {
	case PreCopy, PostCopy, Hybrid:
	default:
		return bad("mode %q: want precopy, postcopy or hybrid", p.Mode)
	}
	switch p.Push {
	case PushDemand, PushSequential, PushPrepaging:
	case PushWorkingSet:
		if p.Mode != Hybrid {
			return bad("push order workingset needs mode hybrid, not %s", p.Mode)
		}
	default:
		return bad("push order %q: want demand, sequential, prepaging or workingset", p.Push)
	}
	if p.Pivots < 1 || p.Pivots > 64 {
		return bad("pivots %d: want 1..64", p.Pivots)
	}
	if p.BatchPages < 1 || p.BatchPages > 4096 {
		return bad("batch pages %d: want 1..4096", p.BatchPages)
	}
	if p.Streams < 0 || p.Streams > maxStreams {
		return bad("streams %d: want 1..%d, or 0 to choose from the CPUs and the link", p.Streams, maxStreams)
	}
	if p.Bandwidth < 0 {
		return bad("bandwidth %d: must not be negative", p.Bandwidth)
	}
	if p.SuspendTimeout <= 0 {
		return bad("suspend timeout %v: must be positive", p.SuspendTimeout)
	}
	if p.Mode != PostCopy && (p.PrecopyMaxRounds < 1 || p.PrecopyMaxFactor <= 0) {
		return bad("pre-copy needs at least one round and a positive data factor")
	}
	return nil
}

// maxStreams bounds Plan.Streams (the protocol's limit).
const maxStreams = wire.MaxStreams

// AutoStreams is the number of page streams a plan without Streams uses: one
// per CPU, up to four, since a stream costs a core at line rate on a fast
// link; one when the plan limits the bandwidth below 2.4 Gbit/s, which one
// stream carries with a small part of a core.
func AutoStreams(bandwidth int64) int {
	if bandwidth > 0 && bandwidth < oneStreamRate {
		return 1
	}
	return min(runtime.NumCPU(), 4)
}

// oneStreamRate (bytes per second, 2.4 Gbit/s) is a rate one page stream
// carries with a small part of a core.
const oneStreamRate = 300e6

// streams returns the page streams the plan uses.
func (p Plan) streams() int {
	if p.Streams > 0 {
		return p.Streams
	}
	return AutoStreams(p.Bandwidth)
}

// usesPaging reports whether the destination runs the guest before all its
// memory has arrived, so it needs mem_paging.
func (p Plan) usesPaging() bool { return p.Mode != PreCopy }
