package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xenmig/xenmig/xenmig"
)

// scrape reads the Prometheus text exposition at http://addr/metrics into a
// map from series (name{labels}) to value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", addr, resp.Status)
	}
	m := map[string]float64{}
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		line := lines.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape %s: bad line %q", addr, line)
		}
		m[line[:i]] = v
	}
	return m
}

// TestReceiverMetrics: `receive --serve --metrics-listen` serves Prometheus
// metrics that show a migration while it runs, and add up to its result
// once it is over.
func TestReceiverMetrics(t *testing.T) {
	r := startReceive(t, "--serve", "--metrics-listen=127.0.0.1:0")
	if r.metrics == "" {
		t.Fatal("receive --metrics-listen did not report the metrics' address")
	}
	if got := scrape(t, r.metrics)["xenmig_receiver_migrations_active"]; got != 0 {
		t.Fatalf("xenmig_receiver_migrations_active before any migration = %v, want 0", got)
	}

	type outcome struct {
		code int
		out  []byte
		err  string
	}
	done := make(chan outcome, 1)
	go func() {
		// A busy guest behind a 100 Mbit/s cap: a few seconds of post-copy.
		args := append([]string{"busy", r.addr, "--json", "--bandwidth", "100mbit"}, guestArgs("stress")...)
		code, out, stderr := migrateProc(t, args...)
		done <- outcome{code, out, stderr}
	}()
	var during map[string]float64
	var res outcome
wait:
	for {
		select {
		case res = <-done:
			break wait
		case <-time.After(20 * time.Millisecond):
			if m := scrape(t, r.metrics); during == nil && m["xenmig_receiver_migrations_active"] == 1 && m[`xenmig_receiver_received_pages_total{phase="push"}`] > 0 {
				during = m
			}
		}
	}
	if res.code != 0 {
		t.Fatalf("xenmig migrate exit %d\n%s", res.code, res.err)
	}
	if during == nil {
		t.Errorf("no scrape during the migration showed it active with pages pushed")
	}
	var result xenmig.Result
	if err := json.Unmarshal(res.out, &result); err != nil {
		t.Fatalf("migrate --json output %q: %v", res.out, err)
	}
	select {
	case <-r.events: // received: the receiver has counted the end
	case <-time.After(10 * time.Second):
		t.Fatal("receiver reported nothing")
	}

	m := scrape(t, r.metrics)
	var pages float64
	for _, phase := range []string{"precopy", "stop", "push", "demand"} {
		pages += m[`xenmig_receiver_received_pages_total{phase="`+phase+`"}`]
	}
	for _, c := range []struct {
		series string
		ok     func(float64) bool
		want   string
	}{
		{`xenmig_receiver_migrations_total{mode="postcopy",outcome="completed"}`, eq(1), "1"},
		{"xenmig_receiver_migrations_active", eq(0), "0"},
		{"xenmig_receiver_downtime_seconds_count", eq(1), "1"},
		{"xenmig_receiver_downtime_seconds_sum", func(v float64) bool { return v > 0 && v*1000 <= result.DowntimeMS },
			"within the source's downtime_ms " + strconv.FormatFloat(result.DowntimeMS, 'f', 3, 64)},
		{"xenmig_receiver_fault_latency_seconds_count", func(v float64) bool { return v > 0 }, "> 0: a busy guest faults"},
		{"xenmig_receiver_pager_ring_requests_count", func(v float64) bool { return v > 0 }, "> 0"},
		{"xenmig_receiver_reconnects_total", eq(0), "0"},
		{`xenmig_receiver_received_bytes_total{phase="push"}`, func(v float64) bool { return v > 0 && v <= float64(result.BytesSent) },
			"within bytes_sent " + strconv.FormatUint(result.BytesSent, 10)},
	} {
		if v, ok := m[c.series]; !ok || !c.ok(v) {
			t.Errorf("%s = %v (present %v), want %s", c.series, v, ok, c.want)
		}
	}
	if want := float64(result.PagesSent + result.ZeroPagesSkipped); pages != want {
		t.Errorf("xenmig_receiver_received_pages_total over phases = %v, want pages_sent + zero pages %v", pages, want)
	}
}

func eq(want float64) func(float64) bool { return func(v float64) bool { return v == want } }
