package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xenmig/xenmig/internal/testnet"
	"github.com/xenmig/xenmig/xenmig"
)

// xenmigBin is the binary under test, built once by TestMain.
var xenmigBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xenmig-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	xenmigBin = filepath.Join(dir, "xenmig")
	if out, err := exec.Command("go", "build", "-o", xenmigBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build xenmig: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// receiver is `xenmig receive` running as its own process.
type receiver struct {
	cmd     *exec.Cmd
	addr    string
	metrics string // the metrics' address, when served
	events  chan receiveEvent
	stderr  *bytes.Buffer
}

// startReceive starts `xenmig receive` on a free loopback port, with the
// extra receive flags, and waits for it to listen.
func startReceive(t *testing.T, extra ...string) *receiver {
	t.Helper()
	args := []string{"--backend", "sim", "--sim-costs", "none", "--insecure-plaintext", "--log-level", "info"}
	args = append(append(args, "receive", "--listen", "127.0.0.1:0", "--json"), extra...)
	r := &receiver{cmd: exec.Command(xenmigBin, args...), events: make(chan receiveEvent, 8), stderr: &bytes.Buffer{}}
	r.cmd.Stderr = &lockedWriter{w: r.stderr}
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cmd.Process.Kill(); r.cmd.Wait() })
	lines := bufio.NewScanner(out)
	go func() {
		defer close(r.events)
		for lines.Scan() {
			var e receiveEvent
			if json.Unmarshal(lines.Bytes(), &e) == nil {
				r.events <- e
			}
		}
	}()
	select {
	case e := <-r.events:
		if e.Event != "listening" {
			t.Fatalf("receiver's first event = %+v, want listening", e)
		}
		r.addr, r.metrics = e.Addr, e.Metrics
	case <-time.After(10 * time.Second):
		t.Fatal("receiver did not start listening")
	}
	return r
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// migrateProc runs `xenmig migrate` as its own process and returns its exit
// code, standard output and standard error.
func migrateProc(t *testing.T, args ...string) (int, []byte, string) {
	t.Helper()
	return xenmigProc(t, append([]string{"--backend", "sim", "--sim-costs", "none", "--insecure-plaintext", "--log-level", "info", "migrate"}, args...)...)
}

// xenmigProc runs xenmig with args as its own process and returns its exit
// code, standard output and standard error.
func xenmigProc(t *testing.T, args ...string) (int, []byte, string) {
	t.Helper()
	cmd := exec.Command(xenmigBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.Bytes(), stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.Bytes(), stderr.String()
	}
	t.Fatalf("run xenmig %v: %v", args, err)
	return 0, nil, ""
}

// guestArgs is a small simulated guest of the given workload.
func guestArgs(workload string) []string {
	return []string{"--sim-size", "64MiB", "--sim-used", "16MiB", "--sim-workload", workload,
		"--sim-run", "1s", "--sim-warmup", "150ms"}
}

// TestTwoProcessMigration: sender and receiver as two OS processes over
// loopback, for every workload; the destination's final memory digest
// equals the unmigrated run's, and each page crossed once.
func TestTwoProcessMigration(t *testing.T) {
	for _, w := range []string{"idle", "stress", "kcompile", "web", "qsort"} {
		t.Run(w, func(t *testing.T) {
			r := startReceive(t)
			code, out, stderr := migrateProc(t, append([]string{"vm-" + w, r.addr, "--json"}, guestArgs(w)...)...)
			if code != 0 {
				t.Fatalf("xenmig migrate exit %d\n%s", code, stderr)
			}
			var res xenmig.Result
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("migrate --json output %q: %v", out, err)
			}
			if res.DigestMatch == nil || !*res.DigestMatch {
				t.Errorf("digest_match = %v, want true", res.DigestMatch)
			}
			// Each page once, but those sent while the destination
			// prepared and written again before the switchover.
			if res.PagesSent < res.PagesOwned || res.PagesSent > res.PagesOwned+res.EarlyStale || res.PagesOwned == 0 {
				t.Errorf("pages_sent %d, pages_owned %d, early_stale %d: want sent = owned (+ up to early_stale), non-zero", res.PagesSent, res.PagesOwned, res.EarlyStale)
			}
			if w == "stress" && res.NetworkFaults == 0 {
				t.Errorf("network_faults = 0 for a busy stress guest, want > 0")
			}
			var keys map[string]any
			json.Unmarshal(out, &keys)
			for _, k := range []string{"mode", "total_ms", "downtime_ms", "preparation_ms", "pages_sent", "bytes_sent",
				"pages_owned", "zero_pages_skipped", "network_faults", "fault_p50_us", "fault_p99_us", "digest_match",
				"ballooned_pages_skipped"} {
				if _, ok := keys[k]; !ok {
					t.Errorf("migrate --json lacks key %q", k)
				}
			}
			select {
			case e := <-r.events:
				if e.Event != "received" || e.Domain != "vm-"+w {
					t.Errorf("receiver event = %+v, want received vm-%s", e, w)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("receiver reported nothing")
			}
		})
	}
}

// TestTwoProcessFailures: each failure before the switchover leaves the
// domain running on the source (exit code 3), where it finishes its run with
// the unmigrated run's memory.
func TestTwoProcessFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		peer func(t *testing.T) string
		want string // in the error
	}{
		{"receiver killed during preparation", func(t *testing.T) string {
			r := startReceive(t)
			go func() { // kill it as soon as it starts preparing the shell
				deadline := time.Now().Add(20 * time.Second)
				for time.Now().Before(deadline) {
					if strings.Contains(r.stderrString(), "incoming migration") {
						r.cmd.Process.Kill()
						return
					}
					time.Sleep(time.Millisecond)
				}
			}()
			return r.addr
		}, ""},
		{"connection cut during preparation", func(t *testing.T) string {
			return testnet.CutAfter(t, startReceive(t).addr, 300)
		}, ""},
		{"version mismatch", func(t *testing.T) string {
			return testnet.Serve(t, func(c net.Conn) {
				io.ReadFull(c, make([]byte, 12+30)) // the hello record
				c.Write(record(2, []byte(`{"ok":false,"version":99,"message":"newer"}`)))
			})
		}, "version mismatch"},
		{"wrong peer", func(t *testing.T) string {
			return testnet.Serve(t, func(c net.Conn) { io.WriteString(c, "SSH-2.0-OpenSSH_9.2\r\n") })
		}, "not a xenmig receiver"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"victim", tc.peer(t), "--json", "--sim-size", "1GiB", "--sim-used", "32MiB",
				"--sim-workload", "kcompile", "--sim-run", "400ms", "--sim-warmup", "100ms"}
			code, out, stderr := migrateProc(t, args...)
			if code != exitNotMoved {
				t.Fatalf("xenmig migrate exit %d, want %d (not moved)\n%s", code, exitNotMoved, stderr)
			}
			var f failureReport
			if err := json.Unmarshal(out, &f); err != nil || f.ExitCode != exitNotMoved {
				t.Errorf("failure JSON %q: %+v, %v", out, f, err)
			}
			if !strings.Contains(f.Error, tc.want) {
				t.Errorf("error %q does not say %q", f.Error, tc.want)
			}
			if !strings.Contains(stderr, "nothing was lost") {
				t.Errorf("the source did not confirm the domain finished its run intact:\n%s", stderr)
			}
		})
	}
}

func (r *receiver) stderrString() string {
	lw := r.cmd.Stderr.(*lockedWriter)
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return r.stderr.String()
}

// TestXenBackendFailsFast: without a Xen hypervisor (or a binary built
// without the real backend), doctor and a post-copy migrate on the xen
// backend stop at once, exit 6, and say what to do.
func TestXenBackendFailsFast(t *testing.T) {
	if _, err := os.Stat("/dev/xen/privcmd"); err == nil {
		t.Skip("a Xen hypervisor is present: this test is for hosts without one")
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"doctor", []string{"--backend", "xen", "doctor"}, []string{"post-copy"}},
		{"migrate", []string{"--backend", "xen", "--insecure-plaintext", "migrate", "web01", "127.0.0.1:1", "--mode", "postcopy"},
			[]string{"Xen", "--backend sim"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(xenmigBin, tc.args...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			start := time.Now()
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitUnsupported {
				t.Fatalf("xenmig %v = %v, want exit %d\n%s", tc.args, err, exitUnsupported, out.String())
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v, want a fast failure", d)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output does not mention %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// TestHelp: every command answers --help with its usage.
func TestHelp(t *testing.T) {
	for _, c := range []string{"migrate", "receive", "list", "demo", "doctor", "bench"} {
		out, err := exec.Command(xenmigBin, c, "--help").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Usage:") {
			t.Errorf("xenmig %s --help = %v\n%s", c, err, out)
		}
	}
}

// record frames a protocol record by hand (docs/PROTOCOL.md), as a peer
// written by someone else would.
func record(typ uint32, body []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, typ)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
	return append(b, body...)
}

// TestDoctorJSONOneObject: `doctor --json` on a host that cannot do
// post-copy exits 6 with its report as the one JSON object on stdout (the
// lab's scripts read it); main used to add a failure object after it.
func TestDoctorJSONOneObject(t *testing.T) {
	if _, err := os.Stat("/dev/xen/privcmd"); err == nil {
		t.Skip("a Xen hypervisor is present: this test is for hosts without one")
	}
	cmd := exec.Command(xenmigBin, "--backend", "xen", "doctor", "--json")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitUnsupported {
		t.Fatalf("xenmig doctor --json = %v, want exit %d", err, exitUnsupported)
	}
	dec := json.NewDecoder(&stdout)
	var report map[string]any
	if err := dec.Decode(&report); err != nil {
		t.Fatalf("doctor --json stdout: %v", err)
	}
	if _, ok := report["post_copy"]; !ok {
		t.Errorf("doctor --json = %v, want the report (a post_copy key)", report)
	}
	if dec.More() {
		t.Errorf("doctor --json printed more than one JSON object: %s", stdout.String())
	}
}

// TestProfiles: --cpuprofile and --memprofile write pprof profiles (gzipped
// protocol buffers) of the command, here a migration, and --trace an
// execution trace.
func TestProfiles(t *testing.T) {
	r := startReceive(t)
	dir := t.TempDir()
	cpu, mem, trace := filepath.Join(dir, "cpu.prof"), filepath.Join(dir, "mem.prof"), filepath.Join(dir, "trace.out")
	code, _, stderr := migrateProc(t, append([]string{"vm-prof", r.addr, "--cpuprofile", cpu, "--memprofile", mem, "--trace", trace},
		guestArgs("idle")...)...)
	if code != 0 {
		t.Fatalf("xenmig migrate exit %d\n%s", code, stderr)
	}
	for _, f := range []string{cpu, mem} {
		b, err := os.ReadFile(f)
		if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
			t.Errorf("%s: %d bytes, %v; want a gzipped pprof profile", filepath.Base(f), len(b), err)
		}
	}
	if b, err := os.ReadFile(trace); err != nil || !bytes.HasPrefix(b, []byte("go 1.")) {
		t.Errorf("trace.out: %d bytes, %v; want a Go execution trace (\"go 1.\" first)", len(b), err)
	}
}
