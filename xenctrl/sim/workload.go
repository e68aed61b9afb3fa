package sim

// program is a vCPU's workload: a deterministic state machine advanced one
// step at a time. Its state is part of the vCPU context.
//
// A step must follow the determinism rules of the package documentation:
// write only static-free pages the vCPU owns, fold into the context only
// values read from static or own pages, derive every written value from the
// context, and keep the work of one step small (steps are the only points
// where a vCPU pauses).
type program interface {
	// step runs one step and reports whether it did any work; false parks
	// the vCPU until it is woken.
	step(v *vcpu) bool
	// encode appends the program's state.
	encode(e *encoder)
	// decode loads state written by encode, recording an error in d.
	decode(d *decoder)
}

// programs builds a program in its boot state for a vCPU whose arena and
// spec are set. Building must not touch guest memory.
var programs = map[Kind]func(v *vcpu) program{
	Idle:          newIdle,
	Stress:        newStress,
	KernelCompile: newKernelCompile,
	WebServer:     newWebServer,
	Quicksort:     newQuicksort,
	Probe:         newProbe,
}

// perVCPU returns a vCPU's share of a working set of total pages over n
// vCPUs, def if total is 0, clamped to [1, limit].
func perVCPU(total uint64, n int, def, limit int) int {
	w := def
	if total > 0 {
		w = int(total / uint64(n))
	}
	return max(1, min(w, limit))
}

// idle writes one word of its first page per step.
type idle struct{}

func newIdle(*vcpu) program { return idle{} }

func (idle) step(v *vcpu) bool {
	v.write64(v.arena.pages[0], int(v.steps.Load()%wordsPerPage), v.rand())
	v.ops.Add(1)
	return true
}

func (idle) encode(*encoder) {}
func (idle) decode(*decoder) {}
