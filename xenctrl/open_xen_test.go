//go:build xen && linux

package xenctrl

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func haveXen() bool {
	_, err := os.Stat("/dev/xen/privcmd")
	return err == nil
}

// TestOpenWithoutXen checks that, on a machine with no hypervisor, Open fails
// at once with an error that says so and wraps ENOENT.
func TestOpenWithoutXen(t *testing.T) {
	if haveXen() {
		t.Skip("this host has /dev/xen/privcmd: Open is expected to succeed here")
	}
	start := time.Now()
	h, err := Open()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Open() took %v without Xen, want it to fail fast", took)
	}
	if h != nil || err == nil {
		t.Fatalf("Open() = %v, %v; want nil and an error", h, err)
	}
	if !errors.Is(err, ErrNoHypervisor) {
		t.Errorf("errors.Is(%v, ErrNoHypervisor) = false, want true", err)
	}
	if !errors.Is(err, syscall.ENOENT) {
		t.Errorf("errors.Is(%v, ENOENT) = false, want true", err)
	}
	for _, want := range []string{"no Xen hypervisor is reachable", "xc_interface_open", "/dev/xen/privcmd"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open() error %q lacks %q", err, want)
		}
	}
}

func TestDoctorWithoutXen(t *testing.T) {
	if haveXen() {
		t.Skip("this host has /dev/xen/privcmd")
	}
	r := Doctor("web")
	if !r.BackendBuilt || r.Reachable || r.PostCopy {
		t.Errorf("Doctor() = built %v reachable %v post-copy %v; want true, false, false", r.BackendBuilt, r.Reachable, r.PostCopy)
	}
	if len(r.Problems) == 0 || !strings.Contains(r.Problems[0], "no Xen hypervisor is reachable") {
		t.Errorf("Doctor().Problems = %q, want the unreachable hypervisor first", r.Problems)
	}
	if s := r.String(); !strings.Contains(s, "hypervisor reachable:     NO") {
		t.Errorf("Doctor().String() = %q, want it to say the hypervisor is unreachable", s)
	}
}
