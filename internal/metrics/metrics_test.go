package metrics

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/xenmig/xenmig/xenmig"
)

// TestObserve: events become the series the README documents, with the
// outcome told apart by the error.
func TestObserve(t *testing.T) {
	m := NewReceiver()
	migration := func(mode xenmig.Mode, err error) {
		m.Observe(xenmig.Event{Kind: xenmig.EventStarted})
		m.Observe(xenmig.Event{Kind: xenmig.EventPages, Mode: mode, Phase: "push", Pages: 3, Bytes: 3 * 4096})
		m.Observe(xenmig.Event{Kind: xenmig.EventFault, Mode: mode, Latency: 300 * time.Microsecond})
		m.Observe(xenmig.Event{Kind: xenmig.EventRing, Mode: mode, Pages: 8})
		m.Observe(xenmig.Event{Kind: xenmig.EventResumed, Mode: mode, Latency: 2 * time.Millisecond})
		m.Observe(xenmig.Event{Kind: xenmig.EventReconnected, Mode: mode})
		m.Observe(xenmig.Event{Kind: xenmig.EventEnded, Mode: mode, Err: err})
	}
	migration(xenmig.PostCopy, nil)
	migration(xenmig.PostCopy, fmt.Errorf("send stats: %w", xenmig.ErrCommitted))
	migration(xenmig.Hybrid, errors.New("connection refused"))
	migration("", errors.New("no config"))

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := rec.Body.String()
	for _, want := range []string{
		`xenmig_receiver_migrations_total{mode="postcopy",outcome="completed"} 1`,
		`xenmig_receiver_migrations_total{mode="postcopy",outcome="failed_after_switchover"} 1`,
		`xenmig_receiver_migrations_total{mode="hybrid",outcome="failed_before_switchover"} 1`,
		`xenmig_receiver_migrations_total{mode="unknown",outcome="failed_before_switchover"} 1`,
		`xenmig_receiver_migrations_active 0`,
		`xenmig_receiver_received_pages_total{phase="push"} 12`,
		`xenmig_receiver_received_bytes_total{phase="push"} 49152`,
		`xenmig_receiver_fault_latency_seconds_bucket{le="0.0004"} 4`,
		`xenmig_receiver_fault_latency_seconds_bucket{le="0.0002"} 0`,
		`xenmig_receiver_downtime_seconds_count 4`,
		`xenmig_receiver_pager_ring_requests_bucket{le="7"} 0`,
		`xenmig_receiver_pager_ring_requests_bucket{le="8"} 4`,
		`xenmig_receiver_reconnects_total 4`,
		`go_goroutines `,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", out)
	}
}
