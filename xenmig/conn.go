package xenmig

import (
	"net"
	"sync/atomic"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenmig/internal/wire"
)

// countingConn counts the bytes written through it.
type countingConn struct {
	net.Conn
	n *atomic.Uint64
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(uint64(n))
	return n, err
}

// countWrites makes c add every byte it writes to n.
func (c *conn) countWrites(n *atomic.Uint64) {
	c.Conn = countingConn{c.Conn, n}
	c.w = wire.NewWriter(c.Conn)
	if c.sealed {
		c.w.SkipChecksums()
	}
}

// queueBudget is how long a page the push has already claimed may wait
// behind bulk data queued for the main connection. A demanded page claimed by
// the push travels on the main channel, so this bounds its extra latency.
const queueBudget = 250 * time.Microsecond

// Bounds of the main channel's send buffer.
const (
	minSendBuffer = 16 << 10
	maxSendBuffer = 8 << 20
)

// sendQueue sizes a page stream's send buffer to queueBudget at the best
// rate the link was measured to carry: about 30 KiB on a Gigabit link, a
// few MiB on loopback. A buffer too small for the link raises the rate it
// measures, so it grows until the link, not the buffer, is the limit.
//
// Linux keeps twice what SO_SNDBUF asks (the other half for its own
// accounting), and on a slow link the data queued in the socket waits in
// the bottleneck's queue too, in front of any demanded page: so the
// buffer is set to half the budget's bytes.
type sendQueue struct {
	tcp   *net.TCPConn
	since time.Time
	bytes int
	size  int     // bytes the buffer holds: twice what SO_SNDBUF was given
	floor int     // never below what the path's segments need (sendFloor)
	peak  float64 // best rate measured, bytes per second
}

func newSendQueue(tcp *net.TCPConn) *sendQueue {
	q := &sendQueue{tcp: tcp, size: 64 << 10, floor: minSendBuffer}
	if tcp != nil {
		q.floor = sendFloor(tcp)
		q.size = max(q.size, 2*q.floor)
		tcp.SetWriteBuffer(q.size / 2)
	}
	return q
}

// batch returns how many gfns a push batch should hold: no more data pages
// than the buffer holds (and at most pages), so that a page the batch
// claimed waits behind at most about two budgets of data. Zero pages cross
// as flags and cost the link nothing: a batch whose gfns are expected to be
// zero in the share zeroShare (the last batch's) holds as many more gfns,
// up to zeroBatches times pages, or a run of zero pages would take as many
// records, each a round of reads, a write and installs, as data pages would.
func (q *sendQueue) batch(pages int, zeroShare float64) int {
	return zeroBatch(min(pages, q.size/hypervisor.PageSize), pages*zeroBatches, zeroShare)
}

// zeroBatch returns how many gfns a batch should hold to carry about data
// data pages, if the share zeroShare of them is zero as in the last
// batch, and at most most.
func zeroBatch(data, most int, zeroShare float64) int {
	if zeroShare >= 1 {
		return most
	}
	return min(most, int(float64(data)/(1-zeroShare)))
}

// zeroBatches bounds how many times more gfns than pages a push batch of
// zero pages holds.
const zeroBatches = 8

// sent records n bytes written and resizes the buffer every 20 ms. The
// first measure starts at the first write: a queue made before a wait (the
// demand-only push waits for the guest to go idle) must not take the wait
// for a slow link.
func (q *sendQueue) sent(n int) {
	if q.tcp == nil {
		return
	}
	if q.since.IsZero() {
		q.since = time.Now()
		return
	}
	q.bytes += n
	el := time.Since(q.since)
	if el < 20*time.Millisecond {
		return
	}
	// Size to the best rate seen: a buffer sized to a rate that the
	// buffer's own smallness (or a busy receiver) held down would shrink
	// itself into a spiral.
	q.peak = max(q.peak, float64(q.bytes)/el.Seconds())
	want := int(q.peak * queueBudget.Seconds())
	want = min(max(want, 2*q.floor), maxSendBuffer)
	if want > q.size*5/4 || want < q.size*3/4 {
		q.tcp.SetWriteBuffer(want / 2)
		q.size = want
	}
	q.since, q.bytes = time.Now(), 0
}
