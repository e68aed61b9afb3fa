// Package xsproto speaks the xenstore wire protocol of xen/io/xs_wire.h
// without cgo: a client for /dev/xen/xenbus (inside a domU), the xenstored
// unix socket (in dom0) or any stream carrying the same framing, and a small
// in-memory server that serves the protocol on a net.Listener for tests and
// simulators.
//
// Every message is a 16-byte header, struct xsd_sockmsg {u32 type, req_id,
// tx_id, len} in the host's byte order, followed by len bytes of payload
// (at most PayloadMax). Strings in payloads are NUL-terminated except the
// value of XS_WRITE and the reply of XS_READ. Errors come back as XS_ERROR
// with the errno name ("ENOENT\x00") as payload.
//
// The package is neutral: it imports nothing of dom0's (hypervisor, xenctrl)
// nor of the guest agent, so both sides may use it.
package xsproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"syscall"
)

// Type is a message type, enum xsd_sockmsg_type of xs_wire.h.
type Type uint32

// Message types (xs_wire.h). Only those this package uses or serves are
// named; the numbering is fixed by the enum.
const (
	TypeControl          Type = 0  // XS_CONTROL (XS_DEBUG)
	TypeDirectory        Type = 1  // XS_DIRECTORY
	TypeRead             Type = 2  // XS_READ
	TypeGetPerms         Type = 3  // XS_GET_PERMS
	TypeWatch            Type = 4  // XS_WATCH
	TypeUnwatch          Type = 5  // XS_UNWATCH
	TypeTransactionStart Type = 6  // XS_TRANSACTION_START
	TypeTransactionEnd   Type = 7  // XS_TRANSACTION_END
	TypeGetDomainPath    Type = 10 // XS_GET_DOMAIN_PATH
	TypeWrite            Type = 11 // XS_WRITE
	TypeMkdir            Type = 12 // XS_MKDIR
	TypeRm               Type = 13 // XS_RM
	TypeSetPerms         Type = 14 // XS_SET_PERMS
	TypeWatchEvent       Type = 15 // XS_WATCH_EVENT
	TypeError            Type = 16 // XS_ERROR
)

var typeNames = map[Type]string{
	TypeControl: "XS_CONTROL", TypeDirectory: "XS_DIRECTORY", TypeRead: "XS_READ",
	TypeGetPerms: "XS_GET_PERMS", TypeWatch: "XS_WATCH", TypeUnwatch: "XS_UNWATCH",
	TypeTransactionStart: "XS_TRANSACTION_START", TypeTransactionEnd: "XS_TRANSACTION_END",
	TypeGetDomainPath: "XS_GET_DOMAIN_PATH", TypeWrite: "XS_WRITE", TypeMkdir: "XS_MKDIR",
	TypeRm: "XS_RM", TypeSetPerms: "XS_SET_PERMS", TypeWatchEvent: "XS_WATCH_EVENT",
	TypeError: "XS_ERROR",
}

// String returns the xs_wire.h name of t.
func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("XS_TYPE(%d)", uint32(t))
}

const (
	// HeaderSize is the size of struct xsd_sockmsg.
	HeaderSize = 16
	// PayloadMax is XENSTORE_PAYLOAD_MAX: the largest payload either side
	// may send.
	PayloadMax = 4096
)

// Msg is one xenstore message: the header fields and the payload.
type Msg struct {
	Type    Type
	ReqID   uint32 // echoed by the daemon in its reply
	TxID    uint32 // 0 outside a transaction
	Payload []byte
}

// ErrTooBig is returned for a message whose payload exceeds PayloadMax.
var ErrTooBig = errors.New("xenstore payload exceeds 4096 bytes")

// WriteMsg writes m to w as one header+payload block, so that a device which
// wants a whole message per write (/dev/xen/xenbus accumulates partial writes,
// but one write is cheaper) gets it.
func WriteMsg(w io.Writer, m Msg) error {
	if len(m.Payload) > PayloadMax {
		return fmt.Errorf("write %v: %w", m.Type, ErrTooBig)
	}
	buf := make([]byte, HeaderSize+len(m.Payload))
	binary.NativeEndian.PutUint32(buf[0:], uint32(m.Type))
	binary.NativeEndian.PutUint32(buf[4:], m.ReqID)
	binary.NativeEndian.PutUint32(buf[8:], m.TxID)
	binary.NativeEndian.PutUint32(buf[12:], uint32(len(m.Payload)))
	copy(buf[HeaderSize:], m.Payload)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write %v: %w", m.Type, err)
	}
	return nil
}

// ReadMsg reads one message from r. A header announcing more than PayloadMax
// bytes fails with ErrTooBig without reading the payload: the stream is then
// out of step and must be closed.
func ReadMsg(r io.Reader) (Msg, error) {
	var h [HeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Msg{}, err
	}
	m := Msg{
		Type:  Type(binary.NativeEndian.Uint32(h[0:])),
		ReqID: binary.NativeEndian.Uint32(h[4:]),
		TxID:  binary.NativeEndian.Uint32(h[8:]),
	}
	n := binary.NativeEndian.Uint32(h[12:])
	if n > PayloadMax {
		return Msg{}, fmt.Errorf("read %v: length %d: %w", m.Type, n, ErrTooBig)
	}
	m.Payload = make([]byte, n)
	if _, err := io.ReadFull(r, m.Payload); err != nil {
		return Msg{}, fmt.Errorf("read %v payload: %w", m.Type, err)
	}
	return m, nil
}

// Error is an XS_ERROR reply: the errno name xenstored sent ("ENOENT").
// It unwraps to the matching syscall.Errno, so errors.Is(err, fs.ErrNotExist)
// holds for ENOENT and errors.Is(err, syscall.EACCES) for EACCES.
type Error struct {
	Name string
}

// Error returns the errno name as xenstored sent it.
func (e *Error) Error() string { return "xenstore: " + e.Name }

// Unwrap returns the syscall.Errno named by e, or nil for an unknown name.
func (e *Error) Unwrap() error {
	if n, ok := errnos[e.Name]; ok {
		return n
	}
	return nil
}

// errnos is xsd_errors of xs_wire.h.
var errnos = map[string]syscall.Errno{
	"EINVAL": syscall.EINVAL, "EACCES": syscall.EACCES, "EEXIST": syscall.EEXIST,
	"EISDIR": syscall.EISDIR, "ENOENT": syscall.ENOENT, "ENOMEM": syscall.ENOMEM,
	"ENOSPC": syscall.ENOSPC, "EIO": syscall.EIO, "ENOTEMPTY": syscall.ENOTEMPTY,
	"ENOSYS": syscall.ENOSYS, "EROFS": syscall.EROFS, "EBUSY": syscall.EBUSY,
	"EAGAIN": syscall.EAGAIN, "EISCONN": syscall.EISCONN, "E2BIG": syscall.E2BIG,
	"EPERM": syscall.EPERM,
}

// cstrings splits a payload of NUL-terminated strings. A final string without
// its NUL is kept.
func cstrings(p []byte) []string {
	var out []string
	for len(p) > 0 {
		i := 0
		for i < len(p) && p[i] != 0 {
			i++
		}
		out = append(out, string(p[:i]))
		if i == len(p) {
			break
		}
		p = p[i+1:]
	}
	return out
}

// cjoin builds a payload of NUL-terminated strings.
func cjoin(ss ...string) []byte {
	var b []byte
	for _, s := range ss {
		b = append(b, s...)
		b = append(b, 0)
	}
	return b
}
