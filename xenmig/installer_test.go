package xenmig

import (
	"testing"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenmig/internal/wire"
)

// TestInstallerUnsent: once the source has finished pushing, an owed gfn
// that is neither installed, staged nor asked for is one nobody will send.
func TestInstallerUnsent(t *testing.T) {
	owed := hypervisor.NewBitmap(16)
	for _, g := range []hypervisor.GFN{1, 2, 3, 4, 9} {
		owed.Set(g)
	}
	in := newInstaller(nil, owed)
	in.installed.Set(1)
	in.requested.Set(3)
	if err := in.stage(wire.Pages{GFNs: []hypervisor.GFN{2}, Zero: []bool{true}}); err != nil {
		t.Fatalf("stage(2) = %v", err)
	}
	if n, first := in.unsent(); n != 2 || first != 4 {
		t.Errorf("unsent() = %d, %#x; want 2, 0x4 (gfns 4 and 9)", n, uint64(first))
	}
	in.requested.Set(4)
	in.installed.Set(9)
	if n, _ := in.unsent(); n != 0 {
		t.Errorf("unsent() = %d after 4 asked for and 9 installed, want 0", n)
	}
}
