package pvdriver

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/xenmig/xenmig/internal/xsproto"
)

const (
	testDomID   = 3
	guestMaxKiB = 2097152 // 2 GiB guest
)

// kernel plays the balloon driver under a temp root: it moves current_kb to
// target_kb, unless stalled.
type kernel struct {
	dir   string
	stall atomic.Bool
	done  chan struct{}
	wg    sync.WaitGroup
}

func startKernel(t *testing.T, root string) *kernel {
	k := &kernel{dir: filepath.Join(root, BalloonSysfsDir), done: make(chan struct{})}
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		for {
			select {
			case <-k.done:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if k.stall.Load() {
				continue
			}
			data, err := os.ReadFile(filepath.Join(k.dir, "target_kb"))
			if err != nil {
				continue
			}
			v := strings.TrimSpace(string(data))
			if _, err := strconv.ParseUint(v, 10, 64); err != nil {
				continue // caught the agent mid-write
			}
			cur := filepath.Join(k.dir, "info", "current_kb")
			os.WriteFile(cur+".k", []byte(v+"\n"), 0o644)
			os.Rename(cur+".k", cur)
		}
	}()
	t.Cleanup(func() { close(k.done); k.wg.Wait() })
	return k
}

// rig is one guest: temp root, fake kernel, in-memory xenstore, agent.
type rig struct {
	t      *testing.T
	root   string
	kernel *kernel
	xs     *xsproto.Server
	cancel context.CancelFunc
	runErr chan error
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Interval = 40 * time.Millisecond
	cfg.PollInterval = 5 * time.Millisecond
	cfg.SqueezeTimeout = 3 * time.Second
	return cfg
}

func testLogger(t *testing.T) logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.DebugLevel)
	l.Out = testWriter{t}
	return l
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// newRig starts an agent on a 2 GiB guest committing committedKiB.
func newRig(t *testing.T, cfg Config, committedKiB uint64, withStore bool) *rig {
	t.Helper()
	r := &rig{t: t, root: fakeGuest(t, guestMaxKiB, guestMaxKiB, committedKiB)}
	r.kernel = startKernel(t, r.root)
	b, err := OpenSysfsBalloon(r.root)
	if err != nil {
		t.Fatal(err)
	}
	var store Store
	if withStore {
		r.xs = xsproto.NewServer(testDomID)
		sock := filepath.Join(t.TempDir(), "xenstore.sock")
		if err := r.xs.ListenUnix(sock); err != nil {
			t.Fatal(err)
		}
		r.xs.Write("memory/target", strconv.Itoa(guestMaxKiB))
		c, err := OpenXenstore(sock)
		if err != nil {
			t.Fatal(err)
		}
		store = c
		t.Cleanup(func() { c.Close(); r.xs.Close() })
	}
	a, err := NewAgent(cfg, b, NewProcMeminfo(r.root), store, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.runErr = make(chan error, 1)
	go func() { r.runErr <- a.Run(ctx) }()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop cancels the agent and returns what Run returned.
func (r *rig) stop() error {
	r.cancel()
	select {
	case err, ok := <-r.runErr:
		if ok {
			close(r.runErr)
		}
		return err
	case <-time.After(5 * time.Second):
		r.t.Fatal("agent did not stop")
	}
	return nil
}

func (r *rig) sysfs(name string) uint64 {
	r.t.Helper()
	data, err := os.ReadFile(filepath.Join(r.root, BalloonSysfsDir, name))
	if err != nil {
		r.t.Fatal(err)
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	return v
}

func (r *rig) key(k string) string {
	v, _ := r.xs.Read(k)
	return v
}

func (r *rig) control(v string) {
	r.t.Helper()
	// dom0 writes the absolute path.
	if err := r.xs.Write("/local/domain/3/"+ControlKey, v); err != nil {
		r.t.Fatal(err)
	}
}

// waitFor polls cond for up to 5 s.
func (r *rig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s; target_kb %d, current_kb %d, state %q, ack %q", what,
				r.sysfs("target_kb"), r.sysfs("info/current_kb"), r.keyOrNil(KeyState), r.keyOrNil(KeyAck))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *rig) keyOrNil(k string) string {
	if r.xs == nil {
		return ""
	}
	return r.key(k)
}

func (r *rig) setCommitted(kib uint64) { writeMeminfo(r.t, r.root, guestMaxKiB, kib) }

func TestAgentTicks(t *testing.T) {
	r := newRig(t, testConfig(), 300000, true)
	// The first tick shrinks by one step; later ticks reach committed+reserve.
	goal := uint64(300000 + 65536)
	r.waitFor("shrink to committed+reserve", func() bool { return r.sysfs("target_kb") == goal })
	r.waitFor("report", func() bool { return r.key(KeyTarget) == strconv.FormatUint(goal, 10) })
	for k, want := range map[string]string{
		KeyVersion:   ProtocolVersion,
		KeyState:     StateRunning,
		KeyCommitted: "300000",
		KeyMax:       strconv.Itoa(guestMaxKiB),
	} {
		if got := r.key(k); got != want {
			t.Errorf("xenstore %s = %q, want %q", k, got, want)
		}
	}
	// Demand grows: 10 % reserve beats 64 MiB.
	r.setCommitted(800000)
	r.waitFor("growth", func() bool { return r.sysfs("target_kb") == 880000 })
	// A small change stays within the dead band.
	r.setCommitted(805000)
	time.Sleep(5 * testConfig().Interval)
	if got := r.sysfs("target_kb"); got != 880000 {
		t.Errorf("target_kb after a small change = %d, want 880000 (hysteresis)", got)
	}
	// The toolstack lowers the domain's memory: the ceiling follows.
	r.setCommitted(1500000)
	r.xs.Write("memory/target", "1048576")
	r.waitFor("ceiling", func() bool { return r.sysfs("target_kb") == 1048576 && r.key(KeyMax) == "1048576" })
	// Clean exit gives the guest its ceiling and says so.
	if err := r.stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if got := r.key(KeyState); got != StateStopped {
		t.Errorf("state after stop = %q, want %q", got, StateStopped)
	}
	if got := r.sysfs("target_kb"); got != 1048576 {
		t.Errorf("target_kb after stop = %d, want the ceiling 1048576", got)
	}
}

func TestAgentSqueeze(t *testing.T) {
	r := newRig(t, testConfig(), 300000, true)
	r.waitFor("steady state", func() bool { return r.sysfs("target_kb") == 365536 })

	r.control("squeeze mig-1")
	r.waitFor("squeeze ack", func() bool { return r.key(KeyAck) == "squeeze mig-1" })
	want := map[string]string{
		KeyState:    StateSqueezed,
		KeySqueezed: "316384", // 300000 + 16 MiB
		KeyResult:   ResultReached,
		KeyTarget:   "316384",
	}
	for k, v := range want {
		if got := r.key(k); got != v {
			t.Errorf("after squeeze: xenstore %s = %q, want %q", k, got, v)
		}
	}
	if got := r.sysfs("info/current_kb"); got > 316384 {
		t.Errorf("current_kb at ack = %d, want <= 316384", got)
	}
	// Squeezed, ticks keep the squeeze goal rather than growing back.
	time.Sleep(4 * testConfig().Interval)
	if got := r.sysfs("target_kb"); got != 316384 {
		t.Errorf("target_kb while squeezed = %d, want 316384", got)
	}

	r.control("done mig-1")
	r.waitFor("done ack", func() bool { return r.key(KeyAck) == "done mig-1" })
	if got := r.key(KeyState); got != StateRunning {
		t.Errorf("state after done = %q, want running", got)
	}
	if got := r.sysfs("target_kb"); got != 365536 {
		t.Errorf("target_kb after done = %d, want 365536 (grown back)", got)
	}
}

func TestAgentSqueezeTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.SqueezeTimeout = 150 * time.Millisecond
	r := newRig(t, cfg, 300000, true)
	r.waitFor("steady state", func() bool { return r.sysfs("info/current_kb") == 365536 })
	r.kernel.stall.Store(true) // the driver cannot free memory

	start := time.Now()
	r.control("squeeze mig-2")
	r.waitFor("squeeze ack", func() bool { return r.key(KeyAck) == "squeeze mig-2" })
	if d := time.Since(start); d < cfg.SqueezeTimeout {
		t.Errorf("acked after %v, before the %v bound although the balloon never moved", d, cfg.SqueezeTimeout)
	}
	if got := r.key(KeyResult); got != ResultTimeout {
		t.Errorf("result = %q, want %q", got, ResultTimeout)
	}
	if got := r.key(KeySqueezed); got != "365536" {
		t.Errorf("squeezed_kb = %q, want what the guest still held, 365536", got)
	}
	if got := r.key(KeyState); got != StateSqueezed {
		t.Errorf("state = %q, want %q", got, StateSqueezed)
	}
}

// TestAgentSqueezeStalled: a balloon that stops shrinking (a busy guest
// allocating as fast as it frees) is acknowledged after squeezeStall, long
// before the bounded wait, so the migration does not wait for nothing.
func TestAgentSqueezeStalled(t *testing.T) {
	cfg := testConfig()
	cfg.SqueezeTimeout = time.Minute
	r := newRig(t, cfg, 300000, true)
	r.waitFor("steady state", func() bool { return r.sysfs("info/current_kb") == 365536 })
	r.kernel.stall.Store(true)

	start := time.Now()
	r.control("squeeze mig-s")
	r.waitFor("squeeze ack", func() bool { return r.key(KeyAck) == "squeeze mig-s" })
	if d := time.Since(start); d < squeezeStall || d > cfg.SqueezeTimeout/2 {
		t.Errorf("acked after %v, want about the %v stall bound", d, squeezeStall)
	}
	if got := r.key(KeyResult); got != ResultStalled {
		t.Errorf("result = %q, want %q", got, ResultStalled)
	}
}

func TestAgentCancelDuringSqueeze(t *testing.T) {
	r := newRig(t, testConfig(), 300000, true)
	r.waitFor("steady state", func() bool { return r.sysfs("info/current_kb") == 365536 })
	r.kernel.stall.Store(true)
	r.control("squeeze mig-3")
	r.waitFor("squeezing", func() bool { return r.key(KeyState) == StateSqueezing })
	r.control("cancel mig-3")
	r.waitFor("cancel ack", func() bool { return r.key(KeyAck) == "cancel mig-3" })
	if got := r.key(KeyState); got != StateRunning {
		t.Errorf("state after cancel = %q, want running", got)
	}
	r.kernel.stall.Store(false)
	r.waitFor("normal target", func() bool { return r.sysfs("target_kb") == 365536 })
}

func TestAgentControlKeyGone(t *testing.T) {
	r := newRig(t, testConfig(), 300000, true)
	r.waitFor("steady state", func() bool { return r.sysfs("target_kb") == 365536 })
	r.control("squeeze mig-4")
	r.waitFor("squeeze ack", func() bool { return r.key(KeyAck) == "squeeze mig-4" })
	// As on the destination host, whose xenstore has no control key and
	// none of the agent's keys.
	r.xs.Rm("/local/domain/3/data")
	r.xs.Rm("/local/domain/3/control")
	r.waitFor("back to normal", func() bool { return r.key(KeyState) == StateRunning && r.sysfs("target_kb") == 365536 })
	r.waitFor("keys rewritten", func() bool { return r.key(KeyVersion) == ProtocolVersion && r.key(KeyTarget) == "365536" })
}

func TestAgentUnknownCommand(t *testing.T) {
	r := newRig(t, testConfig(), 300000, true)
	r.waitFor("start", func() bool { return r.key(KeyState) == StateRunning })
	r.control("explode now")
	r.waitFor("ack", func() bool { return r.key(KeyAck) == "explode now" })
	if got := r.key(KeyError); !strings.Contains(got, `unknown command "explode"`) {
		t.Errorf("error key = %q, want it to name the unknown command", got)
	}
	if got := r.key(KeyState); got != StateRunning {
		t.Errorf("state = %q, want running", got)
	}
}

func TestAgentSqueezeHoldMax(t *testing.T) {
	cfg := testConfig()
	cfg.SqueezeHoldMax = 100 * time.Millisecond
	r := newRig(t, cfg, 300000, true)
	r.waitFor("steady state", func() bool { return r.sysfs("target_kb") == 365536 })
	r.control("squeeze mig-5")
	r.waitFor("squeeze ack", func() bool { return r.key(KeyAck) == "squeeze mig-5" })
	// dom0 never says done: the agent lets go by itself.
	r.waitFor("release", func() bool { return r.key(KeyState) == StateRunning && r.sysfs("target_kb") == 365536 })
	if got := r.key(KeyError); !strings.Contains(got, "without done or cancel") {
		t.Errorf("error key = %q", got)
	}
}

func TestAgentWithoutXenstore(t *testing.T) {
	r := newRig(t, testConfig(), 300000, false)
	r.waitFor("self-ballooning", func() bool { return r.sysfs("target_kb") == 365536 })
	if err := r.stop(); err != nil {
		t.Errorf("Run = %v", err)
	}
	if got := r.sysfs("target_kb"); got != guestMaxKiB {
		t.Errorf("target_kb after stop = %d, want %d", got, guestMaxKiB)
	}
}

func TestAgentDryRun(t *testing.T) {
	cfg := testConfig()
	cfg.DryRun = true
	r := newRig(t, cfg, 300000, true)
	r.waitFor("report", func() bool { return r.key(KeyTarget) != "" })
	time.Sleep(3 * cfg.Interval)
	if got := r.sysfs("target_kb"); got != guestMaxKiB {
		t.Errorf("target_kb in dry run = %d, want it untouched (%d)", got, guestMaxKiB)
	}
}

func TestAgentMissingDriver(t *testing.T) {
	root := fakeGuest(t, guestMaxKiB, guestMaxKiB, 300000)
	b, err := OpenSysfsBalloon(root)
	if err != nil {
		t.Fatal(err)
	}
	// The driver goes away (module unloaded) before the agent starts.
	os.RemoveAll(filepath.Join(root, "sys"))
	a, err := NewAgent(testConfig(), b, NewProcMeminfo(root), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Run without driver = %v, want an error wrapping fs.ErrNotExist", err)
	}
}

func TestAgentMissingMeminfoIsNotFatal(t *testing.T) {
	r := newRig(t, testConfig(), 300000, true)
	r.waitFor("start", func() bool { return r.key(KeyState) == StateRunning })
	os.Remove(filepath.Join(r.root, MeminfoPath))
	r.waitFor("error reported", func() bool { return strings.Contains(r.key(KeyError), "meminfo") })
	r.setCommitted(300000)
	r.waitFor("recovery", func() bool { return r.sysfs("target_kb") == 365536 })
	if err := r.stop(); err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestNewAgentRejectsBadParams(t *testing.T) {
	cfg := testConfig()
	cfg.Params.FloorKiB = 0
	root := fakeGuest(t, guestMaxKiB, guestMaxKiB, 300000)
	b, _ := OpenSysfsBalloon(root)
	if _, err := NewAgent(cfg, b, NewProcMeminfo(root), nil, nil); err == nil {
		t.Error("NewAgent with floor 0 = nil error")
	}
}
