package sim

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/xenmig/xenmig/hypervisor"
)

// Compile-time checks that Host implements the contract.
var (
	_ hypervisor.Hypervisor = (*Host)(nil)
	_ hypervisor.Inspector  = (*Host)(nil)
	_ hypervisor.Pager      = (*pager)(nil)
)

// Host is a simulated Xen host: its domains, their memory and vCPUs, and one
// xenstore. A Host is self-contained in-process state, so two Hosts (in one
// process or two) are two independent machines.
type Host struct {
	log           *logrus.Entry
	notifyLatency time.Duration
	costs         Costs // what each dom0 call costs (WithCosts)
	store         *store
	instance      uint64 // tells this host's ring pages from another's
	cpuFeatures   uint64 // the CPU features this host offers guests
	noPaging      bool   // built without mem_paging: EnablePaging fails
	resident      uint64 // bytes of resident memory asked for (WithResidentMemory)
	heap          *heap  // that memory, which domains take theirs from; nil: none

	mu     sync.Mutex
	doms   map[hypervisor.DomID]*domain
	nextID hypervisor.DomID
	closed bool
}

// NewHost returns an empty host.
func NewHost(opts ...Option) *Host {
	h := &Host{
		log:           discardLogger(),
		notifyLatency: DefaultNotifyLatency,
		store:         newStore(),
		doms:          make(map[hypervisor.DomID]*domain),
		nextID:        1,
		instance:      rand.Uint64(),
		cpuFeatures:   AllCPUFeatures,
	}
	for _, o := range opts {
		o(h)
	}
	if h.resident > 0 {
		hp, err := newHeap(h.resident / hypervisor.PageSize)
		if err != nil {
			h.log.WithError(err).Warn("no resident memory: domains map their own")
		}
		h.heap = hp
	}
	return h
}

// Close destroys every domain. The Host cannot be used afterwards.
func (h *Host) Close() error {
	h.mu.Lock()
	h.closed = true
	doms := make([]*domain, 0, len(h.doms))
	for _, d := range h.doms {
		doms = append(doms, d)
	}
	h.doms = map[hypervisor.DomID]*domain{}
	h.mu.Unlock()
	var first error
	for _, d := range doms {
		if err := d.destroy(); err != nil && first == nil {
			first = err
		}
	}
	if h.heap != nil {
		if err := h.heap.unmap(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// acquire returns the live domain id, held alive until release.
func (h *Host) acquire(id hypervisor.DomID) (*domain, error) {
	h.mu.Lock()
	d, ok := h.doms[id]
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("domain %d: host: %w", id, hypervisor.ErrClosed)
	}
	if !ok {
		return nil, fmt.Errorf("domain %d: %w", id, hypervisor.ErrNotFound)
	}
	d.life.RLock()
	if d.dead {
		d.life.RUnlock()
		return nil, fmt.Errorf("domain %d: %w", id, hypervisor.ErrNotFound)
	}
	return d, nil
}

// add registers a new domain under a fresh id.
func (h *Host) add(name string, build func(hypervisor.DomID) (*domain, error)) (hypervisor.DomID, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return 0, fmt.Errorf("create domain %q: host: %w", name, hypervisor.ErrClosed)
	}
	for _, d := range h.doms {
		if d.name() == name {
			return 0, fmt.Errorf("create domain %q: name in use by domain %d: %w", name, d.id, hypervisor.ErrBusy)
		}
	}
	id := h.nextID
	d, err := build(id)
	if err != nil {
		return 0, err
	}
	h.nextID++
	h.doms[id] = d
	return id, nil
}

// ids returns the ids of the live domains, ascending.
func (h *Host) ids() []hypervisor.DomID {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]hypervisor.DomID, 0, len(h.doms))
	for id := range h.doms {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Domains lists every domain of the host.
func (h *Host) Domains() ([]hypervisor.DomainInfo, error) {
	var out []hypervisor.DomainInfo
	for _, id := range h.ids() {
		info, err := h.Info(id)
		if err != nil {
			continue // destroyed meanwhile
		}
		out = append(out, info)
	}
	return out, nil
}

// Lookup returns the id of the domain called name.
func (h *Host) Lookup(name string) (hypervisor.DomID, error) {
	for _, id := range h.ids() {
		if n, err := h.store.read(domainPath(id) + "/name"); err == nil && n == name {
			return id, nil
		}
	}
	return 0, fmt.Errorf("lookup domain %q: %w", name, hypervisor.ErrNotFound)
}

// Info returns the state of one domain.
func (h *Host) Info(id hypervisor.DomID) (hypervisor.DomainInfo, error) {
	d, err := h.acquire(id)
	if err != nil {
		return hypervisor.DomainInfo{}, fmt.Errorf("info: %w", err)
	}
	defer d.release()
	return hypervisor.DomainInfo{
		ID:               id,
		Name:             d.name(),
		State:            d.state(),
		VCPUs:            len(d.vcpus),
		MaxPages:         uint64(len(d.lay.usable) + len(d.lay.special)),
		TotPages:         uint64(d.mem.frames.Load()),
		PagedPages:       uint64(d.mem.paged.Load()),
		HVM:              true,
		HAP:              true,
		UUID:             d.uuid,
		PagedResumeFails: d.spec.PVResume,
	}, nil
}

// Config returns the configuration a destination shell of id is created
// from; its Raw field is the guest's GuestSpec in JSON, under its current name.
func (h *Host) Config(id hypervisor.DomID) (hypervisor.DomainConfig, error) {
	d, err := h.acquire(id)
	if err != nil {
		return hypervisor.DomainConfig{}, fmt.Errorf("config: %w", err)
	}
	defer d.release()
	s := d.spec
	s.Name = d.name()
	s.StopAt = d.stopAt.Load()
	cfg, err := s.config(d.lay)
	cfg.UUID = d.uuid
	cfg.CPUPolicy = binary.LittleEndian.AppendUint64(nil, d.cpuPolicy)
	return cfg, err
}

// Rename changes a domain's name in xenstore.
func (h *Host) Rename(id hypervisor.DomID, name string) error {
	d, err := h.acquire(id)
	if err != nil {
		return fmt.Errorf("rename: %w", err)
	}
	defer d.release()
	if name == "" {
		return fmt.Errorf("rename domain %d: empty name: %w", id, hypervisor.ErrInvalid)
	}
	if other, err := h.Lookup(name); err == nil && other != id {
		return fmt.Errorf("rename domain %d to %q: name in use by domain %d: %w", id, name, other, hypervisor.ErrBusy)
	}
	return h.store.write(domainPath(id)+"/name", name)
}

// Destroy kills a domain and frees its memory.
func (h *Host) Destroy(id hypervisor.DomID) error {
	h.mu.Lock()
	d, ok := h.doms[id]
	delete(h.doms, id)
	h.mu.Unlock()
	if !ok {
		return fmt.Errorf("destroy domain %d: %w", id, hypervisor.ErrNotFound)
	}
	return d.destroy()
}

// DomainPath returns id's xenstore home, /local/domain/<id>.
func (h *Host) DomainPath(id hypervisor.DomID) (string, error) {
	d, err := h.acquire(id)
	if err != nil {
		return "", fmt.Errorf("domain path: %w", err)
	}
	d.release()
	return domainPath(id), nil
}

// domainPath is the xenstore home of a domain.
func domainPath(id hypervisor.DomID) string { return fmt.Sprintf("/local/domain/%d", id) }
