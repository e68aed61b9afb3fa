package xenmig

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
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

// isClosed reports whether err means the connection was closed, by us or
// cleanly by the peer.
func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}
