package sim

import (
	"fmt"
	"slices"
	"testing"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/pvdriver"
)

func TestBalloonReleaseAndReturn(t *testing.T) {
	h := newTestHost(t)
	id := create(t, h, testSpec(Probe, 2))
	must(t, "Unpause", h.Unpause(id))
	home, err := h.DomainPath(id)
	must(t, "DomainPath", err)
	info, err := h.Info(id)
	must(t, "Info", err)
	full := info.TotPages
	inUse, err := h.GuestPages(id)
	must(t, "GuestPages", err)
	digest, err := h.Digest(id)
	must(t, "Digest", err)
	populated := func() *hypervisor.Bitmap {
		b, err := h.Populated(id)
		must(t, "Populated", err)
		return b
	}
	setTarget := func(pages uint64) {
		must(t, "StoreWrite", h.StoreWrite(home+"/memory/target", fmt.Sprint(pages*hypervisor.PageSize/1024)))
		waitFor(t, fmt.Sprintf("%d pages populated", pages), func() bool { return populated().Count() == pages })
	}
	for _, tt := range []struct {
		name   string
		target uint64
	}{
		{"inflate", full - 1000},
		{"inflate more", full - 1500},
		{"deflate part", full - 200},
		{"deflate all", full},
	} {
		before := populated()
		setTarget(tt.target)
		after := populated()
		if tt.target < before.Count() {
			// The released gfns are the highest free ones.
			gone := before.Clone()
			gone.AndNot(after)
			lowest := gone.GFNs()[0]
			for g := lowest; uint64(g) < after.Len(); g++ {
				if after.Test(g) && !isUsed(t, h, id, g) {
					t.Errorf("%s: free gfn %#x above released gfn %#x still populated", tt.name, g, lowest)
					break
				}
			}
		}
		if got, err := h.GuestPages(id); err != nil || got != inUse {
			t.Errorf("%s: GuestPages() = %d, %v, want %d, nil", tt.name, got, err, inUse)
		}
		if got, err := h.Digest(id); err != nil || got != digest {
			t.Errorf("%s: Digest() = %v, %v, want %v, nil", tt.name, got, err, digest)
		}
	}
	if got := populated().Count(); got != full {
		t.Errorf("populated pages after deflating = %d, want %d", got, full)
	}
}

// isUsed reports whether the guest uses g.
func isUsed(t *testing.T, h *Host, id hypervisor.DomID, g hypervisor.GFN) bool {
	d, err := h.acquire(id)
	must(t, "acquire", err)
	defer d.release()
	d.guestMu.Lock()
	defer d.guestMu.Unlock()
	return d.inUseLocked(g)
}

// TestBalloonWaitsForUnpause checks that the balloon driver, guest code, does
// nothing while the domain is paused.
func TestBalloonWaitsForUnpause(t *testing.T) {
	h := newTestHost(t)
	id := create(t, h, testSpec(Probe, 1))
	home, _ := h.DomainPath(id)
	before, err := h.Populated(id)
	must(t, "Populated", err)
	must(t, "StoreWrite", h.StoreWrite(home+"/memory/target", fmt.Sprint((before.Count()-10)*4)))
	after, err := h.Populated(id)
	must(t, "Populated", err)
	if !slices.Equal(after.Words(), before.Words()) {
		t.Errorf("populated gfns changed while paused")
	}
	must(t, "Unpause", h.Unpause(id))
	waitFor(t, "balloon inflated", func() bool {
		b, err := h.Populated(id)
		return err == nil && b.Count() == before.Count()-10
	})
}

// TestBalloondSqueeze: the self-ballooning agent (pvdriver's, run in the
// guest) shrinks the guest toward what it uses, and on dom0's squeeze
// request gives back everything but a small reserve, which stays free, then
// acknowledges.
func TestBalloondSqueeze(t *testing.T) {
	h := newTestHost(t)
	spec := testSpec(Idle, 1)
	spec.MemoryPages, spec.UsedPages = 131072, 49152 // 512 MiB, 192 MiB in use
	spec.Balloond = &BalloondSpec{IntervalMS: 20}
	id := create(t, h, spec)
	must(t, "Unpause", h.Unpause(id))
	home, _ := h.DomainPath(id)
	info := func() hypervisor.DomainInfo {
		i, err := h.Info(id)
		must(t, "Info", err)
		return i
	}
	// Left alone, it self-balloons toward use + reserve (64 MiB here).
	waitFor(t, "self-ballooning", func() bool { return info().TotPages*hypervisor.PageSize <= 260<<20 })
	must(t, "StoreWrite", h.StoreWrite(home+"/"+pvdriver.ControlKey, "squeeze t1"))
	waitFor(t, "the squeeze ack", func() bool {
		v, _ := h.StoreRead(home + "/" + pvdriver.KeyAck)
		return v == "squeeze t1"
	})
	inUse, err := h.GuestPages(id)
	must(t, "GuestPages", err)
	// The reserve stays free: Committed_AS leaves out the kernel's half of
	// this guest's pages, and a squeeze to it would leave nothing free.
	reserve := pvdriver.DefaultParams().SqueezeReserveKiB / 4
	if got := info().TotPages; got > inUse+reserve+256 || got+256 < inUse+reserve {
		t.Errorf("after the squeeze TotPages = %d, want in-use %d + the squeeze reserve %d (±256)", got, inUse, reserve)
	}
	must(t, "StoreWrite", h.StoreWrite(home+"/"+pvdriver.ControlKey, "cancel t1"))
	squeezed := info().TotPages
	waitFor(t, "growing back", func() bool { return info().TotPages > squeezed })
}
