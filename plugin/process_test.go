package plugin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/plugin"
	"github.com/xenmig/xenmig/xenmig"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// xenmigBinary builds cmd/xenmig once for the tests that run it as a plugin.
func xenmigBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "xenmig-plugin-test")
		if buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", binDir, "github.com/xenmig/xenmig/cmd/xenmig").CombinedOutput()
		if err != nil {
			buildErr = errors.New("go build cmd/xenmig: " + err.Error() + "\n" + string(out))
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "xenmig")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// syncBuffer collects a plugin's log for the test's failure messages.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// openPlugin starts `xenmig plugin` on its own simulated host, as a
// toolstack would, and returns its client and its log.
func openPlugin(t *testing.T) (*plugin.Client, *syncBuffer) {
	t.Helper()
	log := &syncBuffer{}
	c, err := plugin.Open(plugin.Config{
		Cmd:    exec.Command(xenmigBinary(t), "--backend", "sim", "--insecure-plaintext", "--log-level", "info", "plugin"),
		Stderr: log,
	})
	if err != nil {
		t.Fatalf("open the plugin: %v", err)
	}
	t.Cleanup(c.Close)
	return c, log
}

// TestPluginProcessMigration: two `xenmig plugin` processes, each a
// simulated host; one receives, the other boots a guest and migrates it
// there. The guest's final memory equals the unmigrated run's, progress
// arrives while it moves, and both ends agree on what moved.
func TestPluginProcessMigration(t *testing.T) {
	src, srcLog := openPlugin(t)
	dst, dstLog := openPlugin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()

	type outcome struct {
		inc *xenmig.Incoming
		err error
	}
	listening := make(chan string, 1)
	received := make(chan outcome, 1)
	go func() {
		inc, err := dst.Receive(ctx, plugin.ReceiveRequest{Listen: "127.0.0.1:0", OnEvent: func(e plugin.ReceiveEvent) {
			if e.Kind == plugin.Listening {
				listening <- e.Addr
			}
		}})
		received <- outcome{inc, err}
	}()
	var addr string
	select {
	case addr = <-listening:
	case o := <-received:
		t.Fatalf("Receive ended before listening: %v\n%s", o.err, dstLog)
	}

	var progress []xenmig.Progress
	res, err := src.Migrate(ctx, plugin.MigrateRequest{
		Domain: "vm-plugin", Destination: addr,
		SimGuest: &plugin.SimGuest{Memory: 64 << 20, Used: 16 << 20, Workload: "stress",
			Run: time.Second, Warmup: 150 * time.Millisecond},
		OnProgress:       func(p xenmig.Progress) { progress = append(progress, p) },
		ProgressInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Migrate: %v\nsource log:\n%s\ndestination log:\n%s", err, srcLog, dstLog)
	}
	if res.DigestMatch == nil || !*res.DigestMatch {
		t.Errorf("digest_match = %v, want true", res.DigestMatch)
	}
	if res.Mode != xenmig.PostCopy || res.Domain != "vm-plugin" {
		t.Errorf("result for %q in mode %q, want vm-plugin in postcopy", res.Domain, res.Mode)
	}
	// Each page once, but those sent while the destination prepared and
	// written again before the switchover.
	if res.PagesOwned == 0 || res.PagesSent < res.PagesOwned || res.PagesSent > res.PagesOwned+res.EarlyStale {
		t.Errorf("pages_sent %d, pages_owned %d, early_stale %d: want sent = owned (+ up to early_stale), non-zero", res.PagesSent, res.PagesOwned, res.EarlyStale)
	}
	if len(progress) == 0 {
		t.Fatalf("no progress events")
	}
	phases := map[string]bool{}
	for i, p := range progress {
		phases[p.Phase] = true
		if i > 0 && p.Elapsed < progress[i-1].Elapsed {
			t.Errorf("progress %d: elapsed %v after %v", i, p.Elapsed, progress[i-1].Elapsed)
		}
	}
	if last := progress[len(progress)-1]; last.Bytes == 0 || last.Bytes > res.BytesSent {
		t.Errorf("last progress reports %d bytes sent, want 1..%d", last.Bytes, res.BytesSent)
	}
	if !phases["postcopy"] {
		t.Errorf("progress phases %v: no postcopy", phases)
	}

	o := <-received
	if o.err != nil {
		t.Fatalf("Receive: %v\n%s", o.err, dstLog)
	}
	if o.inc.Name != "vm-plugin" || o.inc.Mode != xenmig.PostCopy || o.inc.Digest != res.Digest {
		t.Errorf("received %+v, want vm-plugin in postcopy with digest %s", o.inc, res.Digest)
	}
}

// TestPluginProcessFailures: failures in the plugin process reach the
// toolstack as errors it can test: a closed port is a connection refused
// before the switchover (the domain stays on the source), an unknown domain
// is ErrNotFound, a bad mode is ErrBadPlan.
func TestPluginProcessFailures(t *testing.T) {
	src, srcLog := openPlugin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	_, err = src.Migrate(ctx, plugin.MigrateRequest{Domain: "vm-stays", Destination: closed,
		SimGuest: &plugin.SimGuest{Memory: 16 << 20, Used: 4 << 20, Workload: "idle"}})
	if err == nil {
		t.Fatalf("Migrate to the closed port %s succeeded", closed)
	}
	if errors.Is(err, xenmig.ErrCommitted) || !errors.Is(err, syscall.ECONNREFUSED) || status.Code(err) != codes.Unavailable {
		t.Errorf("Migrate to a closed port: %v (code %v); want connection refused, Unavailable, not ErrCommitted\n%s",
			err, status.Code(err), srcLog)
	}
	// The domain is still on the source: migrating it again finds it.
	_, err = src.Migrate(ctx, plugin.MigrateRequest{Domain: "vm-stays", Destination: closed})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("second Migrate of vm-stays: %v, want connection refused (the domain still on the source)", err)
	}

	for _, tt := range []struct {
		name string
		req  plugin.MigrateRequest
		want error
		code codes.Code
	}{
		{"unknown domain", plugin.MigrateRequest{Domain: "no-such-vm", Destination: closed}, hypervisor.ErrNotFound, codes.NotFound},
		{"bad mode", plugin.MigrateRequest{Domain: "vm-stays", Destination: closed, Mode: "sideways"}, xenmig.ErrBadPlan, codes.InvalidArgument},
		{"no destination", plugin.MigrateRequest{Domain: "vm-stays"}, hypervisor.ErrInvalid, codes.InvalidArgument},
	} {
		_, err := src.Migrate(ctx, tt.req)
		if !errors.Is(err, tt.want) || errors.Is(err, xenmig.ErrCommitted) || status.Code(err) != tt.code {
			t.Errorf("%s: Migrate = %v (code %v), want %v (%v)", tt.name, err, status.Code(err), tt.want, tt.code)
		}
	}

	r, err := src.Doctor(ctx, "")
	if err != nil {
		t.Fatalf("Doctor: %v", err)
	}
	var report struct {
		PostCopy bool `json:"post_copy"`
	}
	if err := json.Unmarshal(r.JSON, &report); err != nil || report.PostCopy != r.PostCopy || r.Text == "" {
		t.Errorf("Doctor = %+v (JSON error %v): want its JSON to agree and a text", r, err)
	}
}

// TestPluginProcessServe: a plugin serving migrations reports each one it
// receives and stops when the caller cancels; the request's mode reaches the
// engine.
func TestPluginProcessServe(t *testing.T) {
	src, srcLog := openPlugin(t)
	dst, dstLog := openPlugin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	serveCtx, stopServe := context.WithCancel(ctx)
	defer stopServe()
	events := make(chan plugin.ReceiveEvent, 4)
	served := make(chan error, 1)
	go func() {
		served <- dst.Serve(serveCtx, plugin.ReceiveRequest{Listen: "127.0.0.1:0", OnEvent: func(e plugin.ReceiveEvent) { events <- e }})
	}()
	var addr string
	select {
	case e := <-events:
		if e.Kind != plugin.Listening {
			t.Fatalf("first event %+v, want listening", e)
		}
		addr = e.Addr
	case err := <-served:
		t.Fatalf("Serve ended before listening: %v\n%s", err, dstLog)
	}

	res, err := src.Migrate(ctx, plugin.MigrateRequest{Domain: "vm-served", Destination: addr, Mode: xenmig.PreCopy,
		SimGuest: &plugin.SimGuest{Memory: 16 << 20, Used: 4 << 20, Workload: "kcompile", Run: 300 * time.Millisecond}})
	if err != nil {
		t.Fatalf("Migrate: %v\nsource log:\n%s\ndestination log:\n%s", err, srcLog, dstLog)
	}
	if res.Mode != xenmig.PreCopy || res.DigestMatch == nil || !*res.DigestMatch {
		t.Errorf("result mode %q, digest_match %v; want precopy and true", res.Mode, res.DigestMatch)
	}
	select {
	case e := <-events:
		if e.Kind != plugin.Received || e.Incoming == nil || e.Incoming.Name != "vm-served" || e.Incoming.Mode != xenmig.PreCopy {
			t.Errorf("event after the migration %+v, want vm-served received in precopy", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no received event\n%s", dstLog)
	}
	stopServe()
	if err := <-served; !errors.Is(err, context.Canceled) {
		t.Errorf("Serve after cancel = %v, want context.Canceled", err)
	}
}
