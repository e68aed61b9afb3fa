package sim

import (
	"fmt"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
)

// ctxMagic starts every simulated HVM context blob.
const ctxMagic = "XMSIMCPU"

// ctxVersion is the version of the context layout.
const ctxVersion = 2

// HVM parameters the simulator reports (xen/hvm/params.h), as the saver's
// list carries them.
const (
	hvmParamStorePFN      = 1
	hvmParamTimerMode     = 10
	hvmParamConsolePFN    = 17
	hvmParamPagingRingPFN = 27
)

// SaveCPU returns the paused domain's vCPU context: in HVMContext, every
// vCPU's workload state (PRNG, counters, accumulator, allocation bitmap,
// program state). ErrInvalid if the domain is not paused or has no context;
// ErrBusy if a vCPU is blocked inside a step on a paging fault rather than
// parked at a step boundary.
func (h *Host) SaveCPU(id hypervisor.DomID) (hypervisor.CPUState, error) {
	d, err := h.acquire(id)
	if err != nil {
		return hypervisor.CPUState{}, fmt.Errorf("save cpu: %w", err)
	}
	defer d.release()
	d.guestMu.Lock()
	defer d.guestMu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.parkedLocked("save cpu"); err != nil {
		return hypervisor.CPUState{}, err
	}
	e := &encoder{}
	e.b = append(e.b, ctxMagic...)
	e.u32(ctxVersion)
	e.u64(d.instance)
	var suspended uint32
	if d.suspend == suspendDone {
		suspended = 1 // the vCPUs stopped in the guest's suspend hypercall
	}
	e.u32(suspended)
	e.bytes([]byte(d.spec.Workload.Kind))
	e.u32(uint32(len(d.vcpus)))
	for _, v := range d.vcpus {
		ve := &encoder{}
		ve.u64(v.rng)
		ve.u64(v.steps.Load())
		ve.u64(v.ops.Load())
		ve.u64(v.acc)
		ve.u64s(v.alloc)
		v.prog.encode(ve)
		e.bytes(ve.b)
	}
	tsc := d.tsc
	tsc.ElapsedNsec += uint64(time.Since(d.created))
	return hypervisor.CPUState{HVMContext: e.b, Params: d.paramsLocked(), TSC: tsc}, nil
}

// RestoreCPU loads a context saved by SaveCPU, from this host or another,
// into a paused domain of the same guest spec. A shell can be unpaused once
// it has one.
func (h *Host) RestoreCPU(id hypervisor.DomID, s hypervisor.CPUState) error {
	d, err := h.acquire(id)
	if err != nil {
		return fmt.Errorf("restore cpu: %w", err)
	}
	defer d.release()
	d.guestMu.Lock()
	defer d.guestMu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pauseCount == 0 || d.crashed {
		return fmt.Errorf("restore cpu of domain %d: not paused: %w", id, hypervisor.ErrInvalid)
	}
	if d.hasContext {
		if err := d.parkedLocked("restore cpu"); err != nil {
			return err
		}
	}
	dec := &decoder{b: s.HVMContext}
	dec.check(string(dec.take(len(ctxMagic))) == ctxMagic, "bad magic")
	dec.check(dec.u32() == ctxVersion, "unknown context version")
	instance, suspended := dec.u64(), dec.u32() == 1
	kind := Kind(dec.bytes())
	dec.check(kind == d.spec.Workload.Kind, "context of workload %q, domain runs %q", kind, d.spec.Workload.Kind)
	n := dec.u32()
	dec.check(int(n) == len(d.vcpus), "context of %d vCPUs, domain has %d", n, len(d.vcpus))
	type saved struct {
		rng, steps, ops, acc uint64
		alloc                []uint64
		prog                 program
	}
	var all []saved
	for i := 0; dec.err == nil && i < len(d.vcpus); i++ {
		v := d.vcpus[i]
		vd := &decoder{b: dec.bytes()}
		sv := saved{rng: vd.u64(), steps: vd.u64(), ops: vd.u64(), acc: vd.u64(), alloc: vd.u64s()}
		vd.check(len(sv.alloc) == (len(v.arena.pages)+63)/64, "vCPU %d: allocation bitmap of %d words", i, len(sv.alloc))
		if vd.err == nil {
			sv.prog = programs[kind](v)
			sv.prog.decode(vd)
		}
		vd.check(len(vd.b) == 0, "vCPU %d: %d trailing bytes", i, len(vd.b))
		if vd.err != nil {
			dec.err = fmt.Errorf("vCPU %d: %w", i, vd.err)
		}
		all = append(all, sv)
	}
	dec.check(len(dec.b) == 0, "%d trailing bytes", len(dec.b))
	if dec.err != nil {
		return fmt.Errorf("restore cpu of domain %d: %v: %w", id, dec.err, hypervisor.ErrInvalid)
	}
	d.inUse = uint64(len(d.lay.static))
	for i, v := range d.vcpus {
		sv := all[i]
		v.rng, v.acc, v.alloc, v.prog = sv.rng, sv.acc, sv.alloc, sv.prog
		v.steps.Store(sv.steps)
		v.ops.Store(sv.ops)
		d.setDone(v, false)
		d.inUse += v.allocated()
	}
	for k, x := range s.Params {
		d.params[k] = x
	}
	d.tsc = s.TSC
	d.created = time.Now()
	d.hasContext = true
	// Another domain's context is only resumable here if it was saved
	// suspended: the guest then takes its resume-in-a-new-domain path.
	d.unsuspended = instance != d.instance && !suspended
	d.resumedNew = instance != d.instance && suspended
	d.updateGate()
	d.runCond.Broadcast()
	return nil
}

// parkedLocked checks that d is paused with every vCPU parked at a step
// boundary; d.mu must be held.
func (d *domain) parkedLocked(op string) error {
	switch {
	case d.crashed:
		return fmt.Errorf("%s of domain %d: crashed: %w", op, d.id, hypervisor.ErrInvalid)
	case d.pauseCount == 0 && d.suspend != suspendDone:
		return fmt.Errorf("%s of domain %d: neither paused nor suspended: %w", op, d.id, hypervisor.ErrInvalid)
	case !d.hasContext:
		return fmt.Errorf("%s of domain %d: no vCPU context: %w", op, d.id, hypervisor.ErrInvalid)
	}
	for _, v := range d.vcpus {
		if v.where != atBoundary {
			return fmt.Errorf("%s of domain %d: vCPU %d is blocked inside a step: %w", op, d.id, v.id, hypervisor.ErrBusy)
		}
	}
	return nil
}

// paramsLocked returns the HVM parameters the saver carries; d.mu must be
// held.
func (d *domain) paramsLocked() map[uint32]uint64 {
	top := uint64(d.mem.pages())
	p := map[uint32]uint64{
		hvmParamStorePFN:      uint64(d.lay.storePFN()),
		hvmParamConsolePFN:    uint64(d.lay.consolePFN()),
		hvmParamPagingRingPFN: top - 3,
		hvmParamTimerMode:     1,
	}
	for k, x := range d.params {
		p[k] = x
	}
	return p
}
