package sim

import (
	"encoding/binary"
	"fmt"

	"github.com/xenmig/xenmig/hypervisor"
)

// CreateDomain builds a guest from spec with its boot memory content and
// vCPU state, paused, as `xl create -p` leaves it; Unpause starts its vCPUs.
func (h *Host) CreateDomain(spec GuestSpec) (hypervisor.DomID, error) {
	if err := spec.validate(); err != nil {
		return 0, fmt.Errorf("create domain: %w", err)
	}
	return h.add(spec.Name, func(id hypervisor.DomID) (*domain, error) {
		d, err := h.newDomain(id, spec)
		if err != nil {
			return nil, err
		}
		for _, g := range d.lay.bootPages() {
			fillBoot(d.mem.page(g), spec.Seed, g)
		}
		for _, v := range d.vcpus {
			v.boot()
			d.inUse += v.allocated()
		}
		d.inUse += uint64(len(d.lay.static))
		d.hasContext = true
		d.updateGate()
		if err := d.start(); err != nil {
			_ = d.mem.unmap() // report the start failure, not this one
			return nil, err
		}
		d.log.WithField("kind", spec.Workload.Kind).Info("domain created")
		return d, nil
	})
}

// CreateShell creates a paused domain from cfg (Backend "sim") with every
// non-hole gfn populated and zero and no vCPU context: it cannot be unpaused
// until RestoreCPU loads one.
func (h *Host) CreateShell(cfg hypervisor.DomainConfig) (hypervisor.DomID, error) {
	spec, err := specFromConfig(cfg)
	if err != nil {
		return 0, fmt.Errorf("create shell: %w", err)
	}
	return h.add(spec.Name, func(id hypervisor.DomID) (*domain, error) {
		d, err := h.newDomain(id, spec)
		if err != nil {
			return nil, err
		}
		if err := d.start(); err != nil {
			_ = d.mem.unmap() // report the start failure, not this one
			return nil, err
		}
		d.log.Info("shell created")
		return d, nil
	})
}

// fillBoot writes gfn g's deterministic, non-zero boot content.
func fillBoot(p []byte, seed uint64, g hypervisor.GFN) {
	x := mix64(seed ^ uint64(g)*0x9e3779b97f4a7c15)
	for i := 0; i < len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], splitmix(&x)|1)
	}
}
