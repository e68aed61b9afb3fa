package pvdriver

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakeGuest lays out a balloon driver and /proc/meminfo under a temp root.
func fakeGuest(t *testing.T, targetKiB, currentKiB, committedKiB uint64) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, BalloonSysfsDir)
	if err := os.MkdirAll(filepath.Join(dir, "info"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "target_kb"), u(targetKiB)+"\n")
	writeFile(t, filepath.Join(dir, "info", "current_kb"), u(currentKiB)+"\n")
	writeMeminfo(t, root, 2097152, committedKiB)
	return root
}

func writeMeminfo(t *testing.T, root string, totalKiB, committedKiB uint64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, MeminfoPath), "MemTotal:       "+u(totalKiB)+" kB\n"+
		"MemFree:         1500000 kB\n"+
		"MemAvailable:    1700000 kB\n"+
		"HugePages_Total:       0\n"+
		"Committed_AS:    "+u(committedKiB)+" kB\n"+
		"VmallocTotal:   34359738367 kB\n")
}

// writeFile replaces path atomically, as a kernel's sysfs read never sees a
// half-written value.
func writeFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func u(v uint64) string { return strconv.FormatUint(v, 10) }

func TestSysfsBalloon(t *testing.T) {
	root := fakeGuest(t, 2097152, 2000000, 300000)
	b, err := OpenSysfsBalloon(root)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.TargetKiB(); err != nil || got != 2097152 {
		t.Errorf("TargetKiB() = %d, %v, want 2097152", got, err)
	}
	if got, err := b.CurrentKiB(); err != nil || got != 2000000 {
		t.Errorf("CurrentKiB() = %d, %v, want 2000000", got, err)
	}
	if err := b.SetTargetKiB(372736); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, BalloonSysfsDir, "target_kb"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), "372736\n"; got != want {
		t.Errorf("target_kb = %q, want %q", got, want)
	}
	if got, err := b.TargetKiB(); err != nil || got != 372736 {
		t.Errorf("TargetKiB() after set = %d, %v, want 372736", got, err)
	}

	writeFile(t, filepath.Join(root, BalloonSysfsDir, "info", "current_kb"), "garbage\n")
	if _, err := b.CurrentKiB(); err == nil {
		t.Error("CurrentKiB() of garbage = nil error")
	}
}

func TestNoBalloonDriver(t *testing.T) {
	root := t.TempDir()
	_, err := OpenSysfsBalloon(root)
	if !errors.Is(err, ErrNoBalloon) {
		t.Fatalf("OpenSysfsBalloon(empty root) = %v, want ErrNoBalloon", err)
	}
	want := "no Xen balloon driver at " + filepath.Join(root, BalloonSysfsDir) + ": is this a Xen guest with CONFIG_XEN_BALLOON?"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestParseMeminfo(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		want MemInfo
		ok   bool
	}{
		{"full", "MemTotal: 2048000 kB\nMemFree: 100 kB\nMemAvailable: 200 kB\nCommitted_AS: 300000 kB\n", MemInfo{2048000, 100, 200, 300000}, true},
		{"old kernel without MemAvailable", "MemTotal: 1000 kB\nCommitted_AS: 10 kB\n", MemInfo{MemTotalKiB: 1000, CommittedKiB: 10}, true},
		{"unit-less lines ignored", "HugePages_Total: 0\nMemTotal: 1000 kB\nCommitted_AS: 10 kB\n", MemInfo{MemTotalKiB: 1000, CommittedKiB: 10}, true},
		{"no Committed_AS", "MemTotal: 1000 kB\n", MemInfo{}, false},
		{"no MemTotal", "Committed_AS: 1000 kB\n", MemInfo{}, false},
		{"bad number", "MemTotal: x kB\nCommitted_AS: 10 kB\n", MemInfo{}, false},
		{"bad unit", "MemTotal: 10 MB\nCommitted_AS: 10 kB\n", MemInfo{}, false},
		{"empty", "", MemInfo{}, false},
	} {
		got, err := ParseMeminfo(strings.NewReader(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("%s: ParseMeminfo(%q) = %+v, %v, want %+v (ok %v)", tt.name, tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestProcMeminfo(t *testing.T) {
	root := fakeGuest(t, 1, 1, 456789)
	mi, err := NewProcMeminfo(root).MemInfo()
	if err != nil {
		t.Fatal(err)
	}
	if mi.CommittedKiB != 456789 || mi.MemTotalKiB != 2097152 {
		t.Errorf("MemInfo() = %+v, want Committed 456789, MemTotal 2097152", mi)
	}
	if _, err := NewProcMeminfo(t.TempDir()).MemInfo(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("MemInfo() of missing file = %v, want fs.ErrNotExist", err)
	}
}

func TestParseControl(t *testing.T) {
	for _, tt := range []struct{ in, cmd, token string }{
		{"squeeze", "squeeze", ""},
		{"squeeze mig-42", "squeeze", "mig-42"},
		{" done  mig-42 \n", "done", "mig-42"},
		{"", "", ""},
	} {
		if cmd, tok := ParseControl(tt.in); cmd != tt.cmd || tok != tt.token {
			t.Errorf("ParseControl(%q) = %q, %q, want %q, %q", tt.in, cmd, tok, tt.cmd, tt.token)
		}
	}
}

func TestOpenXenstoreMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "xenbus")
	_, err := OpenXenstore(p)
	if !errors.Is(err, ErrNoXenstore) {
		t.Fatalf("OpenXenstore(%s) = %v, want ErrNoXenstore", p, err)
	}
	if !strings.Contains(err.Error(), "is this a Xen guest") {
		t.Errorf("error %q does not say what to check", err)
	}
}
