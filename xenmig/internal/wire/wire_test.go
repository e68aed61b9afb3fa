package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"runtime"
	"testing"

	"github.com/xenmig/xenmig/hypervisor"
)

func TestRecordRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	records := []struct {
		t    Type
		body []byte
	}{
		{TypeHello, Hello{Version: Version, Role: RoleUrgent, Session: [16]byte{1, 2}, Streams: 1}.Marshal()},
		{TypePushDone, nil},
		{TypePages, bytes.Repeat([]byte{7}, 3*hypervisor.PageSize)},
	}
	for _, r := range records {
		if err := w.Write(r.t, r.body); err != nil {
			t.Fatalf("Write(%v) = %v", r.t, err)
		}
	}
	rd := NewReader(&buf)
	for _, want := range records {
		typ, body, err := rd.Read()
		if err != nil || typ != want.t || !bytes.Equal(body, want.body) {
			t.Fatalf("Read() = %v, %d bytes, %v; want %v, %d bytes", typ, len(body), err, want.t, len(want.body))
		}
	}
	if _, _, err := rd.Read(); err != io.EOF {
		t.Errorf("Read() at end = %v, want io.EOF", err)
	}
}

func TestReadRejectsCorruption(t *testing.T) {
	var buf bytes.Buffer
	if err := NewWriter(&buf).Write(TypeAbort, []byte(`{"reason":"x"}`)); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	for _, tc := range []struct {
		name string
		mut  func([]byte) []byte
		want error
	}{
		{"flipped body bit", func(b []byte) []byte { b[HeaderSize+2] ^= 1; return b }, ErrChecksum},
		{"huge length", func(b []byte) []byte { b[7] = 0xff; return b }, ErrTooLarge},
		{"truncated body", func(b []byte) []byte { return b[:len(b)-1] }, io.ErrUnexpectedEOF},
		{"truncated header", func(b []byte) []byte { return b[:5] }, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mut(append([]byte(nil), good...))
			_, _, err := NewReader(bytes.NewReader(b)).Read()
			if !errors.Is(err, tc.want) {
				t.Errorf("Read() = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestSkipChecksums: under TLS both ends skip the CRC; the field is zero,
// so an end that still checks refuses the record rather than trusting it.
func TestSkipChecksums(t *testing.T) {
	body := bytes.Repeat([]byte{7}, 2*hypervisor.PageSize)
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.SkipChecksums()
	if err := w.Write(TypePages, body); err != nil {
		t.Fatalf("Write() = %v", err)
	}
	rec := buf.Bytes()
	if crc := binary.LittleEndian.Uint32(rec[8:]); crc != 0 {
		t.Errorf("checksum field = %#x, want 0", crc)
	}
	r := NewReader(bytes.NewReader(rec))
	r.SkipChecksums()
	if typ, got, err := r.Read(); err != nil || typ != TypePages || !bytes.Equal(got, body) {
		t.Errorf("Read() skipping = %v, %d bytes, %v; want pages, %d bytes", typ, len(got), err, len(body))
	}
	if _, _, err := NewReader(bytes.NewReader(rec)).Read(); !errors.Is(err, ErrChecksum) {
		t.Errorf("Read() checking = %v, want ErrChecksum", err)
	}
}

func TestPagesRoundTrip(t *testing.T) {
	gfns := []hypervisor.GFN{5, 1 << 40, 9}
	zero := []bool{false, true, false}
	data := append(bytes.Repeat([]byte{1}, hypervisor.PageSize), bytes.Repeat([]byte{2}, hypervisor.PageSize)...)
	body := append(AppendPagesHeader(nil, PagesDemand, gfns, zero), data...)
	p, err := UnmarshalPages(body)
	if err != nil {
		t.Fatalf("UnmarshalPages() = %v", err)
	}
	want := Pages{Flags: PagesDemand, GFNs: gfns, Zero: zero, Data: data}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("UnmarshalPages() = %+v, want %+v", p.GFNs, want.GFNs)
	}
	if _, err := UnmarshalPages(body[:len(body)-1]); !errors.Is(err, ErrMalformed) {
		t.Errorf("UnmarshalPages(short data) = %v, want ErrMalformed", err)
	}
	var first []byte // what All yields: each gfn with its data, nil for a zero page
	for g, page := range p.All() {
		switch g {
		case 5, 9:
			first = append(first, page[0])
		case 1 << 40:
			if page != nil {
				t.Errorf("All() gave %d bytes for the zero page, want nil", len(page))
			}
		}
	}
	if !bytes.Equal(first, []byte{1, 2}) {
		t.Errorf("All() pages begin %v, want [1 2]", first)
	}
}

func TestConfigRoundTrip(t *testing.T) {
	pop := hypervisor.NewBitmap(100)
	pop.Set(3)
	pop.Set(99)
	c := Config{Mode: "postcopy", MaxGFN: 99, Populated: pop, Ballooned: 4,
		Domain: hypervisor.DomainConfig{Name: "web01", VCPUs: 2, MaxPages: 100, Backend: "sim", Raw: []byte(`{}`)}}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalConfig(b)
	if err != nil {
		t.Fatalf("UnmarshalConfig() = %v", err)
	}
	if !reflect.DeepEqual(got.Populated.GFNs(), pop.GFNs()) || got.Domain.Name != "web01" || got.Ballooned != 4 {
		t.Errorf("UnmarshalConfig() = %+v, want %+v", got, c)
	}
}

func TestCPURoundTrip(t *testing.T) {
	s := hypervisor.CPUState{HVMContext: []byte("ctx"), Params: map[uint32]uint64{27: 0xfeff0}, TSC: hypervisor.TSCInfo{Mode: 1, ElapsedNsec: 2, GTSCkHz: 3, Incarnation: 4}}
	got, err := UnmarshalCPU(MarshalCPU(s))
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Errorf("UnmarshalCPU(MarshalCPU(%+v)) = %+v, %v", s, got, err)
	}
}

func TestHelloRejectsStranger(t *testing.T) {
	if _, err := UnmarshalHello([]byte("GET / HTTP/1.1\r\n\r\n")); !errors.Is(err, ErrMalformed) {
		t.Errorf("UnmarshalHello(http) = %v, want ErrMalformed", err)
	}
}

// FuzzReader: no input makes the reader panic, and what it accepts has a
// valid checksum.
func FuzzReader(f *testing.F) {
	var buf bytes.Buffer
	NewWriter(&buf).Write(TypePages, AppendPagesHeader(nil, 0, []hypervisor.GFN{1}, []bool{true}))
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(bytes.NewReader(b))
		for {
			typ, body, err := r.Read()
			if err != nil {
				return
			}
			switch typ {
			case TypePages:
				UnmarshalPages(body)
			case TypeConfig:
				UnmarshalConfig(body)
			case TypeCPU:
				UnmarshalCPU(body)
			case TypeRequest, TypeOwed:
				UnmarshalGFNs(body)
			case TypeHello:
				UnmarshalHello(body)
			}
		}
	})
}

func TestHelloRoundTrip(t *testing.T) {
	for _, h := range []Hello{
		{Version: Version, Role: RoleMain, Session: [16]byte{9}, Streams: 1},
		{Version: Version, Role: RoleUrgent, Session: [16]byte{1, 2, 3}, Resume: true, Streams: 4},
		{Version: Version, Role: RoleBulk, Session: [16]byte{7}, Streams: 4, Stream: 3},
	} {
		got, err := UnmarshalHello(h.Marshal())
		if err != nil || got != h {
			t.Errorf("UnmarshalHello(Marshal(%+v)) = %+v, %v", h, got, err)
		}
	}
}

func TestHelloRejectsBadStream(t *testing.T) {
	for _, h := range []Hello{
		{Version: Version, Role: RoleMain, Streams: 0},
		{Version: Version, Role: RoleMain, Streams: MaxStreams + 1},
		{Version: Version, Role: RoleMain, Streams: 2, Stream: 1},
		{Version: Version, Role: RoleBulk, Streams: 2, Stream: 0},
		{Version: Version, Role: RoleBulk, Streams: 2, Stream: 2},
	} {
		if _, err := UnmarshalHello(h.Marshal()); !errors.Is(err, ErrMalformed) {
			t.Errorf("UnmarshalHello(%+v) = %v, want ErrMalformed", h, err)
		}
	}
}

func TestHelloOtherVersion(t *testing.T) {
	old := Hello{Version: Version - 1, Role: RoleMain, Streams: 1}.Marshal()
	old = old[:len(old)-2] // version 1 had no stream fields
	if h, err := UnmarshalHello(old); err != nil || h.Version != Version-1 {
		t.Errorf("UnmarshalHello(version %d) = %+v, %v, want its version and no error", Version-1, h, err)
	}
}

func TestBitmapRoundTrip(t *testing.T) {
	b := hypervisor.NewBitmap(200)
	b.Set(0)
	b.Set(199)
	got, err := UnmarshalBitmap(MarshalBitmap(b), 200)
	if err != nil || !reflect.DeepEqual(got.GFNs(), b.GFNs()) {
		t.Errorf("UnmarshalBitmap(MarshalBitmap(%v)) = %v, %v", b.GFNs(), got, err)
	}
	if _, err := UnmarshalBitmap(MarshalBitmap(b), 100); !errors.Is(err, ErrMalformed) {
		t.Errorf("UnmarshalBitmap of 200 gfns, at most 100 = %v, want ErrMalformed", err)
	}
}

// TestReaderBoundsAllocation: a header declaring a large body costs the
// reader only what actually arrives, a type is held to its own bound before
// any of its body is read, and a restricted reader refuses other types.
func TestReaderBoundsAllocation(t *testing.T) {
	hdr := func(typ Type, n uint32) []byte {
		b := binary.LittleEndian.AppendUint32(nil, uint32(typ))
		b = binary.LittleEndian.AppendUint32(b, n)
		return binary.LittleEndian.AppendUint32(b, 0)
	}
	junk := bytes.Repeat([]byte{1}, 4096)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := NewReader(bytes.NewReader(append(hdr(TypePages, MaxBody), junk...))).Read()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Read(64 MiB header, 4 KiB body) = %v, want ErrUnexpectedEOF", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 2<<20 {
		t.Errorf("Read(64 MiB header, 4 KiB body) allocated %d KiB, want under 2 MiB", got>>10)
	}
	for _, tc := range []struct {
		typ  Type
		n    uint32
		want error
	}{
		{TypeHello, 1 << 20, ErrTooLarge},
		{TypeGo, 1 << 20, ErrTooLarge},
		{TypeAbort, 1 << 20, ErrTooLarge},
		{Type(99), 1 << 20, ErrTooLarge},
	} {
		if _, _, err := NewReader(bytes.NewReader(hdr(tc.typ, tc.n))).Read(); !errors.Is(err, tc.want) {
			t.Errorf("Read(%v of %d bytes) = %v, want %v", tc.typ, tc.n, err, tc.want)
		}
	}
	r := NewReader(bytes.NewReader(hdr(TypeConfig, 100)))
	r.Allow(TypeHello)
	if _, _, err := r.Read(); !errors.Is(err, ErrMalformed) {
		t.Errorf("Read(config) allowing only hello = %v, want ErrMalformed", err)
	}
	var buf bytes.Buffer
	NewWriter(&buf).Write(TypeHello, Hello{Version: Version, Role: RoleMain, Streams: 1}.Marshal())
	if h, err := ReadHello(&buf); err != nil || h.Role != RoleMain {
		t.Errorf("ReadHello(hello) = %+v, %v", h, err)
	}
	if _, err := ReadHello(bytes.NewReader([]byte{0x16, 3, 1, 0, 0x80, 1, 0, 0, 0x7c, 3, 3, 0})); !errors.Is(err, ErrTLSHandshake) {
		t.Errorf("ReadHello(TLS ClientHello) = %v, want ErrTLSHandshake", err)
	}
}

// TestRecordLargeParts: a large part goes straight to the connection, after
// what was buffered before it, and the records read back whole.
func TestRecordLargeParts(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	head, data, tail := []byte("head"), bytes.Repeat([]byte{9}, 64*hypervisor.PageSize), []byte("tail")
	if err := w.Buffer(TypeSync); err != nil {
		t.Fatalf("Buffer(sync) = %v", err)
	}
	if err := w.Write(TypePages, head, data, tail); err != nil {
		t.Fatalf("Write(pages) = %v", err)
	}
	rd := NewReader(&buf)
	if typ, _, err := rd.Read(); err != nil || typ != TypeSync {
		t.Fatalf("Read() = %v, %v; want sync first", typ, err)
	}
	want := append(append(append([]byte(nil), head...), data...), tail...)
	if typ, body, err := rd.Read(); err != nil || typ != TypePages || !bytes.Equal(body, want) {
		t.Fatalf("Read() = %v, %d bytes, %v; want pages, %d bytes", typ, len(body), err, len(want))
	}
}
