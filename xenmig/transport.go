package xenmig

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
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

// Listener accepts migrations: it pairs each session's main and urgent
// connections, and hands the connections of a resumed session to the
// receiver waiting for them.
//
// A connection costs little until it has said who it is: its handshake runs
// in its own goroutine (a silent peer never holds up the accept loop), at
// most maxHandshakes at a time, reads nothing but a Hello of its exact size,
// and gets its record buffers only once its session's two connections are
// paired. Refused connections are logged with the reason, at most a few a
// second.
type Listener struct {
	ln        net.Listener
	transport Transport
	log       *logrus.Entry
	slots     chan struct{} // one per handshake in progress
	refusals  *refusalLog
	closed    chan struct{}

	mu       sync.Mutex
	joining  map[sessionID]*joining      // sessions whose main awaits its other connections
	resumers map[sessionID]chan pairing  // receivers waiting for a session to resume
	live     map[sessionID]chan struct{} // receivers serving a post-copy: told when the sender reopens
	ended    map[sessionID]string        // how recent sessions ended: wire.Session*
	endOrder []sessionID                 // ended's keys, oldest first
	mains    chan pairing                // new sessions
	err      error                       // why accepting stopped; set before closed is closed
}

// maxHandshakes bounds the connections a Listener holds before their
// session is paired: beyond it, new connections are closed at once.
const maxHandshakes = 64

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

// pairing is a session's connections, all there.
type pairing struct {
	links *links
	id    sessionID
}

// rawConn is an urgent or bulk connection that has said its Hello.
type rawConn struct {
	nc     net.Conn
	tcp    *net.TCPConn
	stream uint8
}

// joining collects the urgent and bulk connections of a session whose main
// connection has arrived.
type joining struct {
	urgent chan rawConn
	bulk   chan rawConn
}

// Listen starts accepting migrations on ln. Options: WithLogger (refused
// connections are logged there).
func Listen(ln net.Listener, t Transport, opts ...Option) *Listener {
	o := buildOptions(opts)
	l := &Listener{ln: ln, transport: t, log: o.log, slots: make(chan struct{}, maxHandshakes),
		refusals: newRefusalLog(o.log), closed: make(chan struct{}),
		joining: map[sessionID]*joining{}, resumers: map[sessionID]chan pairing{},
		live: map[sessionID]chan struct{}{}, ended: map[sessionID]string{}, mains: make(chan pairing)}
	go l.acceptLoop()
	return l
}

// Addr returns the listening address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting.
func (l *Listener) Close() error { return l.ln.Close() }

func (l *Listener) acceptLoop() {
	defer close(l.closed)
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			l.err = err // before l.closed is closed
			return
		}
		select {
		case l.slots <- struct{}{}:
			go func() {
				defer func() { <-l.slots }()
				l.handshake(nc)
			}()
		default:
			l.refusals.refused(nc.RemoteAddr(), fmt.Sprintf("more than %d connections in their handshake", maxHandshakes))
			nc.Close()
		}
	}
}

// writeAck answers a Hello without a record buffer: the connection has
// nothing else in flight.
func writeAck(nc net.Conn, ack wire.Ack) error {
	_, err := nc.Write(wire.AppendRecord(nil, wire.TypeHelloAck, wire.MarshalJSON(ack)))
	return err
}

// refuse answers a Hello with a refusal, logs it, and closes nc; ended says
// how the session ended, if it did.
func (l *Listener) refuse(nc net.Conn, msg, ended string) {
	l.refusals.refused(nc.RemoteAddr(), msg)
	writeAck(nc, wire.Ack{Version: wire.Version, Message: msg, Ended: ended})
	nc.Close()
}

// handshake answers one connection's Hello and files it by role. Everything
// it waits for is bounded by the transport's dial timeout.
func (l *Listener) handshake(nc net.Conn) {
	deadline := time.Now().Add(l.transport.dialTimeout())
	nc.SetDeadline(deadline)
	tcp := tuneSocket(nc)
	if l.transport.TLS != nil {
		tc := tls.Server(nc, l.transport.TLS)
		if err := tc.Handshake(); err != nil {
			l.refusals.refused(nc.RemoteAddr(), tlsRefusal(err))
			nc.Close()
			return
		}
		nc = tc
	}
	h, err := wire.ReadHello(nc)
	if err != nil {
		why := fmt.Sprintf("no xenmig hello: %v", err)
		if errors.Is(err, wire.ErrTLSHandshake) {
			why = "the sender speaks TLS, this receiver plaintext (tls.insecure_plaintext is set here only)"
		}
		l.refusals.refused(nc.RemoteAddr(), why)
		nc.Close()
		return
	}
	if h.Version != wire.Version {
		l.refuse(nc, fmt.Sprintf("receiver speaks protocol version %d, sender %d: upgrade the older side", wire.Version, h.Version), "")
		return
	}
	id := sessionID(h.Session)
	switch h.Role {
	case wire.RoleMain:
		l.mu.Lock()
		deliver, waiting := l.resumers[id]
		ended := l.ended[id]
		_, dup := l.joining[id]
		if h.Resume && !waiting || dup {
			if kick, ok := l.live[id]; ok && h.Resume && !dup {
				// The sender found the connections broken before we
				// did (a stall shows on its side first): drop them and
				// wait for its next try.
				select {
				case kick <- struct{}{}:
				default:
				}
			}
			l.mu.Unlock()
			switch {
			case dup:
				l.refuse(nc, "a main channel for this session is already open", "")
			case ended == wire.SessionNotSwitched:
				l.refuse(nc, "the migration ended here before the switchover; no copy of the domain was kept", wire.SessionNotSwitched)
			case ended == wire.SessionComplete:
				l.refuse(nc, "the migration completed here; the domain runs here", wire.SessionComplete)
			default:
				l.refuse(nc, "no broken migration to resume in this session (yet)", "")
			}
			return
		}
		j := &joining{urgent: make(chan rawConn, 1), bulk: make(chan rawConn, wire.MaxStreams)}
		l.joining[id] = j
		l.mu.Unlock()
		u, bulk, err := l.awaitOthers(nc, id, j, int(h.Streams), deadline)
		if err != nil {
			l.refusals.refused(nc.RemoteAddr(), err.Error())
			nc.Close()
			return
		}
		c := &links{main: newConn(nc, tcp, l.transport), urgent: newConn(u.nc, u.tcp, l.transport)}
		c.main.helloDone(l.transport)
		c.urgent.helloDone(l.transport)
		nc.SetDeadline(time.Time{})
		u.nc.SetDeadline(time.Time{})
		for _, b := range bulk {
			b.nc.SetDeadline(time.Time{})
			bc := newConn(b.nc, b.tcp, l.transport)
			bc.helloDone(l.transport)
			bc.stream = b.stream
			c.bulk = append(c.bulk, bc)
		}
		p := pairing{links: c, id: id}
		if !h.Resume {
			select {
			case l.mains <- p:
			case <-l.closed:
				c.close()
			}
			return
		}
		select {
		case deliver <- p:
		default:
			c.close() // the receiver already has a resumed session
		}
	case wire.RoleUrgent, wire.RoleBulk:
		l.mu.Lock()
		j, ok := l.joining[id]
		l.mu.Unlock()
		if !ok {
			l.refuse(nc, fmt.Sprintf("%v channel for an unknown session", h.Role), "")
			return
		}
		ch := j.urgent
		if h.Role == wire.RoleBulk {
			ch = j.bulk
		}
		if err := writeAck(nc, wire.Ack{OK: true, Version: wire.Version}); err != nil {
			nc.Close()
			return
		}
		select {
		case ch <- rawConn{nc, tcp, h.Stream}:
		default:
			l.refuse(nc, fmt.Sprintf("more %v channels than the session has", h.Role), "")
		}
	default:
		l.refuse(nc, fmt.Sprintf("unknown channel role %v", h.Role), "")
	}
}

// awaitOthers accepts a main channel's Hello and waits, until deadline, for
// the urgent channel and the streams-1 bulk ones of the same session; it
// returns the bulk ones in stream order.
func (l *Listener) awaitOthers(nc net.Conn, id sessionID, j *joining, streams int, deadline time.Time) (rawConn, []rawConn, error) {
	var urgent rawConn
	var bulk []rawConn
	fail := func(err error) (rawConn, []rawConn, error) {
		l.mu.Lock()
		if l.joining[id] == j {
			delete(l.joining, id)
		}
		l.mu.Unlock()
		if urgent.nc != nil {
			urgent.nc.Close()
		}
		for _, b := range bulk {
			b.nc.Close()
		}
		for { // those that came after all: close them too
			select {
			case u := <-j.urgent:
				u.nc.Close()
			case b := <-j.bulk:
				b.nc.Close()
			default:
				return rawConn{}, nil, err
			}
		}
	}
	if err := writeAck(nc, wire.Ack{OK: true, Version: wire.Version}); err != nil {
		return fail(fmt.Errorf("acknowledge the main channel: %w", err))
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for urgent.nc == nil || len(bulk) < streams-1 {
		select {
		case urgent = <-j.urgent:
		case b := <-j.bulk:
			bulk = append(bulk, b)
		case <-t.C:
			return fail(fmt.Errorf("the sender opened %d of its %d bulk channels and urgent=%t", len(bulk), streams-1, urgent.nc != nil))
		case <-l.closed:
			return fail(errors.New("the listener closed"))
		}
	}
	l.mu.Lock()
	delete(l.joining, id)
	l.mu.Unlock()
	// Bulk connections arrive in any order: put each at its index.
	slices.SortFunc(bulk, func(a, b rawConn) int { return int(a.stream) - int(b.stream) })
	for i, b := range bulk {
		if int(b.stream) != i+1 {
			return fail(fmt.Errorf("bulk channel %d opened twice, %d never", b.stream, i+1))
		}
	}
	return urgent, bulk, nil
}

// accept returns the next new session's connections.
func (l *Listener) accept(ctx context.Context) (*links, sessionID, error) {
	select {
	case <-ctx.Done():
		return nil, sessionID{}, ctx.Err()
	case <-l.closed:
		return nil, sessionID{}, fmt.Errorf("accept: %w", l.err)
	case p := <-l.mains:
		return p.links, p.id, nil
	}
}

// serving registers a receiver serving session id's post-copy: kick fires
// when the sender reopens the session while the receiver still holds its
// old connections. done unregisters it.
func (l *Listener) serving(id sessionID) (kick <-chan struct{}, done func()) {
	ch := make(chan struct{}, 1)
	l.mu.Lock()
	l.live[id] = ch
	l.mu.Unlock()
	return ch, func() {
		l.mu.Lock()
		delete(l.live, id)
		l.mu.Unlock()
	}
}

// awaitResume waits, until ctx is done, for the sender to reopen session id.
func (l *Listener) awaitResume(ctx context.Context, id sessionID) (*links, error) {
	ch := make(chan pairing, 1)
	l.mu.Lock()
	l.resumers[id] = ch
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.resumers, id)
		l.mu.Unlock()
	}()
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the source to reconnect: %w", ctx.Err())
	case p := <-ch:
		return p.links, nil
	}
}
