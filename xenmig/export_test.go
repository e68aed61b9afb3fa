package xenmig

import (
	"os/exec"
	"testing"

	"github.com/xenmig/xenmig/hypervisor"
)

// MarkShell marks d as the shell of the receiver process token names, as a
// receiver marks its own.
func MarkShell(hv hypervisor.Hypervisor, d hypervisor.DomID, token string) error {
	home, err := hv.DomainPath(d)
	if err != nil {
		return err
	}
	return hv.StoreWrite(home+"/"+shellOwnerKey, token)
}

// OwnerToken is ownerToken, for tests.
var OwnerToken = ownerToken

// DeadOwnerToken is the owner token of a process that has exited: a
// receiver killed with its shell built.
func DeadOwnerToken(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start true: %v", err)
	}
	tok, err := ownerToken(cmd.Process.Pid)
	if err != nil {
		t.Fatalf("ownerToken(%d) = %v", cmd.Process.Pid, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("wait true: %v", err)
	}
	return tok
}
