// Command selftest qualifies the Xen lab's dom0 before any result from the
// lab counts: for a while it hashes and compares large buffers, churns the
// garbage-collected heap, streams checksummed data through loopback TCP,
// makes hypercalls and, given a scratch domain that never runs, writes
// patterns into its pages through foreign mappings and reads them back. Any
// mismatch is corruption the project did not cause. It prints one JSON object and exits 1 if it saw any.
//
// Each check runs for -duration and at least a minimum amount of work (on
// a loaded two-core machine a TCG dom0 may be very slow). Built with -tags
// xen for the foreign and hypercall checks; without the tag those checks
// report that they did not run.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenctrl"
)

// counts are the selftest's results, one field per check.
type counts struct {
	HashRounds      int64   `json:"hash_rounds"`
	HashErrors      int64   `json:"hash_errors"`
	HeapRounds      int64   `json:"heap_rounds"`
	HeapErrors      int64   `json:"heap_errors"`
	TCPMB           int64   `json:"tcp_mb"`
	TCPErrors       int64   `json:"tcp_errors"`
	Hypercalls      int64   `json:"hypercalls"`
	HypercallErrors int64   `json:"hypercall_errors"`
	ForeignPages    int64   `json:"foreign_pages"`
	ForeignErrors   int64   `json:"foreign_errors"`
	Seconds         float64 `json:"seconds"`
	Note            string  `json:"note,omitempty"`
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func main() {
	dur := flag.Duration("duration", time.Minute, "how long to run every check (at least)")
	mb := flag.Int("mb", 32, "MiB per hashed buffer")
	domain := flag.String("domain", "", "a paused scratch domain to write and read through foreign mappings (optional; it must never run)")
	flag.Parse()

	var c counts
	start := time.Now()
	deadline := start.Add(*dur)
	var wg sync.WaitGroup
	run := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	run(func() { hashLoop(deadline, *mb, &c) })
	run(func() { heapLoop(deadline, &c) })
	run(func() {
		if err := tcpLoop(deadline, &c); err != nil {
			fmt.Fprintln(os.Stderr, "selftest: tcp:", err)
			atomic.AddInt64(&c.TCPErrors, 1)
		}
	})
	run(func() {
		if err := xenLoop(deadline, *domain, &c); err != nil {
			c.Note = err.Error()
		}
	})
	wg.Wait()
	c.Seconds = time.Since(start).Seconds()
	out, _ := json.Marshal(c)
	fmt.Println(string(out))
	if c.HashErrors+c.HeapErrors+c.TCPErrors+c.HypercallErrors+c.ForeignErrors > 0 {
		os.Exit(1)
	}
}

// hashLoop copies a random buffer over and over and checks each copy by its
// SHA-256 and byte by byte (memmove and the hash use the widest vector
// instructions the CPU offers).
func hashLoop(deadline time.Time, mb int, c *counts) {
	src := make([]byte, mb<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+8 <= len(src); i += 8 {
		binary.LittleEndian.PutUint64(src[i:], r.Uint64())
	}
	want := sha256.Sum256(src)
	dst := make([]byte, len(src))
	for i := 0; i < 5 || time.Now().Before(deadline); i++ {
		copy(dst, src)
		if sha256.Sum256(dst) != want || !bytes.Equal(dst, src) || sha256.Sum256(src) != want {
			atomic.AddInt64(&c.HashErrors, 1)
			fmt.Fprintln(os.Stderr, "selftest: hash mismatch")
		}
		atomic.AddInt64(&c.HashRounds, 1)
		clear(dst)
	}
}

// heapLoop builds many small objects with known contents, forces garbage
// collections and checks them.
func heapLoop(deadline time.Time, c *counts) {
	for n := uint64(0); n < 50 || time.Now().Before(deadline); n++ {
		m := make(map[uint64][]uint64, 4096)
		for i := uint64(0); i < 4096; i++ {
			m[i] = []uint64{i, i * n, ^i}
		}
		var junk [][]byte
		for i := 0; i < 256; i++ {
			junk = append(junk, make([]byte, 1024+i))
		}
		_ = junk
		for i := uint64(0); i < 4096; i++ {
			v := m[i]
			if len(v) != 3 || v[0] != i || v[1] != i*n || v[2] != ^i {
				atomic.AddInt64(&c.HeapErrors, 1)
				fmt.Fprintf(os.Stderr, "selftest: heap object %d = %v\n", i, v)
				break
			}
		}
		atomic.AddInt64(&c.HeapRounds, 1)
	}
}

// tcpLoop streams 64 KiB blocks, each with its sequence number and CRC32C,
// through loopback TCP and checks them on arrival.
func tcpLoop(deadline time.Time, c *counts) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	const block = 64 << 10
	go func() {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer conn.Close()
		buf := make([]byte, block)
		r := rand.New(rand.NewPCG(3, 4))
		for seq := uint64(0); seq < 1024 || time.Now().Before(deadline); seq++ {
			for i := 16; i+8 <= block; i += 8 {
				binary.LittleEndian.PutUint64(buf[i:], r.Uint64())
			}
			binary.LittleEndian.PutUint64(buf[0:], seq)
			binary.LittleEndian.PutUint32(buf[8:], crc32.Checksum(buf[16:], castagnoli))
			if _, err := conn.Write(buf); err != nil {
				return
			}
		}
	}()
	conn, err := ln.Accept()
	if err != nil {
		return err
	}
	defer conn.Close()
	buf := make([]byte, block)
	for seq := uint64(0); ; seq++ {
		if _, err := io.ReadFull(conn, buf); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if binary.LittleEndian.Uint64(buf) != seq || binary.LittleEndian.Uint32(buf[8:]) != crc32.Checksum(buf[16:], castagnoli) {
			atomic.AddInt64(&c.TCPErrors, 1)
			fmt.Fprintf(os.Stderr, "selftest: tcp block %d corrupt\n", seq)
		}
		if seq%16 == 15 {
			atomic.AddInt64(&c.TCPMB, 1)
		}
	}
}

// xenLoop makes hypercalls (domain info) and, with a domain, checks foreign
// mappings end to end: it writes a pattern into a slice of the domain's
// pages, reads it back through a new mapping and compares. The domain must
// be a scratch one that never runs (xl create -p): a running guest's pages
// change legitimately even while it is paused (Xen and the backends write
// event bits, rings and I/O buffers into them).
func xenLoop(deadline time.Time, domain string, c *counts) error {
	h, err := xenctrl.Open()
	if err != nil {
		return fmt.Errorf("hypercall and foreign checks skipped: %w", err)
	}
	defer h.Close()
	var d hypervisor.DomID
	var gfns []hypervisor.GFN
	if domain != "" {
		if d, err = h.Lookup(domain); err != nil {
			return fmt.Errorf("foreign checks skipped: %w", err)
		}
		pop, err := h.Populated(d)
		if err != nil {
			return fmt.Errorf("foreign checks skipped: %w", err)
		}
		// Leave out the special pages the domain builder places just below
		// 0xff000 (tools/include/xenguest.h: the console ring at 0xfefff,
		// the xenstore ring at 0xfeffc, ...): xenstored and xenconsoled
		// map and write them even in a domain that never runs, so a
		// read-back there may legitimately differ (seen: 0xfeffc).
		for _, g := range pop.GFNs() {
			if g < specialLo || g >= specialHi {
				gfns = append(gfns, g)
			}
		}
	}
	var ref hypervisor.DomainInfo
	// At least one pass over the domain's memory, and 100 hypercalls.
	rounds := max(100, (len(gfns)+foreignBatch-1)/foreignBatch)
	for i := 0; i < rounds || time.Now().Before(deadline); i++ {
		info, err := h.Info(0)
		atomic.AddInt64(&c.Hypercalls, 1)
		if i == 0 {
			ref = info
		}
		if err != nil || info.ID != 0 || info.MaxPages != ref.MaxPages || info.VCPUs != ref.VCPUs {
			atomic.AddInt64(&c.HypercallErrors, 1)
			fmt.Fprintf(os.Stderr, "selftest: Info(0) = %+v, %v; first %+v\n", info, err, ref)
		}
		if len(gfns) == 0 {
			time.Sleep(time.Millisecond)
			continue
		}
		if err := foreignRound(h, d, gfns, i, c); err != nil {
			return err
		}
	}
	return nil
}

// The special pages' gfns of an HVM/PVH domain built by libxl
// (X86_HVM_END_SPECIAL_REGION - X86_HVM_NR_SPECIAL_PAGES up to the end).
const (
	specialLo hypervisor.GFN = 0xff000 - 8
	specialHi hypervisor.GFN = 0xff000
)

// foreignBatch is the number of gfns a foreign round writes and reads back.
const foreignBatch = 1024

// foreignRound writes a pattern (new each round) into the next foreignBatch
// gfns of the scratch domain and reads it back.
func foreignRound(h *xenctrl.Host, d hypervisor.DomID, all []hypervisor.GFN, round int, c *counts) error {
	lo := (round * foreignBatch) % len(all)
	gfns := all[lo:min(lo+foreignBatch, len(all))]
	want := make([]byte, len(gfns)*hypervisor.PageSize)
	r := rand.New(rand.NewPCG(uint64(round), 5))
	for i := 0; i+8 <= len(want); i += 8 {
		binary.LittleEndian.PutUint64(want[i:], r.Uint64())
	}
	if err := h.WritePages(d, gfns, want); err != nil {
		return fmt.Errorf("write pages of %d: %w", d, err)
	}
	got := make([]byte, len(want))
	if err := h.ReadPages(d, gfns, got); err != nil {
		return fmt.Errorf("read pages of %d: %w", d, err)
	}
	for i := range gfns {
		page := func(b []byte) []byte { return b[i*hypervisor.PageSize : (i+1)*hypervisor.PageSize] }
		if !bytes.Equal(page(got), page(want)) {
			atomic.AddInt64(&c.ForeignErrors, 1)
			fmt.Fprintf(os.Stderr, "selftest: gfn %#x read back differs from what was written\n", uint64(gfns[i]))
		}
	}
	atomic.AddInt64(&c.ForeignPages, int64(2*len(gfns)))
	return nil
}
