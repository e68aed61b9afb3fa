package xenmig

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"net"
	"os"
	"sync"
	"time"

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
	// ErrAborted: the peer aborted the migration; the message says why.
	ErrAborted = errors.New("migration aborted by peer")
)

// conn is one of a migration's two connections with its record reader and
// writer.
type conn struct {
	net.Conn
	tcp *net.TCPConn // the socket under TLS, for its buffer sizes
	r   *wire.Reader
	w   *wire.Writer
}

func newConn(c net.Conn, tcp *net.TCPConn) *conn {
	return &conn{Conn: c, tcp: tcp, r: wire.NewReader(c), w: wire.NewWriter(c)}
}

// expect reads the next record and requires it to be of type t. An Abort
// from the peer becomes an error wrapping ErrAborted.
func (c *conn) expect(t wire.Type) ([]byte, error) {
	typ, body, err := c.r.Read()
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
}

func (t Transport) dialTimeout() time.Duration {
	if t.DialTimeout > 0 {
		return t.DialTimeout
	}
	return 10 * time.Second
}

// dial opens the main and urgent connections of a new session to addr and
// completes both handshakes.
func (t Transport) dial(ctx context.Context, addr string) (main, urgent *conn, err error) {
	var session [16]byte
	rand.Read(session[:])
	main, err = t.dialRole(ctx, addr, wire.RoleMain, session)
	if err != nil {
		return nil, nil, err
	}
	urgent, err = t.dialRole(ctx, addr, wire.RoleUrgent, session)
	if err != nil {
		main.Close()
		return nil, nil, err
	}
	return main, urgent, nil
}

func (t Transport) dialRole(ctx context.Context, addr string, role wire.Role, session [16]byte) (*conn, error) {
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
			return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		nc = tc
	}
	c := newConn(nc, tcp)
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if err := c.w.Write(wire.TypeHello, wire.Hello{Version: wire.Version, Role: role, Session: session}.Marshal()); err != nil {
		c.Close()
		return nil, fmt.Errorf("hello to %s: %w", addr, err)
	}
	typ, body, err := c.r.Read()
	if err != nil || typ != wire.TypeHelloAck {
		c.Close()
		if err == nil {
			err = fmt.Errorf("answered with record %v", typ)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrNotXenmig, addr, err)
	}
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
		return nil, fmt.Errorf("%w: %s", ErrRefused, ack.Message)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// socketBuffer is the kernel buffer of each direction of a connection at the
// start; the main channel's send buffer then follows the link (sendQueue).
const socketBuffer = 256 << 10

// tuneSocket disables Nagle (requests are small and urgent), sets the
// buffers, and returns the TCP socket.
func tuneSocket(nc net.Conn) *net.TCPConn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	tc.SetNoDelay(true)
	if os.Getenv("XENMIG_CC") != "" {
		if raw, err := tc.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) {
				unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, os.Getenv("XENMIG_CC"))
			})
		}
	}
	tc.SetWriteBuffer(socketBuffer)
	tc.SetReadBuffer(socketBuffer)
	return tc
}

// Listener accepts migrations: it pairs each session's main and urgent
// connections.
type Listener struct {
	ln        net.Listener
	transport Transport

	mu       sync.Mutex
	sessions map[[16]byte]chan *conn // urgent connections awaited by a main
	mains    chan session
	err      error // why accepting stopped; set before mains is closed
}

type session struct {
	main   *conn
	urgent chan *conn
	id     [16]byte
}

// Listen starts accepting migrations on ln.
func Listen(ln net.Listener, t Transport) *Listener {
	l := &Listener{ln: ln, transport: t, sessions: map[[16]byte]chan *conn{}, mains: make(chan session)}
	go l.acceptLoop()
	return l
}

// Addr returns the listening address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting.
func (l *Listener) Close() error { return l.ln.Close() }

func (l *Listener) acceptLoop() {
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			l.err = err
			close(l.mains)
			return
		}
		go l.handshake(nc)
	}
}

// handshake answers one connection's Hello and files it by role.
func (l *Listener) handshake(nc net.Conn) {
	nc.SetDeadline(time.Now().Add(l.transport.dialTimeout()))
	tcp := tuneSocket(nc)
	if l.transport.TLS != nil {
		tc := tls.Server(nc, l.transport.TLS)
		if err := tc.Handshake(); err != nil {
			nc.Close()
			return
		}
		nc = tc
	}
	c := newConn(nc, tcp)
	body, err := c.expect(wire.TypeHello)
	if err != nil {
		c.Close()
		return
	}
	h, err := wire.UnmarshalHello(body)
	if err != nil {
		c.Close()
		return
	}
	if h.Version != wire.Version {
		c.w.Write(wire.TypeHelloAck, wire.MarshalJSON(wire.Ack{Version: wire.Version,
			Message: fmt.Sprintf("receiver speaks protocol version %d, sender %d: upgrade the older side", wire.Version, h.Version)}))
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	switch h.Role {
	case wire.RoleMain:
		ch := make(chan *conn, 1)
		l.mu.Lock()
		l.sessions[h.Session] = ch
		l.mu.Unlock()
		if err := c.w.Write(wire.TypeHelloAck, wire.MarshalJSON(wire.Ack{OK: true, Version: wire.Version})); err != nil {
			c.Close()
			return
		}
		l.mains <- session{main: c, urgent: ch, id: h.Session}
	case wire.RoleUrgent:
		l.mu.Lock()
		ch, ok := l.sessions[h.Session]
		delete(l.sessions, h.Session)
		l.mu.Unlock()
		if !ok {
			c.w.Write(wire.TypeHelloAck, wire.MarshalJSON(wire.Ack{Version: wire.Version, Message: "urgent channel for an unknown session"}))
			c.Close()
			return
		}
		if err := c.w.Write(wire.TypeHelloAck, wire.MarshalJSON(wire.Ack{OK: true, Version: wire.Version})); err != nil {
			c.Close()
			return
		}
		ch <- c
	default:
		c.Close()
	}
}

// accept returns the next session's two connections.
func (l *Listener) accept(ctx context.Context) (main, urgent *conn, err error) {
	for {
		var s session
		var ok bool
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case s, ok = <-l.mains:
			if !ok {
				return nil, nil, fmt.Errorf("accept: %w", l.err)
			}
		}
		select {
		case u := <-s.urgent:
			return s.main, u, nil
		case <-time.After(l.transport.dialTimeout()):
			l.mu.Lock()
			delete(l.sessions, s.id)
			l.mu.Unlock()
			s.main.Close() // the sender never opened its urgent channel
		case <-ctx.Done():
			s.main.Close()
			return nil, nil, ctx.Err()
		}
	}
}
