// Package wire is xenmig's migration stream: framed, checksummed records
// exchanged over the two TCP connections of a migration. docs/PROTOCOL.md is
// its specification; this package is the only code that knows the byte layout.
//
// Every record is a 12-byte header — type (u32), body length (u32), CRC32C of
// the body (u32), all little-endian — followed by the body. A reader checks
// the length against MaxBody and the CRC before it hands a body out.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Version is the protocol version this build speaks. Both ends must agree.
const Version = 1

// Magic opens every Hello body.
const Magic = "XENMIG\x00\x01"

// HeaderSize is the size of a record header.
const HeaderSize = 12

// MaxBody bounds a record body; larger lengths are treated as corruption.
const MaxBody = 64 << 20

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
)

var typeNames = map[Type]string{
	TypeHello: "hello", TypeHelloAck: "hello-ack", TypeConfig: "config",
	TypePrepared: "prepared", TypePages: "pages", TypeOwed: "owed",
	TypeCPU: "cpu", TypeReady: "ready", TypeGo: "go", TypeResumed: "resumed",
	TypeRequest: "request", TypePushDone: "push-done", TypeComplete: "complete",
	TypeAbort: "abort", TypeStats: "stats", TypeFinished: "finished",
	TypeGuestFinal: "guest-final", TypeResume: "resume", TypeLayout: "layout",
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
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the CRC32C of b.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Writer writes records. It is not safe for concurrent use: each connection
// has one writing goroutine.
type Writer struct {
	w   *bufio.Writer
	hdr [HeaderSize]byte
}

// NewWriter returns a Writer buffering into w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: bufio.NewWriterSize(w, 256<<10)} }

// Write writes one record whose body is the concatenation of parts, and
// flushes it.
func (w *Writer) Write(t Type, parts ...[]byte) error {
	if err := w.Buffer(t, parts...); err != nil {
		return err
	}
	return w.Flush()
}

// Buffer writes one record without flushing.
func (w *Writer) Buffer(t Type, parts ...[]byte) error {
	var n int
	crc := uint32(0)
	for _, p := range parts {
		n += len(p)
		crc = crc32.Update(crc, castagnoli, p)
	}
	if n > MaxBody {
		return fmt.Errorf("write %v record of %d bytes: %w", t, n, ErrTooLarge)
	}
	binary.LittleEndian.PutUint32(w.hdr[0:], uint32(t))
	binary.LittleEndian.PutUint32(w.hdr[4:], uint32(n))
	binary.LittleEndian.PutUint32(w.hdr[8:], crc)
	if _, err := w.w.Write(w.hdr[:]); err != nil {
		return fmt.Errorf("write %v record: %w", t, err)
	}
	for _, p := range parts {
		if _, err := w.w.Write(p); err != nil {
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
	r   *bufio.Reader
	buf []byte
}

// NewReader returns a Reader over r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 256<<10)} }

// Read returns the next record. The body is valid until the next Read.
// At a clean end of stream it returns io.EOF.
func (r *Reader) Read() (Type, []byte, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, fmt.Errorf("read record header: %w", err)
		}
		return 0, nil, err
	}
	t := Type(binary.LittleEndian.Uint32(hdr[0:]))
	n := binary.LittleEndian.Uint32(hdr[4:])
	crc := binary.LittleEndian.Uint32(hdr[8:])
	if n > MaxBody {
		return t, nil, fmt.Errorf("read %v record of %d bytes: %w", t, n, ErrTooLarge)
	}
	if cap(r.buf) < int(n) {
		r.buf = make([]byte, n)
	}
	body := r.buf[:n]
	if _, err := io.ReadFull(r.r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return t, nil, fmt.Errorf("read %v record body: %w", t, err)
	}
	if Checksum(body) != crc {
		return t, nil, fmt.Errorf("read %v record: %w", t, ErrChecksum)
	}
	return t, body, nil
}
