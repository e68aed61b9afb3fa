package xenmig

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ErrStalled: a connection made no progress for the transport's stall
// timeout: a write the peer acknowledged nothing of, or a record whose rest
// did not come. TCP may still carry acknowledgements (so neither
// keepalives nor TCP_USER_TIMEOUT fire), but nothing moves: the connection
// is treated as broken, and after the switchover the post-copy recovery
// reconnects.
var ErrStalled = errors.New("connection stalled")

// stallChunk is how much of a write must move within the stall timeout
// on a connection whose acknowledged bytes cannot be read.
const stallChunk = 64 << 10

// stallConn is the progress watchdog of a connection. A write must see
// the peer acknowledge new bytes (TCP_INFO) within the stall timeout:
// write() itself may sleep far longer on a slow link, until the kernel has
// sent half of a large send buffer. A read in the middle of a record (the
// wire reader says when) must get a byte within the timeout. Waiting
// between records is not bounded: a peer may have nothing to say.
// Deadlines the engine sets itself (the handshake's) still hold.
type stallConn struct {
	net.Conn
	tcp   *net.TCPConn // nil: not TCP; writes are bounded a chunk at a time
	stall time.Duration
	mid   atomic.Bool

	mu                  sync.Mutex
	readBase, writeBase time.Time // deadlines the engine set
	writing             uint64    // the write the timer watches; 0: none
	writes              uint64
	stalledWrite        bool
}

func newStallConn(c net.Conn, tcp *net.TCPConn, stall time.Duration) *stallConn {
	return &stallConn{Conn: c, tcp: tcp, stall: stall}
}

// bytesAcked returns how many bytes the peer has acknowledged on tcp.
func bytesAcked(tcp *net.TCPConn) (uint64, bool) {
	info, ok := tcpInfo(tcp)
	if !ok {
		return 0, false
	}
	return info.Bytes_acked, true
}

// tcpInfo returns tcp's TCP_INFO.
func tcpInfo(tcp *net.TCPConn) (*unix.TCPInfo, bool) {
	raw, err := tcp.SyscallConn()
	if err != nil {
		return nil, false
	}
	var info *unix.TCPInfo
	raw.Control(func(fd uintptr) { info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	if err != nil || info == nil {
		return nil, false
	}
	return info, true
}

// bound returns the sooner of now+stall and base.
func (c *stallConn) bound(base time.Time) time.Time {
	d := time.Now().Add(c.stall)
	if !base.IsZero() && base.Before(d) {
		return base
	}
	return d
}

func (c *stallConn) stalled(err error, base time.Time) error {
	if errors.Is(err, os.ErrDeadlineExceeded) && (base.IsZero() || time.Now().Before(base)) {
		return fmt.Errorf("%w: nothing moved for %v: %w", ErrStalled, c.stall, err)
	}
	return err
}

// Read reads, bounded by the stall timeout in the middle of a record.
func (c *stallConn) Read(b []byte) (int, error) {
	if !c.mid.Load() {
		return c.Conn.Read(b)
	}
	c.mu.Lock()
	base := c.readBase
	c.mu.Unlock()
	c.Conn.SetReadDeadline(c.bound(base))
	n, err := c.Conn.Read(b)
	if err != nil {
		err = c.stalled(err, base)
	}
	return n, err
}

// midRecord tells the watchdog whether the reader is inside a record.
func (c *stallConn) midRecord(inside bool) {
	c.mid.Store(inside)
	if !inside {
		c.mu.Lock()
		base := c.readBase
		c.mu.Unlock()
		c.Conn.SetReadDeadline(base)
	}
}

// Write writes b, and breaks the connection (ErrStalled) if the peer
// acknowledges nothing new for the stall timeout meanwhile.
func (c *stallConn) Write(b []byte) (int, error) {
	if c.tcp == nil {
		return c.writeChunks(b)
	}
	last, ok := bytesAcked(c.tcp)
	if !ok {
		return c.writeChunks(b)
	}
	c.mu.Lock()
	c.writes++
	id := c.writes
	c.writing, c.stalledWrite = id, false
	base := c.writeBase
	c.mu.Unlock()
	c.Conn.SetWriteDeadline(base)
	var t *time.Timer
	t = time.AfterFunc(c.stall, func() {
		now, _ := bytesAcked(c.tcp)
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.writing != id {
			return // that write has returned
		}
		if now != last {
			last = now
			t.Reset(c.stall)
			return
		}
		c.stalledWrite = true
		c.Conn.SetWriteDeadline(time.Unix(1, 0)) // ends the write
	})
	n, err := c.Conn.Write(b)
	t.Stop()
	c.mu.Lock()
	c.writing = 0
	stalled := c.stalledWrite
	c.mu.Unlock()
	if err != nil && stalled {
		err = fmt.Errorf("%w: the peer acknowledged nothing for %v: %w", ErrStalled, c.stall, err)
	}
	return n, err
}

// writeChunks writes b a chunk at a time, each bounded by the stall
// timeout.
func (c *stallConn) writeChunks(b []byte) (int, error) {
	c.mu.Lock()
	base := c.writeBase
	c.mu.Unlock()
	var n int
	for n < len(b) {
		c.Conn.SetWriteDeadline(c.bound(base))
		m, err := c.Conn.Write(b[n:min(len(b), n+stallChunk)])
		n += m
		if err != nil {
			return n, c.stalled(err, base)
		}
	}
	return n, nil
}

// SetDeadline sets the engine's own read and write deadlines.
func (c *stallConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.readBase, c.writeBase = t, t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline sets the engine's own read deadline.
func (c *stallConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.readBase = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline sets the engine's own write deadline.
func (c *stallConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.writeBase = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}
