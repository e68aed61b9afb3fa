package xenctrl

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/xenmig/xenmig/hypervisor"
)

func TestFindConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "web.cfg"), []byte(`type = "pvh"`), 0o644); err != nil {
		t.Fatal(err)
	}
	patterns := []string{filepath.Join(dir, "auto", "%s.cfg"), filepath.Join(dir, "%s.cfg")}
	path, data, err := findConfig(patterns, "web")
	if err != nil || path != filepath.Join(dir, "web.cfg") || string(data) != `type = "pvh"` {
		t.Errorf("findConfig(web) = %q, %q, %v; want web.cfg's contents", path, data, err)
	}
	_, _, err = findConfig(patterns, "db")
	if !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("findConfig(db) = %v, want ErrNotFound", err)
	}
}

func TestXLCreateArgs(t *testing.T) {
	got := xlCreateArgs("/tmp/x.cfg", `we"b`)
	want := []string{"create", "-p", "/tmp/x.cfg", `name="we\"b"`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("xlCreateArgs = %q, want %q", got, want)
	}
}

func TestCheckShellConfig(t *testing.T) {
	ok := hypervisor.DomainConfig{Name: "web", Backend: "xen", Raw: []byte("memory = 512")}
	if err := checkShellConfig(ok); err != nil {
		t.Errorf("checkShellConfig(%+v) = %v, want nil", ok, err)
	}
	for _, bad := range []hypervisor.DomainConfig{
		{Name: "web", Backend: "sim", Raw: []byte("x")},
		{Name: "web", Backend: "xen"},
		{Backend: "xen", Raw: []byte("x")},
	} {
		if err := checkShellConfig(bad); !errors.Is(err, hypervisor.ErrInvalid) {
			t.Errorf("checkShellConfig(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	info := hypervisor.DomainInfo{Name: "web", VCPUs: 2, MaxPages: 5, HVM: true}
	if c := domainConfig(info, []byte("r")); c.Backend != "xen" || c.Name != "web" || c.VCPUs != 2 || c.MaxPages != 5 || !c.HVM {
		t.Errorf("domainConfig = %+v", c)
	}
}
