package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/xenmig/xenmig/conf"
	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/internal/metrics"
	"github.com/xenmig/xenmig/xenctrl"
	"github.com/xenmig/xenmig/xenctrl/sim"
	"github.com/xenmig/xenmig/xenmig"
)

// openBackend returns the hypervisor the configuration names and a function
// that releases it.
func (a *app) openBackend() (hypervisor.Hypervisor, func(), error) {
	switch a.cfg.Backend {
	case conf.BackendSim:
		h, err := a.simHost()
		if err != nil {
			return nil, nil, err
		}
		return h, func() { h.Close() }, nil
	case conf.BackendXen:
		h, err := xenctrl.Open()
		if err != nil {
			return nil, nil, withCode(exitUnsupported, fmt.Errorf("%w\n(to run on the simulator instead: --backend sim)", err))
		}
		return h, func() { h.Close() }, nil
	}
	return nil, nil, withCode(exitUsage, fmt.Errorf("unknown backend %q", a.cfg.Backend))
}

// simHost returns a simulated host with the [sim] table's notification
// latency, cost model and resident memory.
func (a *app) simHost() (*sim.Host, error) {
	costs, err := sim.ParseCosts(a.cfg.Sim.Costs)
	if err != nil {
		return nil, withCode(exitUsage, fmt.Errorf("sim.costs: %w", err))
	}
	opts := []sim.Option{sim.WithNotifyLatency(a.cfg.Sim.NotifyLatency.Duration())}
	if costs != (sim.Costs{}) {
		opts = append(opts, sim.WithCosts(costs))
	}
	if m := a.cfg.Sim.ResidentMemory; m > 0 {
		opts = append(opts, sim.WithResidentMemory(m.Bytes()))
	}
	return sim.NewHost(opts...), nil
}

// simArgs are the flags that give a child process this one's simulated
// hosts: its configuration file and cost model.
func (a *app) simArgs() []string {
	var args []string
	if a.configPath != "" {
		args = append(args, "--config", a.configPath)
	}
	return append(args, "--sim-costs", a.cfg.Sim.Costs)
}

// plan turns the [migration] configuration into a migration plan.
func (a *app) plan() xenmig.Plan {
	m := a.cfg.Migration
	p := xenmig.DefaultPlan()
	p.Mode = xenmig.Mode(m.Mode)
	p.Push = xenmig.Push(m.Push)
	p.Pivots = m.Pivots
	p.BatchPages = m.BatchPages
	p.Streams = m.Streams
	p.Bandwidth = int64(m.Bandwidth.BytesPerSecond())
	p.PrecopyMaxRounds = m.PrecopyMaxRounds
	p.PrecopyDirtyThreshold = m.PrecopyDirtyThreshold
	p.PrecopyMaxFactor = m.PrecopyMaxFactor
	p.HybridRounds = m.HybridRounds
	p.Balloon = m.Balloon
	p.BalloonWait = m.BalloonWait.Duration()
	p.ReconnectTimeout = m.ReconnectTimeout.Duration()
	return p
}

// destination is the receiver's address: HOST[:PORT], port migration.port
// when none is given.
func (a *app) destination(hostport string) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return net.JoinHostPort(hostport, strconv.Itoa(a.cfg.Migration.Port)), nil
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", withCode(exitUsage, fmt.Errorf("destination %q: port %q is not a number from 1 to 65535", hostport, port))
	}
	if host == "" {
		return "", withCode(exitUsage, fmt.Errorf("destination %q: no host", hostport))
	}
	return hostport, nil
}

// receiveOptions are the engine options of an incoming migration.
func (a *app) receiveOptions() []xenmig.Option {
	opts := []xenmig.Option{xenmig.WithLogger(a.log.WithField("side", "destination")),
		xenmig.WithReconnectTimeout(a.cfg.Migration.ReconnectTimeout.Duration())}
	if a.metrics != nil {
		opts = append(opts, xenmig.WithEvents(a.metrics.Observe))
	}
	return opts
}

// serveMetrics serves the receiver's Prometheus metrics on addr (flag), or
// receiver.metrics_listen when addr is empty, until ctx is done, and
// returns the address it listens on; "" when neither asks for metrics.
func (a *app) serveMetrics(ctx context.Context, addr string) (string, error) {
	if addr == "" {
		addr = a.cfg.Receiver.MetricsListen
	}
	if addr == "" {
		return "", nil
	}
	m := metrics.NewReceiver()
	bound, err := m.Serve(ctx, addr)
	if err != nil {
		return "", withCode(exitFailure, fmt.Errorf("%w (--metrics-listen or receiver.metrics_listen)", err))
	}
	a.metrics = m
	a.log.WithField("addr", "http://"+bound+"/metrics").Info("serving Prometheus metrics")
	return bound, nil
}

// transport builds the connection settings: mutual TLS from [tls], or plain
// TCP when tls.insecure_plaintext is set, which it says loudly.
func (a *app) transport(server bool) (xenmig.Transport, error) {
	t := xenmig.Transport{DialTimeout: a.cfg.Migration.ConnectTimeout.Duration()}
	if err := a.cfg.RequireTLS(); err != nil {
		return t, withCode(exitUsage, err)
	}
	if a.cfg.TLS.InsecurePlaintext {
		a.log.Warn("tls.insecure_plaintext is set: migration traffic is neither authenticated nor encrypted; use it on loopback only")
		return t, nil
	}
	cert, err := tls.LoadX509KeyPair(a.cfg.TLS.Cert, a.cfg.TLS.Key)
	if err != nil {
		return t, withCode(exitUsage, fmt.Errorf("tls.cert / tls.key: %w", err))
	}
	pem, err := os.ReadFile(a.cfg.TLS.CA)
	if err != nil {
		return t, withCode(exitUsage, fmt.Errorf("tls.ca: %w", err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return t, withCode(exitUsage, fmt.Errorf("tls.ca %s: no PEM certificate in it", a.cfg.TLS.CA))
	}
	t.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	if server {
		t.TLS.ClientCAs = pool
		t.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	} else {
		t.TLS.RootCAs = pool
	}
	return t, nil
}

// migrationExit maps a migration error to the exit code scripts act on.
func migrationExit(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, xenmig.ErrCommitted):
		return withCode(exitCommitted, err)
	case errors.Is(err, hypervisor.ErrPagingUnsupported), errors.Is(err, hypervisor.ErrGuestUnsupported),
		errors.Is(err, hypervisor.ErrIncompatible):
		return withCode(exitUnsupported, err)
	case errors.Is(err, xenmig.ErrBadPlan):
		return withCode(exitUsage, err)
	}
	return withCode(exitNotMoved, err)
}
