package sim

import (
	"encoding/json"
	"fmt"

	"github.com/xenmig/xenmig/hypervisor"
)

// Backend is the DomainConfig.Backend of a simulated domain.
const Backend = "sim"

// Kind names a workload model.
type Kind string

// Workload kinds.
const (
	// Idle writes one word to one of its own pages per step: a guest doing
	// nearly nothing. Pace it with Rate.
	Idle Kind = "idle"
	// Stress reads or writes whole pages of a working set, sequentially or
	// at random: the stress test of the post-copy paper.
	Stress Kind = "stress"
	// KernelCompile churns allocations (allocate pages, write them, read
	// them, free them) and grows a file cache, like a kernel build.
	KernelCompile Kind = "kcompile"
	// WebServer serves Zipf-distributed reads of static pages and appends
	// to per-vCPU log pages now and then.
	WebServer Kind = "web"
	// Quicksort makes each vCPU sort its own array of uint64 spread over
	// many pages, refilling it from its PRNG when it is sorted.
	Quicksort Kind = "qsort"
	// Probe does nothing of its own: each step performs one access queued
	// with (*Host).Touch, so tests can direct the guest's memory accesses.
	Probe Kind = "probe"
)

// Hole is a range of gfns that is never populated, such as an MMIO hole.
type Hole struct {
	Start hypervisor.GFN `json:"start"`
	Count uint64         `json:"count"`
}

// WorkloadSpec parameterises a guest's workload.
type WorkloadSpec struct {
	Kind Kind `json:"kind"`
	// Rate paces each vCPU to at most Rate steps per second; 0 runs
	// unpaced.
	Rate float64 `json:"rate,omitempty"`
	// WorkingSet is, in pages summed over all vCPUs, the memory the
	// workload works on: the pages Stress touches, the hot set WebServer
	// reads, the arrays Quicksort sorts. 0 picks a default from the
	// layout.
	WorkingSet uint64 `json:"working_set,omitempty"`
	// Random makes Stress pick pages at random instead of in order.
	Random bool `json:"random,omitempty"`
	// WritePercent is the share of Stress's page accesses that write
	// (0 reads only, 100 writes only).
	WritePercent int `json:"write_percent,omitempty"`
	// ZipfS is WebServer's Zipf exponent s (> 1); 0 means 1.2.
	ZipfS float64 `json:"zipf_s,omitempty"`
}

// GuestSpec describes a simulated guest. It is JSON-serialisable and travels
// as DomainConfig.Raw (Backend "sim"), so a destination host rebuilds the same
// guest model.
type GuestSpec struct {
	Name  string `json:"name"`
	VCPUs int    `json:"vcpus"`
	// MemoryPages is the size of the gfn space: gfns [0, MemoryPages).
	MemoryPages uint64 `json:"memory_pages"`
	// Holes are gfn ranges never populated.
	Holes []Hole `json:"holes,omitempty"`
	// UsedPages is how many pages are in use at boot, filled with
	// deterministic non-zero content; the rest is free and zero. It is
	// raised to the minimum the layout needs (one static page and one page
	// per vCPU) and capped at the memory.
	UsedPages uint64 `json:"used_pages"`
	// Seed makes the boot content and every vCPU's workload reproducible.
	Seed uint64 `json:"seed"`
	// StopAt is the number of steps after which each vCPU stops; 0 runs
	// forever.
	StopAt uint64 `json:"stop_at,omitempty"`
	// Workload is what the vCPUs run.
	Workload WorkloadSpec `json:"workload"`
	// Balloond, when set, runs the self-ballooning agent in the guest.
	Balloond *BalloondSpec `json:"balloond,omitempty"`
	// NoSuspend makes a guest that ignores suspend requests, as one
	// without PV drivers does: Suspend times out.
	NoSuspend bool `json:"no_suspend,omitempty"`
	// PVResume makes a guest that, as Linux PVH does, keeps one page per
	// vCPU registered with the hypervisor (its vcpu_info, in the kernel's
	// per-CPU data): its event handling writes it, its suspend included,
	// and on resuming in a new domain it registers the page again. Xen
	// 4.17 refuses a paged-out gfn there without a paging request, and the
	// guest panics: the domain crashes. Info reports it as
	// PagedResumeFails.
	PVResume bool `json:"pv_resume,omitempty"`
}

// DefaultWorkload returns the parameters of a workload of the given kind for
// a guest of memoryPages pages: paced to a rate that keeps it busy without
// taking a whole CPU per vCPU, a stress working set of a quarter of memory
// (as the post-copy paper's 512 MiB of 2 GiB) written four times in five.
// The other parameters default from the guest's layout.
func DefaultWorkload(kind Kind, memoryPages uint64) WorkloadSpec {
	w := WorkloadSpec{Kind: kind}
	switch kind {
	case Idle:
		w.Rate = 2000
	case Stress:
		w.Rate = 50000
		w.WorkingSet = memoryPages / 4
		w.WritePercent = 80
		w.Random = true
	case KernelCompile:
		w.Rate = 20000
	case WebServer:
		w.Rate = 20000
	case Quicksort:
		w.Rate = 5000
	}
	return w
}

// ValidateSpec reports whether CreateDomain would accept spec, with an error
// (wrapping hypervisor.ErrInvalid) naming the first bad field.
func ValidateSpec(spec GuestSpec) error {
	if err := spec.validate(); err != nil {
		return err
	}
	_, err := newLayout(&spec)
	return err
}

// validate checks s and returns an error naming the first bad field.
func (s *GuestSpec) validate() error {
	switch {
	case s.Name == "":
		return fmt.Errorf("guest spec: empty name: %w", hypervisor.ErrInvalid)
	case s.VCPUs < 1 || s.VCPUs > 128:
		return fmt.Errorf("guest spec %q: vcpus %d not in [1,128]: %w", s.Name, s.VCPUs, hypervisor.ErrInvalid)
	case s.MemoryPages == 0 || s.MemoryPages > 1<<26:
		return fmt.Errorf("guest spec %q: memory_pages %d not in [1,2^26]: %w", s.Name, s.MemoryPages, hypervisor.ErrInvalid)
	case s.Workload.WritePercent < 0 || s.Workload.WritePercent > 100:
		return fmt.Errorf("guest spec %q: write_percent %d not in [0,100]: %w", s.Name, s.Workload.WritePercent, hypervisor.ErrInvalid)
	case s.Workload.Rate < 0:
		return fmt.Errorf("guest spec %q: negative rate: %w", s.Name, hypervisor.ErrInvalid)
	case s.Workload.ZipfS != 0 && s.Workload.ZipfS <= 1:
		return fmt.Errorf("guest spec %q: zipf_s %g must be > 1: %w", s.Name, s.Workload.ZipfS, hypervisor.ErrInvalid)
	}
	if _, ok := programs[s.Workload.Kind]; !ok {
		return fmt.Errorf("guest spec %q: unknown workload kind %q: %w", s.Name, s.Workload.Kind, hypervisor.ErrInvalid)
	}
	for _, h := range s.Holes {
		if h.Count == 0 || uint64(h.Start)+h.Count > s.MemoryPages {
			return fmt.Errorf("guest spec %q: hole [%#x,+%d) outside the gfn space: %w", s.Name, uint64(h.Start), h.Count, hypervisor.ErrInvalid)
		}
	}
	return nil
}

// config returns the DomainConfig a destination shell is created from.
func (s *GuestSpec) config(l *layout) (hypervisor.DomainConfig, error) {
	raw, err := json.Marshal(s)
	if err != nil {
		return hypervisor.DomainConfig{}, fmt.Errorf("encode guest spec %q: %w", s.Name, err)
	}
	return hypervisor.DomainConfig{
		Name:         s.Name,
		VCPUs:        s.VCPUs,
		MaxPages:     uint64(len(l.usable) + len(l.special)),
		HVM:          true,
		Backend:      Backend,
		Raw:          raw,
		SpecialPages: append([]hypervisor.GFN(nil), l.special...),
	}, nil
}

// specFromConfig decodes the guest spec a DomainConfig carries.
func specFromConfig(cfg hypervisor.DomainConfig) (GuestSpec, error) {
	var s GuestSpec
	if cfg.Backend != Backend {
		return s, fmt.Errorf("config of domain %q is for backend %q, not %q: %w", cfg.Name, cfg.Backend, Backend, hypervisor.ErrInvalid)
	}
	if err := json.Unmarshal(cfg.Raw, &s); err != nil {
		return s, fmt.Errorf("decode guest spec of %q: %v: %w", cfg.Name, err, hypervisor.ErrInvalid)
	}
	if cfg.Name != "" {
		s.Name = cfg.Name
	}
	return s, s.validate()
}
