package xenmig

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenmig/internal/wire"
)

// Errors of the connection set-up, testable with errors.Is.
var (
	// ErrRefused: the peer answered but refused the migration.
	ErrRefused = errors.New("receiver refused the migration")
	// ErrVersion: the two ends speak different protocol versions.
	ErrVersion = errors.New("protocol version mismatch")
	// ErrNotXenmig: the peer is not a xenmig receiver.
	ErrNotXenmig = errors.New("peer is not a xenmig receiver")
	// ErrAuth: mutual TLS authentication failed; the message says which
	// side's certificate was refused.
	ErrAuth = errors.New("mutual TLS authentication failed")
	// ErrAborted: the peer aborted the migration; the message says why.
	ErrAborted = errors.New("migration aborted by peer")
)

// Answers to a resume that settle a session whose connections broke.
var (
	// errNotSwitched: the receiver dropped the session before the
	// switchover; the domain never ran there.
	errNotSwitched = errors.New("the destination never took the domain over")
	// errDestinationComplete: every page had arrived; the domain runs there.
	errDestinationComplete = errors.New("the destination holds the whole domain")
)

// conn is one of a migration's two connections with its record reader and
// writer.
type conn struct {
	net.Conn
	tcp    *net.TCPConn // the socket under TLS, for its buffer sizes
	stream uint8        // index among the page streams (0: main, urgent)
	r      *wire.Reader
	w      *wire.Writer
	sealed bool // TLS authenticates every byte: records carry no checksum
}

// newConn wraps a connection that has said its Hello with the transport's
// progress watchdog and the record reader and writer.
func newConn(c net.Conn, tcp *net.TCPConn, t Transport) *conn {
	sc := newStallConn(c, tcp, t.stallTimeout())
	cn := &conn{Conn: sc, tcp: tcp, r: wire.NewReader(sc), w: wire.NewWriter(sc)}
	cn.r.OnRecord(sc.midRecord)
	return cn
}

// helloDone ends the hello exchange on c: under TLS, whose AEAD
// authenticates every byte, the records that follow carry no checksum.
func (c *conn) helloDone(t Transport) {
	if t.TLS != nil {
		c.sealed = true
		c.r.SkipChecksums()
		c.w.SkipChecksums()
	}
}

// expect reads the next record and requires it to be of type t. An Abort
// from the peer becomes an error wrapping ErrAborted.
func (c *conn) expect(t wire.Type) ([]byte, error) {
	typ, body, err := c.r.Read()
	return expected(t, typ, body, err)
}

// expected returns the body of a record read as typ (or the read's err) if
// it is of type t, as expect does.
func expected(t, typ wire.Type, body []byte, err error) ([]byte, error) {
	if err != nil {
		return nil, fmt.Errorf("waiting for %v: %w", t, err)
	}
	if typ == wire.TypeAbort && t != wire.TypeAbort {
		return nil, abortError(body)
	}
	if typ != t {
		return nil, fmt.Errorf("waiting for %v, got %v: %w", t, typ, wire.ErrMalformed)
	}
	return body, nil
}

// abortError turns an Abort record into an error wrapping ErrAborted and,
// where the code says, the hypervisor sentinel behind it.
func abortError(body []byte) error {
	var a wire.Abort
	wire.UnmarshalJSON(wire.TypeAbort, body, &a)
	switch a.Code {
	case wire.AbortPagingUnsupported:
		return fmt.Errorf("%w: %w: %s", ErrAborted, hypervisor.ErrPagingUnsupported, a.Reason)
	case wire.AbortGuestUnsupported:
		return fmt.Errorf("%w: %w: %s", ErrAborted, hypervisor.ErrGuestUnsupported, a.Reason)
	case wire.AbortIncompatible:
		return fmt.Errorf("%w: %w: %s", ErrAborted, hypervisor.ErrIncompatible, a.Reason)
	}
	return fmt.Errorf("%w: %s", ErrAborted, a.Reason)
}

// abortRecord describes err for the peer.
func abortRecord(err error) []byte {
	a := wire.Abort{Reason: err.Error()}
	switch {
	case errors.Is(err, hypervisor.ErrPagingUnsupported):
		a.Code = wire.AbortPagingUnsupported
	case errors.Is(err, hypervisor.ErrGuestUnsupported):
		a.Code = wire.AbortGuestUnsupported
	case errors.Is(err, hypervisor.ErrIncompatible):
		a.Code = wire.AbortIncompatible
	}
	return wire.MarshalJSON(a)
}

// Transport says how the two ends reach each other.
type Transport struct {
	// TLS, when set, authenticates both ends (mutual TLS: the config must
	// carry a certificate and the CA that signs the peer's).
	TLS *tls.Config
	// DialTimeout bounds connection set-up and the handshake.
	DialTimeout time.Duration
	// StallTimeout is how long a connection may make no progress in the
	// middle of a record (a write that moves nothing, a record whose
	// rest does not come) before it counts as broken (ErrStalled).
	// Default 15 s.
	StallTimeout time.Duration
}

func (t Transport) dialTimeout() time.Duration {
	if t.DialTimeout > 0 {
		return t.DialTimeout
	}
	return 10 * time.Second
}

func (t Transport) stallTimeout() time.Duration {
	if t.StallTimeout > 0 {
		return t.StallTimeout
	}
	return 15 * time.Second
}

// sessionID names a migration's pair of connections, across reconnections.
type sessionID [16]byte

func newSessionID() sessionID {
	var id sessionID
	rand.Read(id[:])
	return id
}

// links is a session's connections: main (control, and page stream 0),
// urgent, and the bulk page streams 1..n-1.
type links struct {
	main, urgent *conn
	bulk         []*conn
}

// streams returns the connections that carry pushed pages: main first.
func (l *links) streams() []*conn { return append([]*conn{l.main}, l.bulk...) }

// close closes every connection.
func (l *links) close() {
	l.main.Close()
	l.urgent.Close()
	for _, c := range l.bulk {
		c.Close()
	}
}

// dial opens the connections of session id to addr — main, urgent, then
// streams-1 bulk ones — and completes their handshakes; resume reopens a
// session that broke after the switchover.
func (t Transport) dial(ctx context.Context, addr string, id sessionID, resume bool, streams int) (*links, error) {
	l := &links{}
	h := wire.Hello{Version: wire.Version, Session: id, Resume: resume, Streams: uint8(streams)}
	var err error
	h.Role = wire.RoleMain
	if l.main, err = t.dialRole(ctx, addr, h); err != nil {
		return nil, err
	}
	h.Role = wire.RoleUrgent
	if l.urgent, err = t.dialRole(ctx, addr, h); err != nil {
		l.main.Close()
		return nil, err
	}
	h.Role = wire.RoleBulk
	for i := 1; i < streams; i++ {
		h.Stream = uint8(i)
		c, err := t.dialRole(ctx, addr, h)
		if err != nil {
			l.close()
			return nil, err
		}
		c.stream = h.Stream
		l.bulk = append(l.bulk, c)
	}
	return l, nil
}

func (t Transport) dialRole(ctx context.Context, addr string, h wire.Hello) (*conn, error) {
	role := h.Role
	ctx, cancel := context.WithTimeout(ctx, t.dialTimeout())
	defer cancel()
	d := net.Dialer{}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect %s (%v channel): %w", addr, role, err)
	}
	tcp := tuneSocket(nc)
	if t.TLS != nil {
		cfg := t.TLS
		if cfg.ServerName == "" {
			// Verify the receiver's certificate against the name we dialed.
			cfg = cfg.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			if why := dialDiagnosis(err, true); why != "" {
				return nil, fmt.Errorf("%w: TLS handshake with %s: %s: %w", ErrAuth, addr, why, err)
			}
			return nil, fmt.Errorf("%w: TLS handshake with %s: %w", ErrAuth, addr, err)
		}
		nc = tc
	}
	c := newConn(nc, tcp, t)
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	c.r.Allow(wire.TypeHelloAck)
	if err := c.w.Write(wire.TypeHello, h.Marshal()); err != nil {
		c.Close()
		return nil, fmt.Errorf("hello to %s: %w", addr, err)
	}
	typ, body, err := c.r.Read()
	if err != nil {
		c.Close()
		// In TLS 1.3 the receiver checks our certificate after our
		// handshake has completed: its refusal comes here, as an alert.
		if why := dialDiagnosis(err, t.TLS != nil); why != "" {
			sentinel := ErrNotXenmig
			if t.TLS != nil {
				sentinel = ErrAuth
			}
			return nil, fmt.Errorf("%w: %s (%v channel): %s: %v", sentinel, addr, role, why, err)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrNotXenmig, addr, err)
	}
	c.r.Allow()
	c.helloDone(t)
	var ack wire.Ack
	if err := wire.UnmarshalJSON(typ, body, &ack); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: %s: %v", ErrNotXenmig, addr, err)
	}
	if !ack.OK {
		c.Close()
		if ack.Version != wire.Version {
			return nil, fmt.Errorf("%w: we speak %d, %s speaks %d: %s", ErrVersion, wire.Version, addr, ack.Version, ack.Message)
		}
		switch ack.Ended {
		case wire.SessionNotSwitched:
			return nil, fmt.Errorf("%w: %w: %s", ErrRefused, errNotSwitched, ack.Message)
		case wire.SessionComplete:
			return nil, fmt.Errorf("%w: %w: %s", ErrRefused, errDestinationComplete, ack.Message)
		}
		return nil, fmt.Errorf("%w: %s", ErrRefused, ack.Message)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// deadPeer is how long sent data may stay unacknowledged before the
// connection counts as broken.
const deadPeer = 10 * time.Second

// socketBuffer is the kernel buffer of each direction of a connection at the
// start; the main channel's send buffer then follows the link (sendQueue).
const socketBuffer = 256 << 10

// maxSegment is the largest TCP segment the kernel may build or receive
// on a connection: with segmentation offload (GSO/GRO), 64 KiB whatever the
// MSS, and on loopback the MSS itself is about that.
const maxSegment = 64 << 10

// segmentTruesize is the kernel's accounting of a full segment in a socket
// buffer: its data plus the sk_buff and page overhead, up to twice the
// data on loopback.
const segmentTruesize = 2 * maxSegment

// receiveFloor is the smallest receive buffer (as set with SO_RCVBUF; the
// kernel doubles it) under which a connection might meet a segment the
// kernel can never accept: a segment whose true size exceeds the buffer is
// dropped and retransmitted forever while ACKs keep the connection alive.
// Four segments leave room for one being read while more arrive.
const receiveFloor = 4 * segmentTruesize / 2

// sendFloor is the smallest send buffer for a connection: two segments of
// its path's MSS (a send buffer under one segment cannot build one), and
// never under minSendBuffer.
func sendFloor(tc *net.TCPConn) int {
	floor := minSendBuffer
	if raw, err := tc.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) {
			if mss, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG); err == nil && mss > 0 {
				floor = max(floor, 2*min(mss, maxSegment))
			}
		})
	}
	return floor
}

// tuneSocket disables Nagle (requests are small and urgent), sets the
// buffers, and returns the TCP socket.
func tuneSocket(nc net.Conn) *net.TCPConn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	tc.SetNoDelay(true)
	tc.SetWriteBuffer(max(socketBuffer, sendFloor(tc)))
	tc.SetReadBuffer(max(socketBuffer, receiveFloor))
	// A peer that vanishes without a word (a crash, a cut cable) must end
	// the connection in seconds, not in TCP's minutes: silence is found by
	// keepalives, unacknowledged data by TCP_USER_TIMEOUT.
	tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 2 * time.Second, Interval: time.Second, Count: 5})
	if raw, err := tc.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(deadPeer.Milliseconds()))
		})
	}
	return tc
}
