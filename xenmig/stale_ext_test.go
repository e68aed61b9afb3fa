package xenmig_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenctrl/sim"
	"github.com/xenmig/xenmig/xenmig"
)

// TestMigrateOverLeftShell: a receiver killed before the switchover left
// its shell, NAME--incoming, on the destination. The next migration of NAME
// there destroys it and goes through when its receiver is gone; while that
// receiver still runs, the migration is refused and the guest stays on the
// source.
func TestMigrateOverLeftShell(t *testing.T) {
	self, err := xenmig.OwnerToken(os.Getpid())
	if err != nil {
		t.Fatalf("OwnerToken(self) = %v", err)
	}
	spec := guest("left", sim.KernelCompile, 3000)
	want := reference(t, spec)
	for _, tc := range []struct {
		name   string
		owner  string
		reaped bool
	}{
		{"receiver gone", xenmig.DeadOwnerToken(t), true},
		{"receiver running", self, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := receiveOne(t, xenmig.Transport{})
			left := spec
			left.Name += xenmig.IncomingSuffix
			left.Workload.Rate = 1
			old, err := dst.host.CreateDomain(left) // paused, as a shell
			if err != nil {
				t.Fatal(err)
			}
			if err := xenmig.MarkShell(dst.host, old, tc.owner); err != nil {
				t.Fatalf("MarkShell = %v", err)
			}
			src := sim.NewHost()
			defer src.Close()
			dom := boot(t, src, spec, 300)
			if !tc.reaped {
				_, err := xenmig.Migrate(context.Background(), src, dom, dst.addr, plan(xenmig.PreCopy, xenmig.PushPrepaging), testLog("src"))
				if !errors.Is(err, xenmig.ErrAborted) {
					t.Errorf("Migrate() over a running receiver's shell = %v, want ErrAborted", err)
				}
				if _, err := dst.host.Info(old); err != nil {
					t.Errorf("the running receiver's shell: Info(%d) = %v, want it kept", old, err)
				}
				runsOnSource(t, src, dom, spec)
				return
			}
			res := dst.migrate(t, src, dom, plan(xenmig.PreCopy, xenmig.PushPrepaging), "")
			checkDigest(t, res, want)
			if _, err := dst.host.Info(old); !errors.Is(err, hypervisor.ErrNotFound) {
				t.Errorf("left shell: Info(%d) after the migration = %v, want ErrNotFound (destroyed)", old, err)
			}
			id, err := dst.host.Lookup(spec.Name)
			if err != nil || id != dst.inc.Domain {
				t.Errorf("Lookup(%s) = %d, %v, want the migrated domain %d", spec.Name, id, err, dst.inc.Domain)
			}
			home, _ := dst.host.DomainPath(id)
			if v, err := dst.host.StoreRead(home + "/xenmig/receiver"); !errors.Is(err, hypervisor.ErrNotFound) {
				t.Errorf("the migrated domain's receiver mark = %q, %v, want ErrNotFound (removed at the switchover)", v, err)
			}
		})
	}
}
