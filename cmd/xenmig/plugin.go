package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/xenmig/xenmig/conf"
	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/plugin"
	"github.com/xenmig/xenmig/xenctrl"
	"github.com/xenmig/xenmig/xenctrl/sim"
	"github.com/xenmig/xenmig/xenmig"
)

// newPluginCommand is `xenmig plugin`: the toolstack plugin server.
func newPluginCommand(a *app) *cobra.Command {
	var metricsListen string
	cmd := &cobra.Command{
		Use:   "plugin",
		Short: "Serve a toolstack as its hashicorp/go-plugin plugin (gRPC)",
		Long: `Run as the plugin of a toolstack that drives xenmig through hashicorp/go-plugin
(gRPC) instead of this command line. The toolstack starts this command through
its plugin client; each call (migrate, receive, serve, doctor) runs here with
the backend, migration plan and TLS settings of the configuration, and the
global flags (--config, --backend, --insecure-plaintext, --log-level) apply as
they do to every command. docs/PLUGIN.md describes the service.

It ignores SIGINT, as go-plugin plugins do (the toolstack owns the terminal);
SIGTERM cancels the calls in flight and ends it.

With --metrics-listen (receiver.metrics_listen) it serves the receiving side's
Prometheus metrics over HTTP at /metrics, as ` + "`xenmig receive`" + ` does.`,
		Example: `  xenmig --config /etc/xenmig/xenmig.toml plugin   # as a toolstack's plugin client runs it`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Getenv(plugin.Handshake.MagicCookieKey) != plugin.Handshake.MagicCookieValue {
				return withCode(exitUsage, errors.New("`xenmig plugin` is started by a toolstack's plugin client (see docs/PLUGIN.md), not by hand"))
			}
			signal.Ignore(os.Interrupt)
			if _, err := a.serveMetrics(cmd.Context(), metricsListen); err != nil {
				return err
			}
			s := &pluginServer{a: a, stop: cmd.Context()}
			defer s.close()
			logger := hclog.New(&hclog.LoggerOptions{Name: "xenmig-plugin",
				Level: hclog.LevelFromString(a.cfg.Log.Level), Output: os.Stderr, JSONFormat: true})
			if err := plugin.Serve(cmd.Context(), s, logger); err != nil {
				return withCode(exitFailure, err)
			}
			if cmd.Context().Err() != nil {
				a.log.Info("stopping: cancelling the plugin's calls in flight")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "", `serve Prometheus metrics at http://ADDR/metrics (default: receiver.metrics_listen, none)`)
	return cmd
}

// pluginServer is the plugin's Migrator: each call runs the engine on the
// backend the configuration names. The backend is opened at the first call
// and kept for the life of the process, so a simulated host keeps the
// domains it received.
type pluginServer struct {
	a    *app
	stop context.Context // the process is told to stop: calls in flight end

	calls sync.RWMutex // each call holds it for reading; close waits for them

	mu      sync.Mutex // guards the backend
	hv      hypervisor.Hypervisor
	closeHV func()
	closed  bool
}

// begin starts a call: its context also ends when the process is told to
// stop. The returned function ends the call.
func (s *pluginServer) begin(ctx context.Context) (context.Context, func()) {
	s.calls.RLock()
	ctx, cancel := context.WithCancel(ctx)
	unhook := context.AfterFunc(s.stop, cancel)
	return ctx, func() {
		unhook()
		cancel()
		s.calls.RUnlock()
	}
}

// backend returns the hypervisor, opening it on first use.
func (s *pluginServer) backend() (hypervisor.Hypervisor, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("the plugin is stopping: %w", hypervisor.ErrClosed)
	}
	if s.hv == nil {
		hv, closeHV, err := s.a.openBackend()
		if err != nil {
			return nil, err
		}
		s.hv, s.closeHV = hv, closeHV
	}
	return s.hv, nil
}

// close waits for the calls in flight and releases the backend.
func (s *pluginServer) close() {
	s.calls.Lock()
	defer s.calls.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.closeHV != nil {
		s.closeHV()
	}
}

// Migrate moves a domain of this host, as `xenmig migrate` does.
func (s *pluginServer) Migrate(ctx context.Context, req plugin.MigrateRequest) (*xenmig.Result, error) {
	ctx, end := s.begin(ctx)
	defer end()
	if req.Domain == "" || req.Destination == "" {
		return nil, fmt.Errorf("a migration needs a domain and a destination: %w", hypervisor.ErrInvalid)
	}
	plan, err := s.plan(req)
	if err != nil {
		return nil, err
	}
	addr, err := s.a.destination(req.Destination)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", hypervisor.ErrInvalid, err)
	}
	t, err := s.a.transport(false)
	if err != nil {
		return nil, err
	}
	hv, err := s.backend()
	if err != nil {
		return nil, err
	}
	var reference *hypervisor.Digest
	if req.SimGuest != nil {
		if reference, err = s.bootSimGuest(ctx, hv, req.Domain, *req.SimGuest, plan.Balloon); err != nil {
			return nil, err
		}
		plan.ReportGuest = reference != nil
	}
	dom, err := hv.Lookup(req.Domain)
	if err != nil {
		return nil, fmt.Errorf("domain %q: %w", req.Domain, err)
	}
	opts := []xenmig.Option{xenmig.WithLogger(s.a.log.WithField("side", "source")), xenmig.WithTransport(t)}
	if req.OnProgress != nil {
		opts = append(opts, xenmig.WithProgress(req.OnProgress, req.ProgressInterval))
	}
	res, err := xenmig.Migrate(ctx, hv, dom, addr, plan, opts...)
	if err != nil {
		return nil, err
	}
	if reference != nil {
		match := res.Digest == reference.String()
		res.DigestMatch = &match
	}
	return res, nil
}

// plan is the configured plan with the request's choices on top.
func (s *pluginServer) plan(req plugin.MigrateRequest) (xenmig.Plan, error) {
	c := planChoices{mode: req.Mode, push: req.Push, pivots: req.Pivots, bandwidth: req.Bandwidth, balloon: req.Balloon}
	return c.over(s.a.plan())
}

// bootSimGuest boots the guest g as domain name on the simulated host and
// lets it warm up. When the guest runs to an end, it returns the memory
// digest of the same run without migration.
func (s *pluginServer) bootSimGuest(ctx context.Context, hv hypervisor.Hypervisor, name string, g plugin.SimGuest, balloon bool) (*hypervisor.Digest, error) {
	h, ok := hv.(*sim.Host)
	if !ok {
		return nil, fmt.Errorf("a simulated guest needs backend sim, not %s: %w", s.a.cfg.Backend, hypervisor.ErrInvalid)
	}
	gf := guestFlags{workload: g.Workload, vcpus: g.VCPUs, seed: g.Seed, rate: g.Rate,
		run: g.Run, warmup: g.Warmup, writePercent: -1}
	for _, size := range []struct {
		dst   *string
		bytes uint64
	}{{&gf.memory, g.Memory}, {&gf.used, g.Used}, {&gf.workingSet, g.WorkingSet}} {
		if size.bytes > 0 {
			*size.dst = conf.Size(size.bytes).String()
		}
	}
	spec, err := gf.spec(s.a, name, balloon)
	if err != nil {
		return nil, fmt.Errorf("simulated guest %s: %w (%w)", name, err, hypervisor.ErrInvalid)
	}
	return s.a.bootSimGuest(ctx, h, spec, g.Warmup)
}

// Receive accepts one migration onto this host, as `xenmig receive` does.
func (s *pluginServer) Receive(ctx context.Context, req plugin.ReceiveRequest) (*xenmig.Incoming, error) {
	ctx, end := s.begin(ctx)
	defer end()
	hv, l, err := s.listen(req)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	return xenmig.Receive(ctx, hv, l, s.a.receiveOptions()...)
}

// Serve accepts migrations onto this host until ctx is done, as `xenmig
// receive --serve` does.
func (s *pluginServer) Serve(ctx context.Context, req plugin.ReceiveRequest) error {
	ctx, end := s.begin(ctx)
	defer end()
	hv, l, err := s.listen(req)
	if err != nil {
		return err
	}
	defer l.Close()
	for {
		inc, err := xenmig.Receive(ctx, hv, l, s.a.receiveOptions()...)
		switch {
		case err == nil:
			s.a.log.WithFields(map[string]any{"domain": inc.Name, "domid": inc.Domain}).Info("domain received")
			emit(req, plugin.ReceiveEvent{Kind: plugin.Received, Incoming: inc})
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			s.a.log.WithError(err).Error("incoming migration failed; still listening")
			emit(req, plugin.ReceiveEvent{Kind: plugin.Failed, Err: err})
		}
	}
}

// listen opens the backend and listens on req.Listen (receiver.listen by
// default), reporting the address.
func (s *pluginServer) listen(req plugin.ReceiveRequest) (hypervisor.Hypervisor, *xenmig.Listener, error) {
	addr := req.Listen
	if addr == "" {
		addr = s.a.cfg.Receiver.Listen
	}
	t, err := s.a.transport(true)
	if err != nil {
		return nil, nil, err
	}
	hv, err := s.backend()
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	l := xenmig.Listen(ln, t, s.a.receiveOptions()...)
	s.a.log.WithField("addr", l.Addr().String()).Info("waiting for migrations")
	emit(req, plugin.ReceiveEvent{Kind: plugin.Listening, Addr: l.Addr().String()})
	return hv, l, nil
}

// emit reports e to the caller, if it asked.
func emit(req plugin.ReceiveRequest, e plugin.ReceiveEvent) {
	if req.OnEvent != nil {
		req.OnEvent(e)
	}
}

// Doctor checks this host, as `xenmig doctor` does.
func (s *pluginServer) Doctor(_ context.Context, domain string) (*plugin.DoctorReport, error) {
	r := xenctrl.Doctor(domain)
	body, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode the doctor's report: %w", err)
	}
	return &plugin.DoctorReport{PostCopy: r.PostCopy, Text: r.String(), JSON: body}, nil
}
