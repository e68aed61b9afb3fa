package sim

import (
	"fmt"
	"sync"

	"github.com/xenmig/xenmig/hypervisor"
)

// probeOp is one access queued with Host.Touch.
type probeOp struct {
	gfn   hypervisor.GFN
	write bool
}

// probeQueue holds a vCPU's pending probe accesses. It is test
// instrumentation, not vCPU context.
type probeQueue struct {
	mu  sync.Mutex
	ops []probeOp
}

func (q *probeQueue) push(op probeOp) {
	q.mu.Lock()
	q.ops = append(q.ops, op)
	q.mu.Unlock()
}

func (q *probeQueue) pop() (probeOp, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.ops) == 0 {
		return probeOp{}, false
	}
	op := q.ops[0]
	q.ops = q.ops[1:]
	return op, true
}

// probe performs, one per step, the accesses tests queue with Host.Touch;
// with none queued the vCPU idles. Ops counts accesses.
type probe struct{}

func newProbe(*vcpu) program { return probe{} }

func (probe) step(v *vcpu) bool {
	op, ok := v.probes.pop()
	if !ok {
		return false
	}
	if op.write {
		v.write64(op.gfn, 0, v.rand())
	} else {
		_ = v.read64(op.gfn, 0)
	}
	v.ops.Add(1)
	return true
}

func (probe) encode(*encoder) {}
func (probe) decode(*decoder) {}

// Touch makes vCPU vcpu of a domain running the Probe workload access gfn
// (writing word 0 if write is set) as its next step. The access follows
// every rule of a guest access: it faults on a paged gfn, cancels a
// nomination, marks the page dirty. Touch returns once the access is queued;
// Progress.Steps counts the accesses performed.
func (h *Host) Touch(id hypervisor.DomID, vcpu int, gfn hypervisor.GFN, write bool) error {
	d, err := h.acquire(id)
	if err != nil {
		return fmt.Errorf("touch: %w", err)
	}
	defer d.release()
	switch {
	case d.spec.Workload.Kind != Probe:
		return fmt.Errorf("touch domain %d: workload is %q, not %q: %w", id, d.spec.Workload.Kind, Probe, hypervisor.ErrInvalid)
	case vcpu < 0 || vcpu >= len(d.vcpus):
		return fmt.Errorf("touch domain %d: no vCPU %d: %w", id, vcpu, hypervisor.ErrInvalid)
	case uint64(gfn) >= d.mem.pages():
		return &hypervisor.PageError{Op: "touch", GFN: gfn, Err: hypervisor.ErrInvalid}
	}
	v := d.vcpus[vcpu]
	v.probes.push(probeOp{gfn: gfn, write: write})
	v.wake()
	return nil
}
