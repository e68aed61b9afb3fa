package plugin_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/plugin"
	"github.com/xenmig/xenmig/xenmig"
)

// fakeMigrator answers plugin calls with the functions a test gives it.
type fakeMigrator struct {
	migrate func(context.Context, plugin.MigrateRequest) (*xenmig.Result, error)
	receive func(context.Context, plugin.ReceiveRequest) (*xenmig.Incoming, error)
	serve   func(context.Context, plugin.ReceiveRequest) error
	doctor  func(context.Context, string) (*plugin.DoctorReport, error)
}

func (f *fakeMigrator) Migrate(ctx context.Context, req plugin.MigrateRequest) (*xenmig.Result, error) {
	return f.migrate(ctx, req)
}

func (f *fakeMigrator) Receive(ctx context.Context, req plugin.ReceiveRequest) (*xenmig.Incoming, error) {
	return f.receive(ctx, req)
}

func (f *fakeMigrator) Serve(ctx context.Context, req plugin.ReceiveRequest) error {
	return f.serve(ctx, req)
}

func (f *fakeMigrator) Doctor(ctx context.Context, domain string) (*plugin.DoctorReport, error) {
	return f.doctor(ctx, domain)
}

// dispense serves impl over an in-process gRPC connection, as go-plugin
// does between two processes, and returns the client's Migrator.
func dispense(t *testing.T, impl plugin.Migrator) plugin.Migrator {
	t.Helper()
	client, _ := goplugin.TestPluginGRPCConn(t, false, plugin.PluginMap(impl))
	t.Cleanup(func() { client.Close() }) // which also stops the server
	raw, err := client.Dispense(plugin.Name)
	if err != nil {
		t.Fatalf("Dispense(%q): %v", plugin.Name, err)
	}
	m, ok := raw.(plugin.Migrator)
	if !ok {
		t.Fatalf("Dispense(%q) = %T, want a plugin.Migrator", plugin.Name, raw)
	}
	return m
}

// TestMigrateOverGRPC: the request reaches the plugin intact, progress
// snapshots come back in order, and the result arrives whole.
func TestMigrateOverGRPC(t *testing.T) {
	match := true
	want := &xenmig.Result{Mode: xenmig.Hybrid, Push: xenmig.PushWorkingSet, Domain: "web01", TotalMS: 812.5,
		DowntimeMS: 3.25, PagesSent: 4096, PagesOwned: 4096, PhasePages: map[string]uint64{"precopy": 3000, "push": 1096},
		PhaseBytes: map[string]uint64{"precopy": 3000 * 4096, "push": 1096 * 4096}, VCPUBlockedMS: []float64{1.5, 2},
		DigestMatch: &match, Digest: "abc123"}
	snaps := []xenmig.Progress{
		{Phase: "connect", Elapsed: time.Millisecond},
		{Phase: "precopy", Round: 1, Done: 10, Total: 100, Bytes: 40960, Elapsed: 20 * time.Millisecond},
		{Phase: "postcopy", Done: 100, Total: 100, Bytes: 409600, Elapsed: 40 * time.Millisecond},
	}
	var got plugin.MigrateRequest
	m := dispense(t, &fakeMigrator{migrate: func(_ context.Context, req plugin.MigrateRequest) (*xenmig.Result, error) {
		got = req
		if req.OnProgress != nil {
			for _, p := range snaps {
				req.OnProgress(p)
			}
		}
		return want, nil
	}})

	req := plugin.MigrateRequest{Domain: "web01", Destination: "hostB:8002", Mode: xenmig.Hybrid, Push: xenmig.PushWorkingSet,
		Pivots: 9, Bandwidth: 62_500_000, Balloon: true, ProgressInterval: 50 * time.Millisecond,
		SimGuest: &plugin.SimGuest{Memory: 64 << 20, Used: 16 << 20, Workload: "web", VCPUs: 2, Seed: 7,
			WorkingSet: 8 << 20, Rate: 1000, Run: time.Second, Warmup: 150 * time.Millisecond}}
	var progress []xenmig.Progress
	req.OnProgress = func(p xenmig.Progress) { progress = append(progress, p) }
	res, err := m.Migrate(context.Background(), req)
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("result = %+v, want %+v", res, want)
	}
	if !reflect.DeepEqual(progress, snaps) {
		t.Errorf("progress = %+v, want %+v", progress, snaps)
	}
	if got.OnProgress == nil {
		t.Errorf("the plugin's request has no OnProgress though the caller asked for progress")
	}
	got.OnProgress, req.OnProgress = nil, nil
	if !reflect.DeepEqual(got, req) {
		t.Errorf("the plugin got %+v, want %+v", got, req)
	}

	// Without OnProgress the plugin is not asked for progress.
	if _, err := m.Migrate(context.Background(), plugin.MigrateRequest{Domain: "web01", Destination: "hostB"}); err != nil {
		t.Fatalf("Migrate without progress: %v", err)
	}
	if got.OnProgress != nil || got.ProgressInterval != 0 || got.SimGuest != nil {
		t.Errorf("without OnProgress and SimGuest the plugin got OnProgress %v, interval %v, sim guest %v; want none",
			got.OnProgress != nil, got.ProgressInterval, got.SimGuest)
	}
}

// TestErrorsOverGRPC: a failure in the plugin reaches the caller with its
// message, its gRPC code and every sentinel it wrapped, testable with
// errors.Is; an error wrapping none keeps its message only.
func TestErrorsOverGRPC(t *testing.T) {
	all := []error{xenmig.ErrCommitted, xenmig.ErrBadPlan, xenmig.ErrRefused, xenmig.ErrVersion, xenmig.ErrNotXenmig,
		xenmig.ErrAborted, hypervisor.ErrNotFound, hypervisor.ErrBusy, hypervisor.ErrPaged, hypervisor.ErrNotPopulated,
		hypervisor.ErrInvalid, hypervisor.ErrPagingUnsupported, hypervisor.ErrGuestUnsupported, hypervisor.ErrClosed,
		syscall.ECONNREFUSED, context.Canceled, context.DeadlineExceeded}
	for _, tt := range []struct {
		name string
		err  error
		want []error
		code codes.Code
	}{
		{"committed", fmt.Errorf("domain web01: %w: connection lost", xenmig.ErrCommitted), []error{xenmig.ErrCommitted}, codes.Internal},
		{"committed and aborted", fmt.Errorf("%w: %w", xenmig.ErrCommitted, xenmig.ErrAborted), []error{xenmig.ErrCommitted, xenmig.ErrAborted}, codes.Internal},
		{"no paging at the destination", fmt.Errorf("%w: %w: enable paging: ENOSYS", xenmig.ErrAborted, hypervisor.ErrPagingUnsupported),
			[]error{xenmig.ErrAborted, hypervisor.ErrPagingUnsupported}, codes.FailedPrecondition},
		{"guest", fmt.Errorf("web01: %w", hypervisor.ErrGuestUnsupported), []error{hypervisor.ErrGuestUnsupported}, codes.FailedPrecondition},
		{"bad plan", fmt.Errorf("%w: mode %q", xenmig.ErrBadPlan, "sideways"), []error{xenmig.ErrBadPlan}, codes.InvalidArgument},
		{"version", fmt.Errorf("hostB: %w", xenmig.ErrVersion), []error{xenmig.ErrVersion}, codes.FailedPrecondition},
		{"refused", fmt.Errorf("hostB: %w", xenmig.ErrRefused), []error{xenmig.ErrRefused}, codes.FailedPrecondition},
		{"not xenmig", fmt.Errorf("%w: hostB", xenmig.ErrNotXenmig), []error{xenmig.ErrNotXenmig}, codes.FailedPrecondition},
		{"not found", fmt.Errorf("domain %q: %w", "web02", hypervisor.ErrNotFound), []error{hypervisor.ErrNotFound}, codes.NotFound},
		{"busy", &hypervisor.PageError{Op: "evict", GFN: 0x42, Err: hypervisor.ErrBusy}, []error{hypervisor.ErrBusy}, codes.FailedPrecondition},
		{"paged", &hypervisor.PageError{Op: "read", GFN: 0x43, Err: hypervisor.ErrPaged}, []error{hypervisor.ErrPaged}, codes.Internal},
		{"not populated", &hypervisor.PageError{Op: "read", GFN: 0x44, Err: hypervisor.ErrNotPopulated}, []error{hypervisor.ErrNotPopulated}, codes.Internal},
		{"invalid", fmt.Errorf("pause: %w", hypervisor.ErrInvalid), []error{hypervisor.ErrInvalid}, codes.InvalidArgument},
		{"closed", fmt.Errorf("pager: %w", hypervisor.ErrClosed), []error{hypervisor.ErrClosed}, codes.Unavailable},
		{"connection refused", fmt.Errorf("connect hostB: %w", syscall.ECONNREFUSED), []error{syscall.ECONNREFUSED}, codes.Unavailable},
		{"canceled", fmt.Errorf("warming up: %w", context.Canceled), []error{context.Canceled}, codes.Canceled},
		{"deadline", fmt.Errorf("handshake: %w", context.DeadlineExceeded), []error{context.DeadlineExceeded}, codes.DeadlineExceeded},
		{"plain", errors.New("disk full"), nil, codes.Unknown},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := dispense(t, &fakeMigrator{
				migrate: func(context.Context, plugin.MigrateRequest) (*xenmig.Result, error) { return nil, tt.err },
				doctor:  func(context.Context, string) (*plugin.DoctorReport, error) { return nil, tt.err },
			})
			_, merr := m.Migrate(context.Background(), plugin.MigrateRequest{Domain: "web01", Destination: "hostB"})
			_, derr := m.Doctor(context.Background(), "web01")
			for call, err := range map[string]error{"Migrate": merr, "Doctor": derr} {
				if err == nil {
					t.Fatalf("%s: nil error, want %q", call, tt.err)
				}
				if !strings.Contains(err.Error(), tt.err.Error()) {
					t.Errorf("%s: error %q does not carry the plugin's %q", call, err, tt.err)
				}
				if got := status.Code(err); got != tt.code {
					t.Errorf("%s: gRPC code %v, want %v", call, got, tt.code)
				}
				for _, s := range all {
					want := slices.Contains(tt.want, s)
					if got := errors.Is(err, s); got != want {
						t.Errorf("%s: errors.Is(err, %q) = %v, want %v", call, s, got, want)
					}
				}
			}
		})
	}
}

// TestReceiveOverGRPC: Receive reports the address it listens on, then
// returns what it received.
func TestReceiveOverGRPC(t *testing.T) {
	want := &xenmig.Incoming{Domain: 7, Name: "web01", Mode: xenmig.PostCopy, Pages: 16384, Digest: "abc123"}
	var gotListen string
	m := dispense(t, &fakeMigrator{receive: func(_ context.Context, req plugin.ReceiveRequest) (*xenmig.Incoming, error) {
		gotListen = req.Listen
		req.OnEvent(plugin.ReceiveEvent{Kind: plugin.Listening, Addr: "127.0.0.1:40123"})
		return want, nil
	}})
	var events []plugin.ReceiveEvent
	inc, err := m.Receive(context.Background(), plugin.ReceiveRequest{Listen: "127.0.0.1:0",
		OnEvent: func(e plugin.ReceiveEvent) { events = append(events, e) }})
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if gotListen != "127.0.0.1:0" {
		t.Errorf("the plugin listens on %q, want 127.0.0.1:0", gotListen)
	}
	if !reflect.DeepEqual(inc, want) {
		t.Errorf("Receive = %+v, want %+v", inc, want)
	}
	if len(events) == 0 || events[0].Kind != plugin.Listening || events[0].Addr != "127.0.0.1:40123" {
		t.Errorf("events = %+v, want Listening on 127.0.0.1:40123 first", events)
	}
}

// TestServeOverGRPC: Serve reports every event, failures with their
// sentinels, and ends with the caller's cancellation.
func TestServeOverGRPC(t *testing.T) {
	ended := make(chan error, 1)
	m := dispense(t, &fakeMigrator{serve: func(ctx context.Context, req plugin.ReceiveRequest) error {
		req.OnEvent(plugin.ReceiveEvent{Kind: plugin.Listening, Addr: "127.0.0.1:40124"})
		req.OnEvent(plugin.ReceiveEvent{Kind: plugin.Received, Incoming: &xenmig.Incoming{Domain: 3, Name: "a", Mode: xenmig.PreCopy, Pages: 10}})
		req.OnEvent(plugin.ReceiveEvent{Kind: plugin.Failed, Err: fmt.Errorf("%w: no paging here", hypervisor.ErrPagingUnsupported)})
		<-ctx.Done()
		ended <- ctx.Err()
		return ctx.Err()
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var events []plugin.ReceiveEvent
	err := m.Serve(ctx, plugin.ReceiveRequest{OnEvent: func(e plugin.ReceiveEvent) {
		events = append(events, e)
		if e.Kind == plugin.Failed {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Serve = %v, want context.Canceled", err)
	}
	var kinds []plugin.EventKind
	for _, e := range events {
		kinds = append(kinds, e.Kind)
	}
	if want := []plugin.EventKind{plugin.Listening, plugin.Received, plugin.Failed}; !reflect.DeepEqual(kinds, want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	if inc := events[1].Incoming; inc == nil || inc.Name != "a" || inc.Pages != 10 {
		t.Errorf("received %+v, want domain a with 10 pages", inc)
	}
	if err := events[2].Err; !errors.Is(err, hypervisor.ErrPagingUnsupported) || !strings.Contains(err.Error(), "no paging here") {
		t.Errorf("failed event's error %v: want it to wrap ErrPagingUnsupported and say why", err)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the plugin's Serve ended with %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("the caller's cancellation did not reach the plugin's Serve")
	}
}

// TestCancelOverGRPC: cancelling the caller's context cancels the
// migration in the plugin, and the caller sees its own cancellation.
func TestCancelOverGRPC(t *testing.T) {
	started := make(chan struct{})
	m := dispense(t, &fakeMigrator{migrate: func(ctx context.Context, _ plugin.MigrateRequest) (*xenmig.Result, error) {
		close(started)
		<-ctx.Done()
		return nil, fmt.Errorf("migration stopped: %w", ctx.Err())
	}})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	_, err := m.Migrate(ctx, plugin.MigrateRequest{Domain: "web01", Destination: "hostB"})
	if !errors.Is(err, context.Canceled) || errors.Is(err, xenmig.ErrCommitted) {
		t.Errorf("Migrate after cancel = %v, want context.Canceled and not ErrCommitted", err)
	}
}

// TestDoctorOverGRPC: the doctor's report arrives whole.
func TestDoctorOverGRPC(t *testing.T) {
	want := &plugin.DoctorReport{PostCopy: true, Text: "xen: 4.17\n", JSON: []byte(`{"post_copy":true}`)}
	var gotDomain string
	m := dispense(t, &fakeMigrator{doctor: func(_ context.Context, domain string) (*plugin.DoctorReport, error) {
		gotDomain = domain
		return want, nil
	}})
	r, err := m.Doctor(context.Background(), "web01")
	if err != nil {
		t.Fatalf("Doctor: %v", err)
	}
	if gotDomain != "web01" {
		t.Errorf("the plugin checked %q, want web01", gotDomain)
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("Doctor = %+v, want %+v", r, want)
	}
}
