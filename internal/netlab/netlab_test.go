package netlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// helperEnv makes the test binary act as a helper program inside a
// namespace instead of running tests (see TestMain).
const helperEnv = "NETLAB_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		if err := helper(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helper runs one of:
//
//	sink ADDR      accept connections forever; read each to EOF, answer one byte
//	send ADDR N    send N bytes to a sink, print the seconds until its answer
//	dial ADDR      connect once, print the seconds the handshake took
//	sleep          print "ready" and sleep
func helper(args []string) error {
	switch args[0] {
	case "sink":
		ln, err := net.Listen("tcp", args[1])
		if err != nil {
			return err
		}
		fmt.Println("ready")
		for {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			go func() {
				defer c.Close()
				if _, err := io.Copy(io.Discard, c); err == nil {
					c.Write([]byte{1})
				}
			}()
		}
	case "send":
		n, err := strconv.Atoi(args[2])
		if err != nil {
			return err
		}
		c, err := net.Dial("tcp", args[1])
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 1<<20)
		start := time.Now()
		for left := n; left > 0; left -= len(buf) {
			if _, err := c.Write(buf[:min(left, len(buf))]); err != nil {
				return err
			}
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, buf[:1]); err != nil {
			return err
		}
		fmt.Println(time.Since(start).Seconds())
		return nil
	case "dial":
		start := time.Now()
		c, err := net.Dial("tcp", args[1])
		if err != nil {
			return err
		}
		fmt.Println(time.Since(start).Seconds())
		return c.Close()
	case "sleep":
		fmt.Println("ready")
		time.Sleep(time.Hour)
		return nil
	}
	return fmt.Errorf("unknown helper %q", args[0])
}

// needLab skips the test where a lab cannot be built.
func needLab(t *testing.T) {
	t.Helper()
	if err := preflight(); err != nil {
		t.Skipf("skipping: %v (CI runs these tests as root)", err)
	}
}

func newLab(t *testing.T, ctx context.Context, opts ...Option) *Lab {
	t.Helper()
	l, err := New(ctx, append([]Option{WithPrefix("xenmigtest")}, opts...)...)
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	})
	return l
}

// helperCmd returns the test binary run as a helper inside side.
func helperCmd(t *testing.T, ctx context.Context, l *Lab, side Side, args ...string) *Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := l.Command(ctx, side, exe, args...)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	return cmd
}

// startReady starts a helper and waits for its "ready" line.
func startReady(t *testing.T, ctx context.Context, l *Lab, side Side, args ...string) *Cmd {
	t.Helper()
	cmd := helperCmd(t, ctx, l, side, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting helper %v: %v", args, err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper %v said %q, %v (stderr %q)", args, line, err, stderr.String())
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// seconds runs a helper that prints a number of seconds.
func seconds(t *testing.T, ctx context.Context, l *Lab, side Side, args ...string) float64 {
	t.Helper()
	out, err := helperCmd(t, ctx, l, side, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("helper %v = %v (stderr %q)", args, err, stderr)
	}
	s, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		t.Fatalf("helper %v printed %q: %v", args, out, err)
	}
	return s
}

func namespaces(t *testing.T) []string {
	t.Helper()
	names, err := namedNamespaces()
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestHasCaps(t *testing.T) {
	for _, tt := range []struct {
		status string
		want   bool
		err    bool
	}{
		{"Name:\tx\nCapEff:\t000001ffffffffff\n", true, false},
		{"CapEff:\t0000000000000000\n", false, false},
		{"CapEff:\t0000000000001000\n", false, false}, // net_admin without sys_admin
		{"CapEff:\t0000000000201000\n", true, false},
		{"CapEff:\tzz\n", false, true},
		{"Name:\tx\n", false, true},
	} {
		got, err := hasCaps(tt.status, capNetAdmin, capSysAdmin)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("hasCaps(%q) = %v, %v, want %v, error %v", tt.status, got, err, tt.want, tt.err)
		}
	}
}

func TestCreator(t *testing.T) {
	for _, tt := range []struct {
		name    string
		pid     int
		matches bool
	}{
		{"xenmig-123-abcdef-a", 123, true},
		{"xenmig-123-abcdef-b", 123, true},
		{"xenmig-123-abcdef-c", 0, false},
		{"xenmig-x-abcdef-a", 0, false},
		{"xenmigtest-123-abcdef-a", 0, false},
		{"other-123-abcdef-a", 0, false},
		{"xenmig-123-a", 0, false},
	} {
		pid, ok := creator(tt.name, "xenmig")
		if pid != tt.pid || ok != tt.matches {
			t.Errorf("creator(%q, xenmig) = %d, %v, want %d, %v", tt.name, pid, ok, tt.pid, tt.matches)
		}
	}
}

func TestShaping(t *testing.T) {
	root, netem, tbf := netlink.MakeHandle(1, 0), netlink.MakeHandle(1, 1), netlink.MakeHandle(10, 0)
	for _, tt := range []struct {
		rate  uint64
		delay time.Duration
		want  []string // kind parent handle, and the kind's settings
	}{
		{0, 0, nil},
		{1e9, 0, []string{fmt.Sprintf("tbf %x %x rate 125000000 burst 125000 limit 750000", netlink.HANDLE_ROOT, root)}},
		{200e6, 0, []string{fmt.Sprintf("tbf %x %x rate 25000000 burst 65536 limit 190536", netlink.HANDLE_ROOT, root)}},
		{8e9, 0, []string{fmt.Sprintf("tbf %x %x rate 1000000000 burst 1000000 limit 6000000", netlink.HANDLE_ROOT, root)}},
		{1e9, 10 * time.Millisecond, []string{
			fmt.Sprintf("netem %x %x latency 10000us limit 1666", netlink.HANDLE_ROOT, root),
			fmt.Sprintf("tbf %x %x rate 125000000 burst 125000 limit 750000", netem, tbf),
		}},
		{0, time.Millisecond, []string{fmt.Sprintf("netem %x %x latency 1000us limit 1666", netlink.HANDLE_ROOT, root)}},
	} {
		var got []string
		for _, q := range shaping(7, tt.rate, tt.delay) {
			a := q.Attrs()
			if a.LinkIndex != 7 {
				t.Errorf("shaping(%d, %v): %s on link %d, want 7", tt.rate, tt.delay, q.Type(), a.LinkIndex)
			}
			s := fmt.Sprintf("%s %x %x", q.Type(), a.Parent, a.Handle)
			switch q := q.(type) {
			case *netlink.Tbf:
				// The bucket is in scheduler ticks, as tc gives it.
				burst := Burst(tt.rate)
				if want := netlink.Xmittime(q.Rate, uint32(burst)); q.Buffer != want {
					t.Errorf("shaping(%d, %v): tbf buffer %d ticks, want %d (%d bytes)", tt.rate, tt.delay, q.Buffer, want, burst)
				}
				s += fmt.Sprintf(" rate %d burst %d limit %d", q.Rate, burst, q.Limit)
			case *netlink.Netem:
				s += fmt.Sprintf(" latency %dus limit %d", tt.delay.Microseconds(), q.Limit)
			}
			got = append(got, s)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("shaping(%d, %v) = %q, want %q", tt.rate, tt.delay, got, tt.want)
		}
	}
}

func TestLab(t *testing.T) {
	needLab(t)
	ctx := context.Background()
	l := newLab(t, ctx, WithRate(200e6), WithMTU(9000))
	for _, side := range []Side{A, B} {
		if !slices.Contains(namespaces(t), l.Namespace(side)) {
			t.Fatalf("namespace %s not in ip netns list %q", l.Namespace(side), namespaces(t))
		}
	}
	// Each end reaches the other, over the veth.
	for _, side := range []Side{A, B} {
		other := B
		if side == B {
			other = A
		}
		addr := net.JoinHostPort(l.Addr(other), "5001")
		startReady(t, ctx, l, other, "sink", addr)
		seconds(t, ctx, l, side, "send", addr, "1000")
	}
	// And nothing outside: the namespaces have no route but their /30.
	for _, side := range []Side{A, B} {
		h, err := l.handle(side)
		if err != nil {
			t.Fatal(err)
		}
		routes, err := h.RouteGet(net.ParseIP("1.1.1.1"))
		h.Close()
		if err == nil {
			t.Errorf("route to 1.1.1.1 in %s = %v, want none", l.Namespace(side), routes)
		}
	}
	// The link is shaped as asked, with the MTU asked, at both ends.
	for _, side := range []Side{A, B} {
		h, err := l.handle(side)
		if err != nil {
			t.Fatal(err)
		}
		dev := map[Side]string{A: vethA, B: vethB}[side]
		link, err := h.LinkByName(dev)
		if err != nil {
			t.Fatalf("%s in %s: %v", dev, l.Namespace(side), err)
		}
		if got := link.Attrs().MTU; got != 9000 {
			t.Errorf("MTU of %s in %s = %d, want 9000", dev, l.Namespace(side), got)
		}
		qs, err := h.QdiscList(link)
		h.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(qs) != 1 || qs[0].Type() != "tbf" || qs[0].(*netlink.Tbf).Rate != 200e6/8 {
			t.Errorf("qdiscs on %s in %s = %v, want one tbf at 25000000 B/s", dev, l.Namespace(side), qs)
		}
	}

	if err := l.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	for _, side := range []Side{A, B} {
		if slices.Contains(namespaces(t), l.Namespace(side)) {
			t.Errorf("namespace %s still listed after Close", l.Namespace(side))
		}
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestBadMTU(t *testing.T) {
	for _, mtu := range []int{-1, 67, 65536} {
		if l, err := New(context.Background(), WithMTU(mtu)); err == nil {
			l.Close()
			t.Errorf("New(WithMTU(%d)) = nil error, want one", mtu)
		}
	}
}

// TestThroughput sends bounded TCP transfers through the shaped link and
// checks the rate achieved against the rate configured: no transfer may
// beat it, and the best of three must come near it (a machine whose CPUs are
// busy elsewhere cannot always fill a link, so one slow transfer proves
// nothing about the shaping).
func TestThroughput(t *testing.T) {
	needLab(t)
	ctx := context.Background()
	const port = "5001"
	measure := func(rate uint64, n int) float64 {
		l := newLab(t, ctx, WithRate(rate))
		addr := net.JoinHostPort(l.Addr(B), port)
		startReady(t, ctx, l, B, "sink", addr)
		shaping := "unshaped"
		if rate > 0 {
			shaping = fmt.Sprintf("rate %d Mbit/s, burst %d B", rate/1e6, Burst(rate))
		}
		var best float64
		for range 3 {
			s := seconds(t, ctx, l, A, "send", addr, strconv.Itoa(n))
			got := float64(n) * 8 / s
			t.Logf("%s: %d bytes in %.3f s = %.1f Mbit/s", shaping, n, s, got/1e6)
			if rate > 0 && got > 1.1*float64(rate) {
				t.Errorf("throughput at rate %d = %.0f bit/s, want at most %.0f", rate, got, 1.1*float64(rate))
			}
			best = max(best, got)
		}
		if err := l.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
		return best
	}
	var shaped float64
	for _, tt := range []struct {
		rate uint64
		n    int
	}{
		{200e6, 15e6}, // 0.6 s
		{1e9, 50e6},   // 0.4 s
	} {
		got := measure(tt.rate, tt.n)
		if lo := 0.6 * float64(tt.rate); got < lo {
			t.Errorf("best throughput at rate %d = %.0f bit/s, want at least %.0f", tt.rate, got, lo)
		}
		shaped = got
	}
	if got := measure(0, 50e6); got < 1.5*shaped {
		t.Errorf("unshaped throughput = %.0f bit/s, want well above the shaped %.0f", got, shaped)
	}
}

func TestDelay(t *testing.T) {
	needLab(t)
	ctx := context.Background()
	const delay = 20 * time.Millisecond
	l, err := New(ctx, WithPrefix("xenmigtest"), WithRate(1e9), WithDelay(delay))
	if errors.Is(err, ErrNoQdisc) {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	defer l.Close()
	addr := net.JoinHostPort(l.Addr(B), "5001")
	startReady(t, ctx, l, B, "sink", addr)
	// The TCP handshake takes one round trip: 2 x delay at least.
	if s := seconds(t, ctx, l, A, "dial", addr); s < 2*delay.Seconds() || s > 2*delay.Seconds()+0.2 {
		t.Errorf("handshake with %v added each way took %.4f s, want about %.4f", delay, s, 2*delay.Seconds())
	}
}

// wait waits for cmd to exit, failing the test after a few seconds.
func wait(t *testing.T, cmd *Cmd, what string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("%s: process exited cleanly, want killed", what)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: process still running after 5 s", what)
	}
}

func TestCommandCancel(t *testing.T) {
	needLab(t)
	l := newLab(t, context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	cmd := startReady(t, ctx, l, A, "sleep")
	cancel()
	wait(t, cmd, "after cancelling the command's context")
}

func TestCloseKillsProcesses(t *testing.T) {
	needLab(t)
	l := newLab(t, context.Background())
	cmd := startReady(t, context.Background(), l, B, "sleep")
	if err := l.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	wait(t, cmd, "after Close")
}

func TestContextTearsDown(t *testing.T) {
	needLab(t)
	ctx, cancel := context.WithCancel(context.Background())
	l := newLab(t, ctx)
	cmd := startReady(t, context.Background(), l, A, "sleep")
	cancel()
	wait(t, cmd, "after cancelling the lab's context")
	for deadline := time.Now().Add(5 * time.Second); slices.Contains(namespaces(t), l.Namespace(A)); {
		if time.Now().After(deadline) {
			t.Fatalf("namespace %s still listed 5 s after its context was cancelled", l.Namespace(A))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRemoveStale(t *testing.T) {
	needLab(t)
	ctx := context.Background()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("xenmigtest-%d-000000-a", dead.Process.Pid)
	live := fmt.Sprintf("xenmigtest-%d-000000-b", os.Getpid())
	for _, ns := range []string{stale, live} {
		if err := newNamed(ns); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { deleteNamed(live) })
	removed, err := RemoveStale(ctx, "xenmigtest")
	if err != nil {
		t.Fatalf("RemoveStale = %v", err)
	}
	if !slices.Contains(removed, stale) || slices.Contains(removed, live) {
		t.Errorf("RemoveStale removed %q, want %s and not %s", removed, stale, live)
	}
	names := namespaces(t)
	if slices.Contains(names, stale) || !slices.Contains(names, live) {
		t.Errorf("after RemoveStale: ip netns list = %q, want %s gone and %s kept", names, stale, live)
	}
}
