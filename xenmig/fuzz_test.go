package xenmig_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenctrl/sim"
	"github.com/xenmig/xenmig/xenmig"
	"github.com/xenmig/xenmig/xenmig/internal/wire"
)

// pipeListener is an in-memory net.Listener: Dial hands Accept the other
// end of a net.Pipe.
type pipeListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func (l *pipeListener) dial() (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// smallHost is the simulator refusing guests over 64 MiB (the fuzzer's
// configurations may ask for any size) and hiding its Inspector, so that
// the receiver does not wait to measure the guest's throughput.
type smallHost struct{ hypervisor.Hypervisor }

func (h smallHost) CreateShell(cfg hypervisor.DomainConfig) (hypervisor.DomID, error) {
	if cfg.MaxPages > 16384 {
		return 0, fmt.Errorf("fuzz host: %d pages: %w", cfg.MaxPages, hypervisor.ErrInvalid)
	}
	return h.Hypervisor.CreateShell(cfg)
}

// Fuzz input layout. Byte 0 selects the mode: bit 0 set, the rest is a
// stranger's raw bytes on a main connection, before any hello; clear, a
// well-formed session (main and urgent hellos) is opened and the rest is a
// sequence of records, each [channel+type u8][length u16][body]: bit 7 of
// the first byte sends it on the urgent channel, the low bits are its
// type, and the record is framed with a valid CRC so that the fuzzer
// reaches the receiver's state machine.
const fuzzRaw = 1

// strangerBound is what a peer that has not said its hello may make the
// receiver allocate.
const strangerBound = 4 << 20

// FuzzReceiver drives a receiver (Listen and Receive on a simulated host)
// over in-memory connections with sequences of records, well-formed and
// not: it must not panic, must end within a bound once its peer goes away,
// and must not let bytes sent before a hello cost more than a few MiB.
func FuzzReceiver(f *testing.F) {
	for _, seed := range receiverSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		pl := newPipeListener()
		l := xenmig.Listen(pl, xenmig.Transport{DialTimeout: 100 * time.Millisecond, StallTimeout: 200 * time.Millisecond})
		defer l.Close()
		host := sim.NewHost()
		defer host.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := xenmig.Receive(ctx, smallHost{host}, l, xenmig.WithReconnectTimeout(0))
			done <- err
		}()
		if in[0]&fuzzRaw != 0 {
			strangerBytes(t, pl, in[1:])
			cancel()
		} else {
			session(t, pl, in[1:])
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("receiver still running 10 s after its peer went away")
		}
	})
}

// strangerBytes sends b on a connection that never says hello and checks
// what it cost.
func strangerBytes(t *testing.T, pl *pipeListener, b []byte) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c, err := pl.dial()
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, c)
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write(b)
	c.Close()
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > strangerBound {
		t.Errorf("%d bytes before a hello made the receiver allocate %d KiB, want under %d KiB", len(b), got>>10, strangerBound>>10)
	}
}

// session opens a well-formed session and sends the records encoded in b.
func session(t *testing.T, pl *pipeListener, b []byte) {
	id := [16]byte{0xf0, 0x22}
	var conns [2]net.Conn
	for i, role := range []wire.Role{wire.RoleMain, wire.RoleUrgent} {
		c, err := pl.dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if err := wire.NewWriter(c).Write(wire.TypeHello, wire.Hello{Version: wire.Version, Role: role, Session: id, Streams: 1}.Marshal()); err != nil {
			return
		}
		if typ, _, err := wire.NewReader(c).Read(); err != nil || typ != wire.TypeHelloAck {
			return
		}
		c.SetDeadline(time.Time{})
		go io.Copy(io.Discard, c) // the receiver's answers
		conns[i] = c
	}
	ws := [2]*wire.Writer{wire.NewWriter(conns[0]), wire.NewWriter(conns[1])}
	for len(b) >= 3 {
		ch, typ := b[0]>>7, wire.Type(b[0]&0x7f)
		n := min(int(binary.LittleEndian.Uint16(b[1:])), len(b)-3)
		body := b[3 : 3+n]
		b = b[3+n:]
		conns[ch].SetWriteDeadline(time.Now().Add(time.Second))
		if err := ws[ch].Write(typ, body); err != nil {
			if errors.Is(err, wire.ErrTooLarge) {
				continue
			}
			return // the receiver hung up
		}
	}
}

// record encodes one record of a fuzz session.
func record(urgent bool, typ wire.Type, body []byte) []byte {
	b := byte(typ)
	if urgent {
		b |= 0x80
	}
	return append(binary.LittleEndian.AppendUint16([]byte{b}, uint16(len(body))), body...)
}

// receiverSeeds are a whole post-copy session of a small guest and a few
// strangers.
func receiverSeeds(t testing.TB) [][]byte {
	h := sim.NewHost()
	defer h.Close()
	spec := guest("fuzz", sim.Idle, 100)
	spec.MemoryPages, spec.UsedPages, spec.Holes = 64, 16, nil
	spec.Workload = sim.DefaultWorkload(sim.Idle, 64)
	dom, err := h.CreateDomain(spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := h.Config(dom)
	pop, _ := h.Populated(dom)
	max, _ := h.MaxGFN(dom)
	cpu, _ := h.SaveCPU(dom)
	var seeds [][]byte
	for _, mode := range []xenmig.Mode{xenmig.PostCopy, xenmig.PreCopy, xenmig.Hybrid} {
		body, _ := wire.Config{Mode: string(mode), Domain: cfg, MaxGFN: max, Populated: pop}.Marshal()
		s := []byte{0}
		s = append(s, record(false, wire.TypeConfig, body)...)
		gfns := pop.GFNs()[:4]
		zero := []bool{true, true, false, true}
		pages := wire.AppendPagesHeader(nil, 0, gfns, zero)
		pages = append(pages, make([]byte, hypervisor.PageSize)...)
		if mode == xenmig.Hybrid {
			staged := wire.AppendPagesHeader(nil, wire.PagesStage, gfns, zero)
			s = append(s, record(false, wire.TypePages, append(staged, make([]byte, hypervisor.PageSize)...))...)
		}
		if mode == xenmig.PreCopy {
			s = append(s, record(false, wire.TypePages, pages)...)
		}
		s = append(s, record(false, wire.TypeLayout, wire.MarshalBitmap(pop))...)
		if mode == xenmig.Hybrid {
			s = append(s, record(false, wire.TypeOwed, wire.MarshalGFNs(gfns[:1]))...)
		}
		s = append(s, record(false, wire.TypeCPU, wire.MarshalCPU(cpu))...)
		s = append(s, record(false, wire.TypeGo, nil)...)
		if mode == xenmig.PostCopy {
			s = append(s, record(true, wire.TypePages, wire.AppendPagesHeader(nil, wire.PagesDemand, gfns[3:], zero[3:]))...)
			s = append(s, record(false, wire.TypePages, pages)...)
		}
		s = append(s, record(false, wire.TypePushDone, nil)...)
		s = append(s, record(false, wire.TypeFinished, nil)...)
		seeds = append(seeds, s)
	}
	stranger := []byte{fuzzRaw}
	stranger = binary.LittleEndian.AppendUint32(stranger, uint32(wire.TypeConfig))
	stranger = binary.LittleEndian.AppendUint32(stranger, wire.MaxBody)
	stranger = binary.LittleEndian.AppendUint32(stranger, 0)
	return append(seeds, stranger, append([]byte{fuzzRaw}, "GET / HTTP/1.1\r\n\r\n"...), []byte{fuzzRaw, 0x16, 3, 1, 0, 200, 1})
}
