package sim

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"

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
		d.uuid = newUUID()
		d.cpuPolicy = h.cpuFeatures
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
// non-hole gfn populated and no vCPU context: it cannot be unpaused until
// RestoreCPU loads one. Like the domain `xl create -p` leaves, it is booted
// to its entry point: its boot pages and an initrd after them hold the
// builder's bytes, not zeros. It keeps cfg's UUID and CPU policy; a policy
// with features this host lacks is refused (ErrIncompatible).
func (h *Host) CreateShell(cfg hypervisor.DomainConfig) (hypervisor.DomID, error) {
	spec, err := specFromConfig(cfg)
	if err != nil {
		return 0, fmt.Errorf("create shell: %w", err)
	}
	policy := h.cpuFeatures
	if len(cfg.CPUPolicy) == 8 {
		policy = binary.LittleEndian.Uint64(cfg.CPUPolicy)
	} else if len(cfg.CPUPolicy) != 0 {
		return 0, fmt.Errorf("create shell %q: CPU policy of %d bytes: %w", spec.Name, len(cfg.CPUPolicy), hypervisor.ErrInvalid)
	}
	if missing := policy &^ h.cpuFeatures; missing != 0 {
		return 0, fmt.Errorf("create shell %q: the guest uses CPU features %#x this host lacks: %w", spec.Name, missing, hypervisor.ErrIncompatible)
	}
	return h.add(spec.Name, func(id hypervisor.DomID) (*domain, error) {
		d, err := h.newDomain(id, spec)
		if err != nil {
			return nil, err
		}
		d.uuid, d.cpuPolicy = cfg.UUID, policy
		if d.uuid == "" {
			d.uuid = newUUID()
		}
		for _, g := range d.lay.shellPages() {
			fillBoot(d.mem.page(g), spec.Seed^shellSeed, g)
		}
		if err := d.start(); err != nil {
			_ = d.mem.unmap() // report the start failure, not this one
			return nil, err
		}
		d.log.Info("shell created")
		return d, nil
	})
}

// shellSeed makes a shell's builder bytes differ from any guest's content.
const shellSeed = 0x5348454c4c

// newUUID returns a random UUID (version 4), as libxl gives a new domain.
func newUUID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// fillBoot writes gfn g's deterministic, non-zero boot content.
func fillBoot(p []byte, seed uint64, g hypervisor.GFN) {
	x := mix64(seed ^ uint64(g)*0x9e3779b97f4a7c15)
	for i := 0; i < len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], splitmix(&x)|1)
	}
}
