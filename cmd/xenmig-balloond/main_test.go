package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xenmig/xenmig/internal/xsproto"
	"github.com/xenmig/xenmig/pvdriver"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "balloond.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	c, err := LoadConfig(filepath.Join(t.TempDir(), "absent.toml"), false)
	if err != nil {
		t.Fatalf("LoadConfig(absent default) = %v", err)
	}
	if c != DefaultConfig() {
		t.Errorf("LoadConfig(absent default) = %+v, want the defaults", c)
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "absent.toml"), true); err == nil {
		t.Error("LoadConfig(absent explicit) = nil error")
	}

	p := writeConfig(t, `
interval = "2s"
xenstore = "none"
max_kb = 1048576
squeeze_timeout = "3s"
log_format = "json"
[policy]
reserve_kb = 32768
hysteresis_kb = 8192
floor_kb = 65536
`)
	c, err = LoadConfig(p, true)
	if err != nil {
		t.Fatalf("LoadConfig = %v", err)
	}
	want := DefaultConfig()
	want.Interval = 2 * time.Second
	want.Xenstore = "none"
	want.MaxKiB = 1048576
	want.SqueezeTimeout = 3 * time.Second
	want.LogFormat = "json"
	want.Policy.ReserveKiB = 32768
	want.Policy.HysteresisKiB = 8192
	want.Policy.FloorKiB = 65536
	if c != want {
		t.Errorf("LoadConfig = %+v, want %+v", c, want)
	}

	for _, bad := range []string{
		"intervall = \"5s\"\n",               // typo
		"interval = \"5 parsecs\"\n",         // not a duration
		"interval = \"1ms\"\n",               // too fast
		"log_format = \"xml\"\n",             // unknown format
		"[policy]\nhysteresis_kb = 999999\n", // dead band above reserve
	} {
		if _, err := LoadConfig(writeConfig(t, bad), true); err == nil {
			t.Errorf("LoadConfig(%q) = nil error", bad)
		}
	}
}

// guestRoot lays out a balloon driver and meminfo under a temp dir.
func guestRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, pvdriver.BalloonSysfsDir)
	if err := os.MkdirAll(filepath.Join(dir, "info"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, "proc"), 0o755)
	for p, v := range map[string]string{
		filepath.Join(dir, "target_kb"):           "2097152\n",
		filepath.Join(dir, "info", "current_kb"):  "2097152\n",
		filepath.Join(root, pvdriver.MeminfoPath): "MemTotal: 2097152 kB\nCommitted_AS: 300000 kB\n",
	} {
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestRunCheck(t *testing.T) {
	root := guestRoot(t)
	s := xsproto.NewServer(1)
	sock := filepath.Join(t.TempDir(), "xs.sock")
	if err := s.ListenUnix(sock); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Write("memory/target", "1048576")

	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"-config", writeConfig(t, ""), "-root", root, "-xenstore", sock, "-check"}, &out, &errb)
	if code != 0 {
		t.Fatalf("run -check = %d, stderr %s", code, errb.String())
	}
	for _, want := range []string{"ceiling:   1048576 KiB", "decision:  target 786432 KiB", "squeezed:  target 316384 KiB", "xenstore:  ok"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("run -check output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunMissingDriver(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"-config", writeConfig(t, ""), "-root", t.TempDir(), "-xenstore", "none"}, &out, &errb)
	if code != exitNotAGuest {
		t.Errorf("run without driver = %d, want %d", code, exitNotAGuest)
	}
	if !strings.Contains(errb.String(), "is this a Xen guest with CONFIG_XEN_BALLOON?") {
		t.Errorf("stderr lacks the explanation:\n%s", errb.String())
	}
}

func TestRunMissingXenstore(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"-config", writeConfig(t, ""), "-root", guestRoot(t), "-xenstore", filepath.Join(t.TempDir(), "xenbus")}, &out, &errb)
	if code != exitNotAGuest {
		t.Errorf("run without xenstore = %d, want %d", code, exitNotAGuest)
	}
	if !strings.Contains(errb.String(), "no xenstore access") {
		t.Errorf("stderr lacks the explanation:\n%s", errb.String())
	}
}

func TestRunAgent(t *testing.T) {
	root := guestRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"-config", writeConfig(t, ""), "-root", root, "-xenstore", "none", "-interval", "100ms", "-log-format", "json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("run = %d, stderr %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), `"msg":"balloon target set"`) || !strings.Contains(errb.String(), `"new_target_kb":1835008`) {
		t.Errorf("log lacks the first step:\n%s", errb.String())
	}
}

func TestRunBadFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"-config", writeConfig(t, ""), "extra"}, &out, &errb); code != 2 {
		t.Errorf("run with extra args = %d, want 2", code)
	}
	if code := run(context.Background(), []string{"-config", writeConfig(t, ""), "-log-level", "loud"}, &out, &errb); code != 2 {
		t.Errorf("run with bad log level = %d, want 2", code)
	}
}

// TestShippedConfig checks that dist/balloond.toml loads and states the
// defaults.
func TestShippedConfig(t *testing.T) {
	c, err := LoadConfig(filepath.Join("..", "..", "dist", "balloond.toml"), true)
	if err != nil {
		t.Fatal(err)
	}
	if c != DefaultConfig() {
		t.Errorf("dist/balloond.toml = %+v, want the defaults %+v", c, DefaultConfig())
	}
}
