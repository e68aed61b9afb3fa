package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenmig/xenmig/xenctrl/sim"
)

// TestConfigFile: -C replaces the xl configuration a domain's Config
// carries, and nothing else; a missing or empty file is refused.
func TestConfigFile(t *testing.T) {
	h := sim.NewHost()
	defer h.Close()
	spec := sim.GuestSpec{Name: "web01", VCPUs: 1, MemoryPages: 256, UsedPages: 16, Seed: 1, Workload: sim.DefaultWorkload(sim.Idle, 256)}
	dom, err := h.CreateDomain(spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	xl := "name = \"web01\"\nmemory = 1024\nvcpus = 2\n"
	path := filepath.Join(dir, "web01.cfg")
	if err := os.WriteFile(path, []byte(xl), 0o644); err != nil {
		t.Fatal(err)
	}
	hv, err := withConfigFile(h, path)
	if err != nil {
		t.Fatalf("withConfigFile(%s) = %v", path, err)
	}
	want, _ := h.Config(dom)
	got, err := hv.Config(dom)
	if err != nil || string(got.Raw) != xl || got.Name != want.Name || got.VCPUs != want.VCPUs || got.MaxPages != want.MaxPages {
		t.Errorf("Config() = %+v, %v; want the domain's with Raw %q", got, err, xl)
	}
	empty := filepath.Join(dir, "empty.cfg")
	os.WriteFile(empty, nil, 0o644)
	for _, p := range []string{filepath.Join(dir, "missing.cfg"), empty} {
		if _, err := withConfigFile(h, p); err == nil || !strings.HasPrefix(err.Error(), "-C") {
			t.Errorf("withConfigFile(%s) = %v, want an error naming -C", p, err)
		}
	}
}
