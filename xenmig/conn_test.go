package xenmig

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// dialIdlePeer returns a connection to a loopback peer that accepts it,
// runs setup on its end (if given) and holds it open for a second without
// reading, as a receiver busy elsewhere would. Both close with the test.
func dialIdlePeer(t *testing.T, setup func(net.Conn)) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			if setup != nil {
				setup(c)
			}
			time.Sleep(time.Second)
		}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// sockopt reads an int socket option of c.
func sockopt(t *testing.T, c *net.TCPConn, level, opt int) int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	raw.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) })
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// TestSocketBufferFloors: however slow the link measures, the send buffer
// stays at two of the path's segments, and the receive buffer holds four
// 64 KiB segments' true size (issue 13, bug 2: a buffer under a loopback
// segment's true size can never accept it, and the connection stalls with
// ACKs still flowing). Before, a slow measure shrank the send buffer to
// 16 KiB.
func TestSocketBufferFloors(t *testing.T) {
	tc := tuneSocket(dialIdlePeer(t, func(c net.Conn) { tuneSocket(c) }))
	mss := sockopt(t, tc, unix.IPPROTO_TCP, unix.TCP_MAXSEG)
	if got, want := sockopt(t, tc, unix.SOL_SOCKET, unix.SO_RCVBUF), 2*receiveFloor; got < want {
		t.Errorf("SO_RCVBUF = %d, want at least %d", got, want)
	}
	q := newSendQueue(tc)
	for range 3 { // a link measured at a few KiB a second
		time.Sleep(25 * time.Millisecond)
		q.sent(100)
	}
	// The kernel doubles what is set.
	if got, want := sockopt(t, tc, unix.SOL_SOCKET, unix.SO_SNDBUF), 2*2*min(mss, maxSegment); got < want {
		t.Errorf("SO_SNDBUF after a slow measure = %d, want at least %d (two segments of MSS %d, doubled)", got, want, mss)
	}
}

// TestSendQueueIdleStart: a wait between making the queue and the first
// write is not a slow link (issue 13, bug 5: the demand-only push made its
// queue before waiting for the guest to go idle, measured one batch over
// the whole wait, shrank the main channel's send buffer to its 16 KiB
// floor, under a loopback segment, and pushed ~550 pages/s).
func TestSendQueueIdleStart(t *testing.T) {
	q := newSendQueue(dialIdlePeer(t, nil).(*net.TCPConn))
	q.floor = 4 << 10 // what only a slow link would bring the buffer down to
	start := q.size
	time.Sleep(50 * time.Millisecond) // the demand-only wait
	q.sent(64 << 10)                  // the first batch
	if q.size < start {
		t.Errorf("send buffer after a wait and one batch = %d, want at least %d: the wait was taken for a slow link", q.size, start)
	}
}

// TestSendQueueBatch: a push batch holds as many data pages as the send
// buffer, and as many more gfns as the last batch's share of zero pages
// says will cross as flags only, up to zeroBatches times the record's
// pages.
func TestSendQueueBatch(t *testing.T) {
	q := &sendQueue{size: 32 << 10} // 8 pages
	for _, tc := range []struct {
		pages     int
		zeroShare float64
		want      int
	}{
		{64, 0, 8},
		{4, 0, 4},
		{64, 0.5, 16},
		{64, 0.75, 32},
		{64, 0.999, 64 * zeroBatches},
		{64, 1, 64 * zeroBatches},
		{4, 1, 4 * zeroBatches},
	} {
		if got := q.batch(tc.pages, tc.zeroShare); got != tc.want {
			t.Errorf("batch(%d, %v) = %d, want %d", tc.pages, tc.zeroShare, got, tc.want)
		}
	}
}

// TestPushWidth: a push whose streams the plan left to AutoStreams narrows
// to main over a window in which its streams together moved less than
// narrowRate and the destination kept up, widens again over one in which
// they moved more or the destination's receive windows held them back,
// and never narrows a plan that named its streams.
func TestPushWidth(t *testing.T) {
	l := logrus.New()
	l.SetOutput(io.Discard)
	log := logrus.NewEntry(l)
	for _, tc := range []struct {
		name  string
		auto  bool
		rates []float64 // bytes per second over successive windows
		rwnd  []float64 // share of each the receive windows limited
		want  []bool    // narrowed at the end of each
	}{
		{"slow link", true, []float64{oneStreamRate / 4, oneStreamRate / 4}, []float64{0, 0.05}, []bool{true, true}},
		{"fast link", true, []float64{oneStreamRate * 2}, []float64{0}, []bool{false}},
		{"a link one stream only just fills", true, []float64{oneStreamRate * 0.8, oneStreamRate * 0.8}, []float64{0, 0}, []bool{false, false}},
		{"zero pages, then data on a fast link", true, []float64{oneStreamRate / 100, oneStreamRate * 2}, []float64{0, 0}, []bool{true, false}},
		{"a destination that cannot keep up", true, []float64{oneStreamRate / 4, oneStreamRate / 4, oneStreamRate / 4}, []float64{0, 0.5, 0}, []bool{true, false, true}},
		{"streams named", false, []float64{1, 1}, []float64{0, 0}, []bool{false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newPushWidth(tc.auto, nil)
			var limited time.Duration
			w.rwndLimited = func() time.Duration { return limited }
			now := time.Unix(1000, 0)
			if w.narrowed(log, now) {
				t.Fatalf("narrowed() before any window = true, want false")
			}
			for i, rate := range tc.rates {
				// A window of twice narrowWindow at this rate.
				now = now.Add(2 * narrowWindow)
				w.sent(int(rate * (2 * narrowWindow).Seconds()))
				limited += time.Duration(tc.rwnd[i] * float64(2*narrowWindow))
				if got := w.narrowed(log, now); got != tc.want[i] {
					t.Errorf("window %d at %.0f B/s: narrowed() = %v, want %v", i, rate, got, tc.want[i])
				}
			}
		})
	}
	w := newPushWidth(true, nil)
	w.drain()
	w.drain() // any pusher may find the order empty
	select {
	case <-w.drained:
	default:
		t.Errorf("drain() did not close drained")
	}
}
