package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// encoder appends little-endian values to a byte slice.
type encoder struct{ b []byte }

func (e *encoder) u32(x uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, x) }
func (e *encoder) u64(x uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, x) }

func (e *encoder) bytes(p []byte) {
	e.u32(uint32(len(p)))
	e.b = append(e.b, p...)
}

func (e *encoder) u64s(xs []uint64) {
	e.u32(uint32(len(xs)))
	for _, x := range xs {
		e.u64(x)
	}
}

func (e *encoder) u32s(xs []uint32) {
	e.u32(uint32(len(xs)))
	for _, x := range xs {
		e.u32(x)
	}
}

// errShort is the error of a decoder that ran out of input.
var errShort = errors.New("context truncated")

// decoder reads what an encoder wrote; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = errShort
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if p := d.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

func (d *decoder) bytes() []byte { return d.take(int(d.u32())) }

// count reads a length prefix for elements of size bytes, rejecting one
// longer than the remaining input.
func (d *decoder) count(size int) int {
	n := int(d.u32())
	if d.err == nil && n > len(d.b)/size {
		d.err = errShort
	}
	if d.err != nil {
		return 0
	}
	return n
}

func (d *decoder) u64s() []uint64 {
	out := make([]uint64, d.count(8))
	for i := range out {
		out[i] = d.u64()
	}
	return out
}

func (d *decoder) u32s() []uint32 {
	out := make([]uint32, d.count(4))
	for i := range out {
		out[i] = d.u32()
	}
	return out
}

// check records err unless an error is already recorded.
func (d *decoder) check(ok bool, format string, args ...any) {
	if d.err == nil && !ok {
		d.err = fmt.Errorf(format, args...)
	}
}
