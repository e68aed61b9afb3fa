package sim

import (
	"encoding/binary"
	"fmt"

	"github.com/zeebo/xxh3"

	"github.com/xenmig/xenmig/hypervisor"
)

// Digest hashes, with XXH3-128, the gfn (8 bytes, little-endian) and content
// of every populated non-zero page of id in ascending gfn order. Zero pages
// are skipped, so free and ballooned-out memory do not count, and so are the
// toolstack's ring pages, which are each host's own. ErrPaged if a
// gfn is paged out. The result is meaningful for a paused or finished guest.
func (h *Host) Digest(id hypervisor.DomID) (hypervisor.Digest, error) {
	d, err := h.acquire(id)
	if err != nil {
		return hypervisor.Digest{}, fmt.Errorf("digest: %w", err)
	}
	defer d.release()
	x := xxh3.New()
	var gb [8]byte
	for i := range d.mem.p2m {
		g := hypervisor.GFN(i)
		st := d.mem.state(g)
		if pagedOut(st) {
			return hypervisor.Digest{}, &hypervisor.PageError{Op: "digest", GFN: g, Err: hypervisor.ErrPaged}
		}
		if !hasFrame(st) || d.lay.isSpecial(g) {
			continue
		}
		p := d.mem.page(g)
		if isZero(p) {
			continue
		}
		binary.LittleEndian.PutUint64(gb[:], uint64(g))
		x.Write(gb[:])
		x.Write(p)
	}
	return hypervisor.Digest(x.Sum128().Bytes()), nil
}

// Progress returns the workload's counters: operations summed over vCPUs,
// steps and time blocked on paging faults per vCPU, and whether every vCPU
// has reached StopAt.
func (h *Host) Progress(id hypervisor.DomID) (hypervisor.Progress, error) {
	d, err := h.acquire(id)
	if err != nil {
		return hypervisor.Progress{}, fmt.Errorf("progress: %w", err)
	}
	defer d.release()
	stop := d.stopAt.Load()
	p := hypervisor.Progress{Done: stop != 0}
	for _, v := range d.vcpus {
		p.Ops += v.ops.Load()
		p.Steps = append(p.Steps, v.steps.Load())
		p.Blocked = append(p.Blocked, v.blocked.Load())
		p.Done = p.Done && v.reached(stop)
	}
	return p, nil
}
