package xenmig

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
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
}

func (t Transport) dialTimeout() time.Duration {
	if t.DialTimeout > 0 {
		return t.DialTimeout
	}
	return 10 * time.Second
}

// sessionID names a migration's pair of connections, across reconnections.
type sessionID [16]byte

func newSessionID() sessionID {
	var id sessionID
	rand.Read(id[:])
	return id
}

// dial opens the main and urgent connections of session id to addr and
// completes both handshakes; resume reopens a session that broke after the
// switchover.
func (t Transport) dial(ctx context.Context, addr string, id sessionID, resume bool) (main, urgent *conn, err error) {
	main, err = t.dialRole(ctx, addr, wire.RoleMain, id, resume)
	if err != nil {
		return nil, nil, err
	}
	urgent, err = t.dialRole(ctx, addr, wire.RoleUrgent, id, resume)
	if err != nil {
		main.Close()
		return nil, nil, err
	}
	return main, urgent, nil
}

func (t Transport) dialRole(ctx context.Context, addr string, role wire.Role, id sessionID, resume bool) (*conn, error) {
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
	if err := c.w.Write(wire.TypeHello, wire.Hello{Version: wire.Version, Role: role, Session: id, Resume: resume}.Marshal()); err != nil {
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

// tuneSocket disables Nagle (requests are small and urgent), sets the
// buffers, and returns the TCP socket.
func tuneSocket(nc net.Conn) *net.TCPConn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	tc.SetNoDelay(true)
	tc.SetWriteBuffer(socketBuffer)
	tc.SetReadBuffer(socketBuffer)
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

// Listener accepts migrations: it pairs each session's main and urgent
// connections, and hands the connections of a resumed session to the
// receiver waiting for them.
type Listener struct {
	ln        net.Listener
	transport Transport

	mu       sync.Mutex
	urgents  map[sessionID]chan *conn   // urgent connections awaited by a main
	resumers map[sessionID]chan pairing // receivers waiting for a session to resume
	ended    map[sessionID]string       // how recent sessions ended: wire.Session*
	endOrder []sessionID                // ended's keys, oldest first
	mains    chan pairing               // new sessions
	err      error                      // why accepting stopped; set before mains is closed
}

// endedSessions is how many ended sessions a Listener remembers, to answer
// a sender that lost its connections at the switchover.
const endedSessions = 256

// remember records how session id ended, for a sender that comes back.
func (l *Listener) remember(id sessionID, how string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.ended[id]; !ok {
		l.endOrder = append(l.endOrder, id)
	}
	l.ended[id] = how
	if len(l.endOrder) > endedSessions {
		delete(l.ended, l.endOrder[0])
		l.endOrder = l.endOrder[1:]
	}
}

// pairing is a session's main connection waiting for its urgent one.
type pairing struct {
	main   *conn
	urgent chan *conn
	id     sessionID
}

// Listen starts accepting migrations on ln.
func Listen(ln net.Listener, t Transport) *Listener {
	l := &Listener{ln: ln, transport: t, urgents: map[sessionID]chan *conn{},
		resumers: map[sessionID]chan pairing{}, ended: map[sessionID]string{}, mains: make(chan pairing)}
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

// refuse answers a Hello with a refusal and closes c; ended says how the
// session ended, if it did.
func refuse(c *conn, msg, ended string) {
	c.w.Write(wire.TypeHelloAck, wire.MarshalJSON(wire.Ack{Version: wire.Version, Message: msg, Ended: ended}))
	c.Close()
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
		refuse(c, fmt.Sprintf("receiver speaks protocol version %d, sender %d: upgrade the older side", wire.Version, h.Version), "")
		return
	}
	c.SetDeadline(time.Time{})
	id := sessionID(h.Session)
	switch h.Role {
	case wire.RoleMain:
		l.mu.Lock()
		deliver, waiting := l.resumers[id]
		ended := l.ended[id]
		if h.Resume && !waiting {
			l.mu.Unlock()
			switch ended {
			case wire.SessionNotSwitched:
				refuse(c, "the migration ended here before the switchover; no copy of the domain was kept", wire.SessionNotSwitched)
			case wire.SessionComplete:
				refuse(c, "the migration completed here; the domain runs here", wire.SessionComplete)
			default:
				refuse(c, "no broken migration to resume in this session (yet)", "")
			}
			return
		}
		ch := make(chan *conn, 1)
		l.urgents[id] = ch
		l.mu.Unlock()
		if err := c.w.Write(wire.TypeHelloAck, wire.MarshalJSON(wire.Ack{OK: true, Version: wire.Version})); err != nil {
			c.Close()
			return
		}
		p := pairing{main: c, urgent: ch, id: id}
		if !h.Resume {
			l.mains <- p
			return
		}
		select {
		case deliver <- p:
		default:
			c.Close() // the receiver already has a resumed pair
		}
	case wire.RoleUrgent:
		l.mu.Lock()
		ch, ok := l.urgents[id]
		delete(l.urgents, id)
		l.mu.Unlock()
		if !ok {
			refuse(c, "urgent channel for an unknown session", "")
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

// accept returns the next new session's two connections.
func (l *Listener) accept(ctx context.Context) (main, urgent *conn, id sessionID, err error) {
	for {
		var p pairing
		var ok bool
		select {
		case <-ctx.Done():
			return nil, nil, id, ctx.Err()
		case p, ok = <-l.mains:
			if !ok {
				return nil, nil, id, fmt.Errorf("accept: %w", l.err)
			}
		}
		if u, err := l.pair(ctx, p); err == nil {
			return p.main, u, p.id, nil
		} else if ctx.Err() != nil {
			return nil, nil, id, err
		}
	}
}

// awaitResume waits, until ctx is done, for the sender to reopen session id.
func (l *Listener) awaitResume(ctx context.Context, id sessionID) (main, urgent *conn, err error) {
	ch := make(chan pairing, 1)
	l.mu.Lock()
	l.resumers[id] = ch
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.resumers, id)
		l.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("waiting for the source to reconnect: %w", ctx.Err())
		case p := <-ch:
			if u, err := l.pair(ctx, p); err == nil {
				return p.main, u, nil
			}
		}
	}
}

// pair waits for p's urgent connection; a sender that never opens it has
// its main connection closed.
func (l *Listener) pair(ctx context.Context, p pairing) (*conn, error) {
	fail := func(err error) (*conn, error) {
		l.mu.Lock()
		delete(l.urgents, p.id)
		l.mu.Unlock()
		p.main.Close()
		return nil, err
	}
	select {
	case u := <-p.urgent:
		return u, nil
	case <-time.After(l.transport.dialTimeout()):
		return fail(errors.New("the sender never opened its urgent channel"))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
}
