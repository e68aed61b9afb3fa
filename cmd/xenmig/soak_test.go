package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/xenmig/xenmig/xenctrl/sim"
	"github.com/xenmig/xenmig/xenmig"
)

// soakEnv sets the soak's number of migrations; without it the soak runs
// soakDefault, to fit `go test ./...`. XENMIG_SOAK=200 is the full soak.
const (
	soakEnv     = "XENMIG_SOAK"
	soakDefault = 20
)

// TestSoakServe: `xenmig receive --serve --discard` takes many migrations
// in a row with hostile connections between them (a connect and close,
// junk, a 64 MiB record header, a TLS ClientHello, a main hello that never
// opens its urgent channel) and ends with its goroutines, open file
// descriptors and resident memory back at their baseline, read from its
// own Prometheus metrics. The count is XENMIG_SOAK (default 20; 200 for
// the full soak); the figures are in the test's output (-v).
func TestSoakServe(t *testing.T) {
	count := soakDefault
	if s := os.Getenv(soakEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive count", soakEnv, s)
		}
		count = n
	}
	cfg := filepath.Join(t.TempDir(), "xenmig.toml")
	if err := os.WriteFile(cfg, []byte("[migration]\nconnect_timeout = \"3s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := startReceive(t, "--serve", "--discard", "--metrics-listen", "127.0.0.1:0", "--config", cfg)
	if r.metrics == "" {
		t.Fatal("receiver reported no metrics address")
	}
	src := sim.NewHost()
	defer src.Close()
	migrate := func(i int) {
		t.Helper()
		spec := sim.GuestSpec{Name: fmt.Sprintf("soak%d", i), VCPUs: 1, MemoryPages: 2048, UsedPages: 512, Seed: uint64(i) + 1,
			Workload: sim.DefaultWorkload(sim.Idle, 2048)}
		dom, err := src.CreateDomain(spec)
		if err != nil {
			t.Fatalf("CreateDomain(%s) = %v", spec.Name, err)
		}
		if err := src.Unpause(dom); err != nil {
			t.Fatal(err)
		}
		p := xenmig.DefaultPlan()
		p.Mode = []xenmig.Mode{xenmig.PostCopy, xenmig.PreCopy, xenmig.Hybrid}[i%3]
		p.ThroughputSample = 0
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := xenmig.Migrate(ctx, src, dom, r.addr, p); err != nil {
			t.Fatalf("migration %d (%s) = %v\n%s", i, p.Mode, err, r.stderrString())
		}
		select {
		case e := <-r.events:
			if e.Event != "received" {
				t.Fatalf("migration %d: receiver event %+v, want received", i, e)
			}
		case <-time.After(time.Minute):
			t.Fatalf("migration %d: no event from the receiver", i)
		}
	}
	migrate(0) // the first one warms up what stays: buffers, the sim's pools
	base := scrape(t, r.metrics)
	start := time.Now()
	for i := 1; i <= count; i++ {
		hostile(t, r.addr, i)
		migrate(i)
	}
	elapsed := time.Since(start)
	// The bare hellos wait their connect timeout (3 s) before they go.
	var end map[string]float64
	settled := func() bool {
		end = scrape(t, r.metrics)
		return end["go_goroutines"] <= base["go_goroutines"] && end["process_open_fds"] <= base["process_open_fds"]
	}
	for deadline := time.Now().Add(20 * time.Second); !settled() && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
	}
	const mib = 1 << 20
	t.Logf("soak: %d migrations with %d hostile connections in %v; baseline -> end: goroutines %.0f -> %.0f, open fds %.0f -> %.0f, RSS %.1f -> %.1f MiB",
		count, 5*count, elapsed.Round(time.Millisecond), base["go_goroutines"], end["go_goroutines"],
		base["process_open_fds"], end["process_open_fds"],
		base["process_resident_memory_bytes"]/mib, end["process_resident_memory_bytes"]/mib)
	if end["go_goroutines"] > base["go_goroutines"]+2 {
		t.Errorf("goroutines %.0f after the soak, baseline %.0f: a leak", end["go_goroutines"], base["go_goroutines"])
	}
	if end["process_open_fds"] > base["process_open_fds"]+2 {
		t.Errorf("open file descriptors %.0f after the soak, baseline %.0f: a leak", end["process_open_fds"], base["process_open_fds"])
	}
	if got, lim := end["process_resident_memory_bytes"], base["process_resident_memory_bytes"]+64*mib; got > lim {
		t.Errorf("resident memory %.1f MiB after the soak, baseline %.1f MiB: more than 64 MiB grew", got/mib, base["process_resident_memory_bytes"]/mib)
	}
}

// hostile opens the connections a stranger or a broken peer would, between
// two migrations.
func hostile(t *testing.T, addr string, i int) {
	t.Helper()
	header := func(typ, n uint32) []byte {
		b := binary.LittleEndian.AppendUint32(nil, typ)
		b = binary.LittleEndian.AppendUint32(b, n)
		return binary.LittleEndian.AppendUint32(b, 0)
	}
	// A main channel's hello (docs/PROTOCOL.md, version 2): magic,
	// version, role, session, flags, streams, stream.
	body := binary.LittleEndian.AppendUint32([]byte("XENMIG\x00\x01"), 2)
	body = append(body, 1)
	session := [16]byte{0xee, byte(i), byte(i >> 8)}
	body = append(body, session[:]...)
	body = append(body, 0, 1, 0)
	hello := record(1, body)
	for _, payload := range [][]byte{
		nil, // connect and close
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		append(header(3, 64<<20), make([]byte, 4096)...), // a config record of 64 MiB

		{0x16, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3},
		hello, // a main channel whose urgent one never comes
	} {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("hostile connection: %v", err)
		}
		c.Write(payload)
		c.Close()
	}
}
