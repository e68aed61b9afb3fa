package xenmig

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ErrStalled: a connection made no progress for the transport's stall
// timeout in the middle of a record. TCP may still carry acknowledgements
// (so neither keepalives nor TCP_USER_TIMEOUT fire), but nothing moves: the
// connection is treated as broken, and after the switchover the post-copy
// recovery reconnects.
var ErrStalled = errors.New("connection stalled")

// stallChunk is how much of a write must move within the stall timeout.
const stallChunk = 64 << 10

// stallConn is the progress watchdog of a connection. A write must move
// every stallChunk within the stall timeout; a read in the middle of a
// record (the wire reader says when) must get a byte within it. Waiting
// between records is not bounded: a peer may have nothing to say. Deadlines
// the engine sets itself (the handshake's) still hold.
type stallConn struct {
	net.Conn
	stall time.Duration
	mid   atomic.Bool

	mu                  sync.Mutex
	readBase, writeBase time.Time // deadlines the engine set
}

func newStallConn(c net.Conn, stall time.Duration) *stallConn {
	return &stallConn{Conn: c, stall: stall}
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

// Write writes b a chunk at a time, each bounded by the stall timeout.
func (c *stallConn) Write(b []byte) (int, error) {
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
