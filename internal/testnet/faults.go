package testnet

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Fault is what a Faults proxy does to the connections open when it strikes.
type Fault int

// Faults a proxy can inject.
const (
	// Cut closes both ends, as a failed network path does.
	Cut Fault = iota
	// Stall keeps both ends open and reading, but nothing they send
	// arrives: TCP sees its data acknowledged and no fault, as with a
	// segment the receiving kernel never accepts while ACKs still flow.
	// A close still passes.
	Stall
	// Slow forwards at SlowRate bytes a second from then on.
	Slow
)

func (f Fault) String() string {
	return [...]string{"cut", "stall", "slow"}[f]
}

// SlowRate is the rate of connections a Slow fault struck.
const SlowRate = 1 << 20

// Faults proxies every connection to an address and, once a given number
// of bytes from the clients has passed (or on demand), strikes the
// connections open at that moment with a fault; later connections pass
// whole.
type Faults struct {
	// Addr is where the proxy listens.
	Addr string

	sent   atomic.Int64 // bytes from clients, all connections
	at     atomic.Int64 // strike when sent reaches this (-1: never)
	fault  Fault
	struck atomic.Bool

	mu    sync.Mutex
	links []*link
}

// link is one proxied connection.
type link struct {
	client, up net.Conn
	state      atomic.Int32 // 0: pass, 1: stalled, 2: slow
}

// NewFaults proxies to addr; it strikes with fault once n client bytes have
// passed (n < 0: only when Strike is called).
func NewFaults(t testing.TB, addr string, n int64, fault Fault) *Faults {
	t.Helper()
	f := &Faults{fault: fault}
	f.at.Store(n)
	f.Addr = Serve(t, func(c net.Conn) {
		up, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer up.Close()
		l := &link{client: c, up: up}
		f.mu.Lock()
		f.links = append(f.links, l)
		f.mu.Unlock()
		done := make(chan struct{})
		go func() {
			f.copy(l, c, up, false)
			close(done)
		}()
		f.copy(l, up, c, true)
		<-done
	})
	return f
}

// Sent returns the bytes the clients have sent through the proxy.
func (f *Faults) Sent() int64 { return f.sent.Load() }

// Struck reports whether the fault has struck.
func (f *Faults) Struck() bool { return f.struck.Load() }

// Strike applies the fault to every connection open now.
func (f *Faults) Strike() {
	if f.struck.Swap(true) {
		return
	}
	f.mu.Lock()
	links := f.links
	f.links = nil
	f.mu.Unlock()
	for _, l := range links {
		switch f.fault {
		case Cut:
			l.client.Close()
			l.up.Close()
		case Stall:
			l.state.Store(1)
		case Slow:
			l.state.Store(2)
		}
	}
}

// copy forwards src to dst through l's fault state; fromClient counts the
// bytes toward the strike.
func (f *Faults) copy(l *link, dst, src net.Conn, fromClient bool) {
	defer dst.Close()
	buf := make([]byte, 16<<10)
	for {
		n, err := src.Read(buf)
		chunk := buf[:n]
		if n > 0 && fromClient {
			before := f.sent.Add(int64(n)) - int64(n)
			if at := f.at.Load(); at >= 0 && before+int64(n) >= at && !f.struck.Load() {
				pass := n // a cut or a slow link strikes after this chunk
				if f.fault == Stall && n >= 2 {
					// The stall starts inside this chunk, at the byte
					// asked for but never at its edges: the peer is left
					// in the middle of what the chunk carried.
					pass = int(min(max(at-before, 1), int64(n-1)))
				}
				if _, werr := dst.Write(chunk[:pass]); werr != nil {
					return
				}
				chunk = chunk[pass:]
				f.Strike()
			}
		}
		for len(chunk) > 0 {
			switch l.state.Load() {
			case 1:
				chunk = nil // swallowed
				continue
			case 2:
				m := min(len(chunk), 4<<10)
				time.Sleep(time.Duration(m) * time.Second / SlowRate)
				if _, err := dst.Write(chunk[:m]); err != nil {
					return
				}
				chunk = chunk[m:]
				continue
			}
			if _, err := dst.Write(chunk); err != nil {
				return
			}
			chunk = nil
		}
		if err != nil {
			return
		}
	}
}
