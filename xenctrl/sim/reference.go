package sim

import (
	"context"
	"fmt"

	"github.com/xenmig/xenmig/hypervisor"
)

// ReferenceDigest runs spec, unpaced, on a private host until every vCPU has
// done spec.StopAt steps and returns the digest of its memory: the oracle a
// migrated run of the same spec must match. StopAt must be set.
func ReferenceDigest(ctx context.Context, spec GuestSpec) (hypervisor.Digest, error) {
	if spec.StopAt == 0 {
		return hypervisor.Digest{}, fmt.Errorf("reference run of %q: no stop_at: %w", spec.Name, hypervisor.ErrInvalid)
	}
	spec.Workload.Rate = 0 // pacing changes timing, never memory
	h := NewHost()
	defer h.Close()
	id, err := h.CreateDomain(spec)
	if err != nil {
		return hypervisor.Digest{}, fmt.Errorf("reference run: %w", err)
	}
	if err := h.Unpause(id); err != nil {
		return hypervisor.Digest{}, fmt.Errorf("reference run: %w", err)
	}
	if err := h.WaitDone(ctx, id); err != nil {
		return hypervisor.Digest{}, fmt.Errorf("reference run: %w", err)
	}
	return h.Digest(id)
}
