package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"iter"

	"github.com/xenmig/xenmig/hypervisor"
)

// Role says which of a migration's connections a Hello opens.
type Role uint8

// Connection roles.
const (
	RoleMain   Role = 1 // control and bulk pages, sender -> receiver
	RoleUrgent Role = 2 // fault requests receiver -> sender, demanded pages back
	RoleBulk   Role = 3 // more bulk pages, sender -> receiver, beside main's
)

// MaxStreams bounds the page streams of a session (main and the bulk
// connections).
const MaxStreams = 16

func (r Role) String() string {
	switch r {
	case RoleMain:
		return "main"
	case RoleUrgent:
		return "urgent"
	case RoleBulk:
		return "bulk"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// Hello opens a connection: the sender's protocol version, the connection's
// role, the migration's session id, shared by its connections, flags, and
// where the connection stands among the session's page streams.
type Hello struct {
	Version uint32
	Role    Role
	Session [16]byte
	// Resume reopens a session whose connections broke after the
	// switchover, to finish its post-copy phase.
	Resume bool
	// Streams is how many connections carry pages (main and the bulk
	// ones), 1..MaxStreams; Stream is this one's index: 0 for main,
	// 1..Streams-1 for bulk, 0 for urgent.
	Streams, Stream uint8
}

const helloSize = len(Magic) + 4 + 1 + 16 + 1 + 2

const helloResume = 1 << 0

// Marshal encodes h.
func (h Hello) Marshal() []byte {
	b := make([]byte, 0, helloSize)
	b = append(b, Magic...)
	b = binary.LittleEndian.AppendUint32(b, h.Version)
	b = append(b, byte(h.Role))
	b = append(b, h.Session[:]...)
	var flags byte
	if h.Resume {
		flags |= helloResume
	}
	return append(b, flags, h.Streams, h.Stream)
}

// UnmarshalHello decodes a Hello. A body without the magic is not xenmig.
// A Hello of another version has only its Version set: its layout may
// differ, and the caller refuses it.
func UnmarshalHello(b []byte) (Hello, error) {
	if len(b) < len(Magic)+4 || string(b[:len(Magic)]) != Magic {
		return Hello{}, fmt.Errorf("hello: bad magic: %w", ErrMalformed)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != Version {
		return Hello{Version: v}, nil
	}
	if len(b) != helloSize {
		return Hello{}, fmt.Errorf("hello: %d bytes, want %d: %w", len(b), helloSize, ErrMalformed)
	}
	h := Hello{Version: binary.LittleEndian.Uint32(b[8:]), Role: Role(b[12]), Resume: b[29]&helloResume != 0,
		Streams: b[30], Stream: b[31]}
	copy(h.Session[:], b[13:29])
	if h.Streams < 1 || h.Streams > MaxStreams || h.Stream >= h.Streams || (h.Role == RoleBulk) != (h.Stream > 0) {
		return Hello{}, fmt.Errorf("hello: stream %d of %d for the %v channel: %w", h.Stream, h.Streams, h.Role, ErrMalformed)
	}
	return h, nil
}

// PageFlags qualify a Pages batch.
type PageFlags uint32

// Pages batch flags.
const (
	// PagesStage marks pages sent before the switchover in hybrid mode: the
	// receiver keeps them aside until the owed list says which are current.
	PagesStage PageFlags = 1 << 0
	// PagesDemand marks pages sent in answer to a Request.
	PagesDemand PageFlags = 1 << 1
)

// zeroBit marks a gfn whose page is all zeroes; no data follows for it.
const zeroBit = 1 << 63

// Pages is a batch of pages: gfns, which are zero, and the data of the others
// in gfn order, PageSize bytes each.
type Pages struct {
	Flags PageFlags
	GFNs  []hypervisor.GFN
	Zero  []bool
	Data  []byte // the non-zero pages, concatenated
}

// All yields each gfn of the batch with its page's data, nil for a zero
// page. The data aliases p.Data.
func (p Pages) All() iter.Seq2[hypervisor.GFN, []byte] {
	return func(yield func(hypervisor.GFN, []byte) bool) {
		off := 0
		for i, g := range p.GFNs {
			var data []byte
			if !p.Zero[i] {
				data = p.Data[off : off+hypervisor.PageSize]
				off += hypervisor.PageSize
			}
			if !yield(g, data) {
				return
			}
		}
	}
}

// AppendPagesHeader encodes the header of a batch: the count, the flags and
// one entry per gfn. The data of the non-zero pages follows it.
func AppendPagesHeader(b []byte, flags PageFlags, gfns []hypervisor.GFN, zero []bool) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(gfns)))
	b = binary.LittleEndian.AppendUint32(b, uint32(flags))
	for i, g := range gfns {
		e := uint64(g)
		if zero[i] {
			e |= zeroBit
		}
		b = binary.LittleEndian.AppendUint64(b, e)
	}
	return b
}

// UnmarshalPages decodes a batch. Its slices alias b.
func UnmarshalPages(b []byte) (Pages, error) {
	if len(b) < 8 {
		return Pages{}, fmt.Errorf("pages: short header: %w", ErrMalformed)
	}
	n := binary.LittleEndian.Uint32(b)
	p := Pages{Flags: PageFlags(binary.LittleEndian.Uint32(b[4:]))}
	b = b[8:]
	if uint64(len(b)) < uint64(n)*8 {
		return Pages{}, fmt.Errorf("pages: %d entries in %d bytes: %w", n, len(b), ErrMalformed)
	}
	p.GFNs = make([]hypervisor.GFN, n)
	p.Zero = make([]bool, n)
	var data int
	for i := range p.GFNs {
		e := binary.LittleEndian.Uint64(b[i*8:])
		p.GFNs[i] = hypervisor.GFN(e &^ zeroBit)
		p.Zero[i] = e&zeroBit != 0
		if !p.Zero[i] {
			data++
		}
	}
	p.Data = b[n*8:]
	if len(p.Data) != data*hypervisor.PageSize {
		return Pages{}, fmt.Errorf("pages: %d data bytes for %d pages: %w", len(p.Data), data, ErrMalformed)
	}
	return p, nil
}

// MarshalGFNs encodes a list of gfns (Request and Owed bodies).
func MarshalGFNs(gfns []hypervisor.GFN) []byte {
	b := make([]byte, 0, 4+8*len(gfns))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(gfns)))
	for _, g := range gfns {
		b = binary.LittleEndian.AppendUint64(b, uint64(g))
	}
	return b
}

// UnmarshalGFNs decodes a list of gfns.
func UnmarshalGFNs(b []byte) ([]hypervisor.GFN, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("gfn list: short: %w", ErrMalformed)
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(len(b)-4) != uint64(n)*8 {
		return nil, fmt.Errorf("gfn list: %d entries in %d bytes: %w", n, len(b)-4, ErrMalformed)
	}
	out := make([]hypervisor.GFN, n)
	for i := range out {
		out[i] = hypervisor.GFN(binary.LittleEndian.Uint64(b[4+8*i:]))
	}
	return out, nil
}

// Config opens a migration: what the receiver needs to build the shell.
type Config struct {
	Mode   string                  `json:"mode"`
	Domain hypervisor.DomainConfig `json:"domain"`
	MaxGFN hypervisor.GFN          `json:"max_gfn"`
	// Populated is the source's populated set over [0, MaxGFN]; it travels
	// as raw bitmap words after the JSON part.
	Populated *hypervisor.Bitmap `json:"-"`
	// Ballooned counts gfns the guest's balloon gave back before the copy.
	Ballooned uint64 `json:"ballooned"`
	// ReportGuest asks the receiver to wait for a simulated guest to finish
	// its run and report its memory digest.
	ReportGuest bool `json:"report_guest"`
}

// Marshal encodes c: a u32 length, the JSON part, the bitmap words.
func (c Config) Marshal() ([]byte, error) {
	js, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	words := c.Populated.Words()
	b := make([]byte, 0, 4+len(js)+8*len(words))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(js)))
	b = append(b, js...)
	for _, w := range words {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	return b, nil
}

// UnmarshalConfig decodes a Config.
func UnmarshalConfig(b []byte) (Config, error) {
	var c Config
	if len(b) < 4 {
		return c, fmt.Errorf("config: short: %w", ErrMalformed)
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return c, fmt.Errorf("config: json length %d beyond body: %w", n, ErrMalformed)
	}
	if err := json.Unmarshal(b[4:4+n], &c); err != nil {
		return c, fmt.Errorf("config: %v: %w", err, ErrMalformed)
	}
	rest := b[4+n:]
	nbits := uint64(c.MaxGFN) + 1
	if uint64(len(rest)) != (nbits+63)/64*8 {
		return c, fmt.Errorf("config: bitmap of %d bytes for %d gfns: %w", len(rest), nbits, ErrMalformed)
	}
	words := make([]uint64, len(rest)/8)
	for i := range words {
		words[i] = binary.LittleEndian.Uint64(rest[8*i:])
	}
	c.Populated = hypervisor.BitmapFromWords(words, nbits)
	return c, nil
}

// MarshalBitmap encodes a gfn bitmap: its length in gfns (u64), then its
// words (the Resume record's body).
func MarshalBitmap(b *hypervisor.Bitmap) []byte {
	out := binary.LittleEndian.AppendUint64(nil, b.Len())
	for _, w := range b.Words() {
		out = binary.LittleEndian.AppendUint64(out, w)
	}
	return out
}

// UnmarshalBitmap decodes a gfn bitmap of at most max gfns.
func UnmarshalBitmap(b []byte, max uint64) (*hypervisor.Bitmap, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("bitmap: short: %w", ErrMalformed)
	}
	n := binary.LittleEndian.Uint64(b)
	if n > max || uint64(len(b)-8) != (n+63)/64*8 {
		return nil, fmt.Errorf("bitmap of %d gfns in %d bytes: %w", n, len(b)-8, ErrMalformed)
	}
	words := make([]uint64, (n+63)/64)
	for i := range words {
		words[i] = binary.LittleEndian.Uint64(b[8+8*i:])
	}
	return hypervisor.BitmapFromWords(words, n), nil
}

// MarshalCPU encodes vCPU state: the HVM context, the parameters, the TSC.
func MarshalCPU(s hypervisor.CPUState) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.HVMContext)))
	b = append(b, s.HVMContext...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.Params)))
	for k, v := range s.Params {
		b = binary.LittleEndian.AppendUint32(b, k)
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	b = binary.LittleEndian.AppendUint32(b, s.TSC.Mode)
	b = binary.LittleEndian.AppendUint64(b, s.TSC.ElapsedNsec)
	b = binary.LittleEndian.AppendUint32(b, s.TSC.GTSCkHz)
	return binary.LittleEndian.AppendUint32(b, s.TSC.Incarnation)
}

// UnmarshalCPU decodes vCPU state.
func UnmarshalCPU(b []byte) (hypervisor.CPUState, error) {
	var s hypervisor.CPUState
	r := bytes.NewReader(b)
	var n uint32
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil || uint64(n) > uint64(r.Len()) {
		return s, fmt.Errorf("cpu: context length: %w", ErrMalformed)
	}
	s.HVMContext = make([]byte, n)
	r.Read(s.HVMContext)
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil || uint64(n)*12 > uint64(r.Len()) {
		return s, fmt.Errorf("cpu: parameter count: %w", ErrMalformed)
	}
	s.Params = make(map[uint32]uint64, n)
	for range n {
		var kv struct {
			K uint32
			V uint64
		}
		binary.Read(r, binary.LittleEndian, &kv)
		s.Params[kv.K] = kv.V
	}
	if err := binary.Read(r, binary.LittleEndian, &s.TSC); err != nil || r.Len() != 0 {
		return s, fmt.Errorf("cpu: tsc info: %w", ErrMalformed)
	}
	return s, nil
}

// MarshalJSON encodes a control record body (Abort, Stats and the like).
func MarshalJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("wire: marshal %T: %v", v, err)) // only plain structs are passed
	}
	return b
}

// UnmarshalJSON decodes a control record body into v.
func UnmarshalJSON(t Type, b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%v record: %v: %w", t, err, ErrMalformed)
	}
	return nil
}

// Ack answers a Hello.
type Ack struct {
	OK      bool   `json:"ok"`
	Version uint32 `json:"version"`
	Message string `json:"message,omitempty"`
	// Ended, refusing a resume, says how the session ended on the
	// receiver: SessionNotSwitched or SessionComplete.
	Ended string `json:"ended,omitempty"`
}

// How a session the sender asks to resume ended on the receiver.
const (
	SessionNotSwitched = "not-switched" // before go: the domain never ran here and is gone
	SessionComplete    = "complete"     // every page arrived: the domain runs here
)

// Abort says why a peer gave up.
type Abort struct {
	Reason string `json:"reason"`
	// Code classifies the reason where the other side can act on it:
	// AbortPagingUnsupported or AbortGuestUnsupported.
	Code string `json:"code,omitempty"`
}

// Abort codes.
const (
	AbortPagingUnsupported = "paging-unsupported" // the destination hypervisor has no mem_paging
	AbortGuestUnsupported  = "guest-unsupported"  // the guest cannot be migrated as asked
	AbortIncompatible      = "incompatible"       // the destination cannot run the guest (CPU features, special pages, name)
)
