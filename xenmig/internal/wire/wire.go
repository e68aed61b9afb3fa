// Package wire is xenmig's migration stream: framed, checksummed records
// exchanged over the two TCP connections of a migration. docs/PROTOCOL.md is
// its specification; this package is the only code that knows the byte layout.
//
// Every record is a 12-byte header — type (u32), body length (u32), CRC32C of
// the body (u32), all little-endian — followed by the body. A reader checks
// the length against its type's bound (MaxBodyOf) before it reads the body,
// reads the body as it arrives rather than allocating the declared length
// at once, and checks the CRC before it hands a body out. On a connection
// whose transport authenticates every byte (TLS) the ends skip the CRC
// after the hello (SkipChecksums): the field is zero.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
)

// Version is the protocol version this build speaks. Both ends must agree.
const Version = 5

// Magic opens every Hello body.
const Magic = "XENMIG\x00\x01"

// HeaderSize is the size of a record header.
const HeaderSize = 12

// MaxBody bounds any record body; larger lengths are treated as corruption.
// Most types have a far smaller bound (MaxBodyOf).
const MaxBody = 64 << 20

// smallBody bounds the JSON records and any type this build does not know.
const smallBody = 64 << 10

// Type identifies a record.
type Type uint32

// Record types. Values are part of the protocol; never renumber.
const (
	TypeHello      Type = 1  // both ways: version, role, session
	TypeHelloAck   Type = 2  // receiver: accepted or refused, with a reason
	TypeConfig     Type = 3  // sender: domain config, mode, memory layout
	TypePrepared   Type = 4  // receiver: shell ready, memory paged out
	TypePages      Type = 5  // sender: a batch of pages
	TypeOwed       Type = 6  // sender: gfns whose earlier copy is stale (hybrid)
	TypeCPU        Type = 7  // sender: vCPU and platform state
	TypeReady      Type = 8  // receiver: state restored, ready to unpause
	TypeGo         Type = 9  // sender: the point of no return — unpause
	TypeResumed    Type = 10 // receiver: the domain runs on the destination
	TypeRequest    Type = 11 // receiver, urgent channel: gfns the guest faulted on
	TypePushDone   Type = 12 // sender: every page has been sent
	TypeComplete   Type = 13 // receiver: every gfn is installed
	TypeAbort      Type = 14 // either: the migration failed, with a reason
	TypeStats      Type = 15 // receiver: its measures, after Complete
	TypeFinished   Type = 16 // sender: source copy destroyed; close
	TypeGuestFinal Type = 17 // receiver: guest ran to its end; memory digest
	TypeResume     Type = 18 // receiver, on a resumed session: the gfns it still lacks
	TypeLayout     Type = 19 // sender, once paused: the populated gfns now
	TypeSync       Type = 20 // sender, on bulk streams: pages before it precede main's next control record
	TypeDirect     Type = 21 // receiver, post-copy, answering owed: more gfns it could not page out
	TypeShell      Type = 22 // receiver, post-copy: the shell exists; pages sent early are taken from now
	TypeHot        Type = 23 // sender, post-copy, before the switchover: gfns the early push leaves out, written lately
	TypeWalked     Type = 24 // receiver, post-copy, while the source pushes early: every gfn from this one up is taken
)

var typeNames = map[Type]string{
	TypeHello: "hello", TypeHelloAck: "hello-ack", TypeConfig: "config",
	TypePrepared: "prepared", TypePages: "pages", TypeOwed: "owed",
	TypeCPU: "cpu", TypeReady: "ready", TypeGo: "go", TypeResumed: "resumed",
	TypeRequest: "request", TypePushDone: "push-done", TypeComplete: "complete",
	TypeAbort: "abort", TypeStats: "stats", TypeFinished: "finished",
	TypeGuestFinal: "guest-final", TypeResume: "resume", TypeLayout: "layout", TypeSync: "sync", TypeDirect: "direct",
	TypeShell: "shell", TypeHot: "hot", TypeWalked: "walked",
}

// bodyBounds is the largest body of the record types that are small: the
// handshake's, the JSON records and the empty control records (64 KiB,
// room to grow). The others (config, prepared, pages, owed, cpu, request,
// resume, layout, hot) may carry a whole guest's gfns and have MaxBody; a type
// this build does not know has smallBody.
var bodyBounds = map[Type]uint32{
	TypeHello: uint32(helloSize), TypeHelloAck: smallBody, TypeAbort: smallBody,
	TypeGuestFinal: smallBody, TypeStats: 1 << 20,
	TypeReady: smallBody, TypeGo: smallBody, TypeResumed: smallBody, TypePushDone: smallBody,
	TypeComplete: smallBody, TypeFinished: smallBody, TypeSync: smallBody, TypeShell: smallBody,
	TypeWalked: smallBody,
}

// MaxBodyOf returns the largest body a record of type t may have: its
// length is checked against this before any of the body is read.
func MaxBodyOf(t Type) uint32 {
	if n, ok := bodyBounds[t]; ok {
		return n
	}
	if _, known := typeNames[t]; known {
		return MaxBody
	}
	return smallBody
}

func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// Errors a reader returns; wrapped with the record type where known.
var (
	ErrChecksum  = errors.New("record checksum mismatch")
	ErrTooLarge  = errors.New("record too large")
	ErrMalformed = errors.New("malformed record")
	// ErrTLSHandshake: a plaintext reader met the start of a TLS handshake:
	// the peer speaks TLS.
	ErrTLSHandshake = errors.New("the peer opened a TLS handshake, not a plaintext xenmig hello")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the CRC32C of b.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Writer writes records. It is not safe for concurrent use: each connection
// has one writing goroutine.
type Writer struct {
	w      *bufio.Writer
	dst    io.Writer // under w: large parts go straight here
	hdr    [HeaderSize]byte
	noSums bool
}

// NewWriter returns a Writer buffering into w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: bufio.NewWriterSize(w, 256<<10), dst: w} }

// SkipChecksums makes w write 0 in the checksum field of the records that
// follow, for a connection whose transport authenticates every byte (TLS's
// AEAD): a CRC on top would cost a pass over every page and catch nothing.
func (w *Writer) SkipChecksums() { w.noSums = true }

// directPart is the size from which a part of a body skips the buffer: a
// batch's page data is written from where it lies, not copied first.
const directPart = 64 << 10

// Write writes one record whose body is the concatenation of parts, and
// flushes it.
func (w *Writer) Write(t Type, parts ...[]byte) error {
	if err := w.Buffer(t, parts...); err != nil {
		return err
	}
	return w.Flush()
}

// Buffer writes one record, flushing only what precedes a large part.
func (w *Writer) Buffer(t Type, parts ...[]byte) error {
	var n int
	crc := uint32(0)
	for _, p := range parts {
		n += len(p)
		if !w.noSums {
			crc = crc32.Update(crc, castagnoli, p)
		}
	}
	if n > int(MaxBodyOf(t)) {
		return fmt.Errorf("write %v record of %d bytes (at most %d): %w", t, n, MaxBodyOf(t), ErrTooLarge)
	}
	binary.LittleEndian.PutUint32(w.hdr[0:], uint32(t))
	binary.LittleEndian.PutUint32(w.hdr[4:], uint32(n))
	binary.LittleEndian.PutUint32(w.hdr[8:], crc)
	if _, err := w.w.Write(w.hdr[:]); err != nil {
		return fmt.Errorf("write %v record: %w", t, err)
	}
	for _, p := range parts {
		var err error
		if len(p) >= directPart {
			if err = w.w.Flush(); err == nil {
				_, err = w.dst.Write(p)
			}
		} else {
			_, err = w.w.Write(p)
		}
		if err != nil {
			return fmt.Errorf("write %v record: %w", t, err)
		}
	}
	return nil
}

// Flush sends buffered records.
func (w *Writer) Flush() error {
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

// Reader reads records. It is not safe for concurrent use.
type Reader struct {
	r      *bufio.Reader
	buf    []byte
	allow  []Type // if set, the only types accepted
	mid    func(inside bool)
	noSums bool
}

// SkipChecksums makes r take the records that follow without checking their
// checksum field, for a connection whose transport authenticates every byte
// (TLS): the peer's Writer skips them too.
func (r *Reader) SkipChecksums() { r.noSums = true }

// OnRecord makes r call f(true) once the first byte of a record has arrived
// and the rest is still to come from the connection, and f(false) when the
// record has been read: a progress watchdog bounds the wait for the rest.
func (r *Reader) OnRecord(f func(inside bool)) { r.mid = f }

// readerBuffer is a Reader's read-ahead buffer.
const readerBuffer = 256 << 10

// NewReader returns a Reader over r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, readerBuffer)} }

// Allow restricts the records r accepts to types: any other is refused
// before its body is read. With no types, every type is accepted again.
func (r *Reader) Allow(types ...Type) { r.allow = types }

// bodyChunk is how much of a body is read at a time beyond what the
// Reader's buffer already holds: a body is read as it arrives, so a peer
// that declares a large record must send it to make the reader hold it.
const bodyChunk = 64 << 10

// Read returns the next record. The body is valid until the next Read.
// At a clean end of stream it returns io.EOF.
func (r *Reader) Read() (Type, []byte, error) {
	if r.mid != nil {
		if _, err := r.r.Peek(1); err != nil {
			return 0, nil, err
		}
		r.mid(true)
		defer r.mid(false)
	}
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, fmt.Errorf("read record header: %w", err)
		}
		return 0, nil, err
	}
	t, n, crc, err := parseHeader(hdr, r.allow)
	if err != nil {
		return t, nil, err
	}
	body, err := readBody(r.r, r.buf[:0], int(n))
	r.buf = body[:0]
	if err != nil {
		return t, nil, fmt.Errorf("read %v record body: %w", t, err)
	}
	if !r.noSums && Checksum(body) != crc {
		return t, nil, fmt.Errorf("read %v record: %w", t, ErrChecksum)
	}
	return t, body, nil
}

// parseHeader decodes a record header and checks its type against allow
// (when set) and its length against the type's bound.
func parseHeader(hdr [HeaderSize]byte, allow []Type) (t Type, n, crc uint32, err error) {
	t = Type(binary.LittleEndian.Uint32(hdr[0:]))
	n = binary.LittleEndian.Uint32(hdr[4:])
	crc = binary.LittleEndian.Uint32(hdr[8:])
	if allow != nil && !slices.Contains(allow, t) {
		return t, 0, 0, fmt.Errorf("unexpected %v record (want %v): %w", t, allow, ErrMalformed)
	}
	if n > MaxBodyOf(t) {
		return t, 0, 0, fmt.Errorf("read %v record of %d bytes (at most %d): %w", t, n, MaxBodyOf(t), ErrTooLarge)
	}
	return t, n, crc, nil
}

// readBody reads n bytes into buf's spare capacity, growing it only as the
// bytes arrive.
func readBody(r io.Reader, buf []byte, n int) ([]byte, error) {
	for len(buf) < n {
		chunk := n - len(buf)
		if cap(buf)-len(buf) < chunk {
			chunk = min(chunk, max(bodyChunk, len(buf))) // at most double what arrived
			buf = slices.Grow(buf, chunk)
		}
		m, err := io.ReadFull(r, buf[len(buf):len(buf)+chunk])
		buf = buf[:len(buf)+m]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return buf, err
		}
	}
	return buf, nil
}

// ReadHello reads the first record of a connection, which must be a Hello,
// without reading ahead and without allocating more than a Hello: what a
// stranger's connection may cost before it has said who it is.
func ReadHello(r io.Reader) (Hello, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Hello{}, fmt.Errorf("read hello: %w", err)
	}
	if hdr[0] == 0x16 && hdr[1] == 3 { // a TLS handshake record, version 3.x
		return Hello{}, ErrTLSHandshake
	}
	_, n, crc, err := parseHeader(hdr, []Type{TypeHello})
	if err != nil {
		return Hello{}, fmt.Errorf("read hello: %w", err)
	}
	var body [helloSize]byte
	if _, err := io.ReadFull(r, body[:n]); err != nil {
		return Hello{}, fmt.Errorf("read hello body: %w", err)
	}
	if Checksum(body[:n]) != crc {
		return Hello{}, fmt.Errorf("read hello: %w", ErrChecksum)
	}
	return UnmarshalHello(body[:n])
}

// AppendRecord appends the record of type t with body to b: for the few
// records written without a Writer's buffer.
func AppendRecord(b []byte, t Type, body []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(t))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
	b = binary.LittleEndian.AppendUint32(b, Checksum(body))
	return append(b, body...)
}
