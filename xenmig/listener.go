package xenmig

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/xenmig/xenmig/xenmig/internal/wire"
)

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
