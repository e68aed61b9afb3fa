package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestBenchMatrixFilter(t *testing.T) {
	for _, tc := range []struct {
		methods, workloads []string
		wantM, wantW       int
		wantErr            bool
	}{
		{nil, nil, 8, 5, false},
		{[]string{"precopy", "postcopy prepaging +balloon"}, nil, 2, 5, false},
		{nil, []string{"idle", "stress"}, 8, 3, false}, // a kind: both stress columns
		{nil, []string{"sweep-256MiB"}, 8, 1, false},
		{[]string{"warp drive"}, nil, 0, 0, true},
		{nil, []string{"bitcoin"}, 0, 0, true},
	} {
		m := fullMatrix(1)
		err := m.filter(tc.methods, tc.workloads)
		if (err != nil) != tc.wantErr {
			t.Errorf("filter(%q, %q) = %v, want error %v", tc.methods, tc.workloads, err, tc.wantErr)
			continue
		}
		if err == nil && (len(m.methods) != tc.wantM || len(m.workloads) != tc.wantW) {
			t.Errorf("filter(%q, %q) kept %d methods and %d workloads, want %d and %d",
				tc.methods, tc.workloads, len(m.methods), len(m.workloads), tc.wantM, tc.wantW)
		}
	}
}

// TestBenchQuick runs `xenmig bench --quick` for real: two network
// namespaces, a shaped veth link, a receiver process in one namespace and
// the migrations in the other.
func TestBenchQuick(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("requires root: xenmig bench creates network namespaces and qdiscs")
	}
	out := t.TempDir()
	cmd := exec.Command(xenmigBin, "--log-level", "warn", "bench", "--quick", "--json", "--out", out, "--warmup", "500ms")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("xenmig bench --quick: %v\n%s", err, stderr.String())
	}
	var cells []map[string]any
	for s := bufio.NewScanner(&stdout); s.Scan(); {
		var c map[string]any
		if err := json.Unmarshal(s.Bytes(), &c); err != nil {
			t.Fatalf("bench --json line %q: %v", s.Text(), err)
		}
		cells = append(cells, c)
	}
	if len(cells) != 2 {
		t.Fatalf("bench --quick printed %d cells, want 2 (pre-copy, post-copy)", len(cells))
	}
	for _, c := range cells {
		for _, k := range []string{"mode", "total_ms", "preparation_ms", "downtime_ms", "pages_sent", "network_faults", "rate_bps", "floor_ms"} {
			if _, ok := c[k]; !ok {
				t.Errorf("cell %v lacks %q", c["mode"], k)
			}
		}
		// By default the simulated hosts cost what a real Xen host would.
		if c["sim_costs"] != "xen" {
			t.Errorf("cell %v: sim_costs = %v, want xen", c["mode"], c["sim_costs"])
		}
		if c["rate_bps"] != 1e9 {
			t.Errorf("cell %v: rate_bps = %v, want 1e9", c["mode"], c["rate_bps"])
		}
		if total, floor := c["total_ms"].(float64), c["floor_ms"].(float64); total < floor {
			t.Errorf("cell %v: total %v ms below the physical floor %v ms", c["mode"], total, floor)
		}
	}
	for _, f := range []string{"results.csv"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("bench wrote no %s: %v", f, err)
		}
	}
	if svgs, _ := filepath.Glob(filepath.Join(out, "*.svg")); len(svgs) == 0 {
		t.Errorf("bench wrote no SVG chart in %s", out)
	}
	// Its own namespaces, named after its pid (other benchmarks may run).
	if left, _ := filepath.Glob(fmt.Sprintf("/run/netns/xenmig-%d-*", cmd.Process.Pid)); len(left) > 0 {
		t.Errorf("namespaces left behind: %q", left)
	}
}
