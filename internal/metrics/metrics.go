// Package metrics exposes a receiving host's migrations as Prometheus
// metrics. It feeds on the engine's receiver events (xenmig.WithEvents) and
// serves them over HTTP; the engine itself knows nothing of Prometheus.
//
// Names follow Prometheus' naming guide: the xenmig_receiver_ prefix, base
// units (seconds, bytes), _total on counters, labels for the dimensions
// (mode, outcome, phase) and never for values.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenmig"
)

// The outcome label of xenmig_receiver_migrations_total.
const (
	OutcomeCompleted = "completed"                // the domain runs here with all its memory
	OutcomeFailed    = "failed_before_switchover" // nothing kept here; the domain runs on the source
	OutcomeCommitted = "failed_after_switchover"  // the domain is here, paused or incomplete: see the logs
)

// Receiver holds the metrics of the migrations a host receives.
type Receiver struct {
	reg *prometheus.Registry

	migrations   *prometheus.CounterVec
	active       prometheus.Gauge
	bytes        *prometheus.CounterVec
	pages        *prometheus.CounterVec
	faultLatency prometheus.Histogram
	downtime     prometheus.Histogram
	reconnects   prometheus.Counter
	ring         prometheus.Histogram
}

// NewReceiver returns the receiver metrics, registered with a registry of
// their own that also holds the Go runtime's and the process's collectors.
func NewReceiver() *Receiver {
	m := &Receiver{
		reg: prometheus.NewRegistry(),
		migrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xenmig_receiver_migrations_total",
			Help: "Incoming migrations that ended, by mode (precopy, postcopy, hybrid; unknown if the sender never sent the domain's configuration) and outcome (completed, failed_before_switchover, failed_after_switchover).",
		}, []string{"mode", "outcome"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xenmig_receiver_migrations_active",
			Help: "Incoming migrations in progress.",
		}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xenmig_receiver_received_bytes_total",
			Help: "Bytes of page records received, by phase (precopy, stop, push, demand).",
		}, []string{"phase"}),
		pages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xenmig_receiver_received_pages_total",
			Help: "Pages received (zero pages included, which carry no data), by phase (precopy, stop, push, demand).",
		}, []string{"phase"}),
		faultLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "xenmig_receiver_fault_latency_seconds",
			Help:    "Time a vCPU waited on a missing page in post-copy: from its request read off the paging ring until it was resumed.",
			Buckets: prometheus.ExponentialBuckets(25e-6, 2, 16), // 25 µs .. 0.8 s
		}),
		downtime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "xenmig_receiver_downtime_seconds",
			Help:    "Downtime seen from the destination: from the layout the paused source sends until the domain runs here (the source's measure adds that record's one-way trip).",
			Buckets: prometheus.ExponentialBuckets(250e-6, 2, 16), // 0.25 ms .. 8 s
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xenmig_receiver_reconnects_total",
			Help: "Sessions the source reopened after the connections broke in post-copy.",
		}),
		ring: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "xenmig_receiver_pager_ring_requests",
			Help:    "Requests found in the paging ring at each drain (the ring has 8 slots; a full ring makes further faulting vCPUs wait for a slot).",
			Buckets: prometheus.LinearBuckets(1, 1, hypervisor.RingSlots),
		}),
	}
	m.reg.MustRegister(m.migrations, m.active, m.bytes, m.pages, m.faultLatency, m.downtime, m.reconnects, m.ring,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observe counts one receiver event. It is safe for concurrent use; pass it
// to xenmig.WithEvents.
func (m *Receiver) Observe(e xenmig.Event) {
	switch e.Kind {
	case xenmig.EventStarted:
		m.active.Inc()
	case xenmig.EventPages:
		m.pages.WithLabelValues(e.Phase).Add(float64(e.Pages))
		m.bytes.WithLabelValues(e.Phase).Add(float64(e.Bytes))
	case xenmig.EventResumed:
		m.downtime.Observe(e.Latency.Seconds())
	case xenmig.EventFault:
		m.faultLatency.Observe(e.Latency.Seconds())
	case xenmig.EventRing:
		m.ring.Observe(float64(e.Pages))
	case xenmig.EventReconnected:
		m.reconnects.Inc()
	case xenmig.EventEnded:
		m.active.Dec()
		mode := string(e.Mode)
		if mode == "" {
			mode = "unknown"
		}
		m.migrations.WithLabelValues(mode, outcome(e.Err)).Inc()
	}
}

func outcome(err error) string {
	switch {
	case err == nil:
		return OutcomeCompleted
	case errors.Is(err, xenmig.ErrCommitted):
		return OutcomeCommitted
	default:
		return OutcomeFailed
	}
}

// Handler serves the metrics in Prometheus' text format.
func (m *Receiver) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Serve listens on addr and serves the metrics at /metrics until ctx is
// done. It returns the address it listens on (addr may name port 0) once
// it does.
func (m *Receiver) Serve(ctx context.Context, addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	context.AfterFunc(ctx, func() { srv.Close() })
	return ln.Addr().String(), nil
}
