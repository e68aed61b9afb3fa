//go:build !(xen && linux)

package xenctrl

import (
	"errors"
	"strings"
	"testing"
)

func TestOpenWithoutBackend(t *testing.T) {
	h, err := Open()
	if h != nil || !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("Open() = %v, %v; want nil, ErrNotBuilt", h, err)
	}
	for _, want := range []string{"built without the real Xen backend", "make build-xen", "go build -tags xen"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open() error %q lacks %q", err, want)
		}
	}
	var stub Host
	if _, err := stub.EnablePaging(1); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("EnablePaging on the stub = %v, want ErrNotBuilt", err)
	}
}

func TestDoctorWithoutBackend(t *testing.T) {
	r := Doctor("web")
	if r.BackendBuilt || r.Reachable || r.PostCopy || len(r.Problems) != 1 || r.Guest == nil || r.Guest.Name != "web" {
		t.Errorf("Doctor(web) = %+v, want not built, unreachable, one problem, guest web", r)
	}
}
