package sim

import (
	"bytes"
	"slices"
	"testing"

	"github.com/xenmig/xenmig/hypervisor"
)

func TestHeapTakeGive(t *testing.T) {
	h, err := newHeap(16)
	if err != nil {
		t.Fatalf("newHeap(16) = %v", err)
	}
	defer h.unmap()
	take := func(n uint64) uint64 {
		t.Helper()
		start, buf, ok := h.take(n)
		if !ok {
			t.Fatalf("take(%d) with free %v: none", n, h.free)
		}
		if uint64(len(buf)) != n*hypervisor.PageSize {
			t.Fatalf("take(%d) = %d bytes, want %d", n, len(buf), n*hypervisor.PageSize)
		}
		buf[0], buf[len(buf)-1] = 0xaa, 0xbb // given back zeroed
		return start
	}
	a, b, c := take(4), take(4), take(8)
	if _, _, ok := h.take(1); ok {
		t.Fatalf("take(1) of a full heap succeeded")
	}
	h.give(b, 4)
	if _, _, ok := h.take(5); ok {
		t.Fatalf("take(5) with 4 free succeeded")
	}
	h.give(a, 4) // joins b's run
	h.give(c, 8) // and c's
	if want := []span{{0, 16}}; !slices.Equal(h.free, want) {
		t.Fatalf("free after giving all back = %v, want %v", h.free, want)
	}
	if bytes.Count(h.buf, []byte{0}) != len(h.buf) {
		t.Errorf("memory given back is not zeroed")
	}
}

// TestResidentMemory: a domain takes its memory from the host's resident
// memory while it fits, maps its own when it does not, and a gfn evicted
// and loaded back, or a domain made from memory another one left, holds
// what it should.
func TestResidentMemory(t *testing.T) {
	spec := testSpec(Idle, 1)
	h := newTestHost(t, WithResidentMemory(spec.MemoryPages*hypervisor.PageSize))
	first := create(t, h, spec)
	second := spec
	second.Name = "second"
	other := create(t, h, second)
	for _, c := range []struct {
		id       hypervisor.DomID
		resident bool
	}{{first, true}, {other, false}} {
		d, err := h.acquire(c.id)
		must(t, "acquire", err)
		if got := d.mem.heap != nil; got != c.resident {
			t.Errorf("domain %d resident = %v, want %v", c.id, got, c.resident)
		}
		d.release()
	}

	p, err := h.EnablePaging(first)
	must(t, "EnablePaging", err)
	page := bytes.Repeat([]byte{7}, hypervisor.PageSize)
	const g = hypervisor.GFN(5)
	must(t, "WritePages", h.WritePages(first, []hypervisor.GFN{g}, page))
	must(t, "Nominate", p.Nominate(g))
	must(t, "Evict", p.Evict(g))
	must(t, "Load", p.Load(g, zeroPage[:]))
	got := make([]byte, hypervisor.PageSize)
	must(t, "ReadPages", h.ReadPages(first, []hypervisor.GFN{g}, got))
	if !isZero(got) {
		t.Errorf("gfn %#x evicted and loaded with zeroes reads non-zero bytes", g)
	}
	must(t, "WritePages", h.WritePages(first, []hypervisor.GFN{g}, page))
	must(t, "Destroy", h.Destroy(first))
	third := spec
	third.Name = "third"
	id := create(t, h, third) // in the memory the first left
	d, err := h.acquire(id)
	must(t, "acquire", err)
	resident := d.mem.heap != nil
	d.release()
	if !resident {
		t.Fatalf("domain made after the first was destroyed is not resident")
	}
	ref := newTestHost(t)
	want, err := ref.Digest(create(t, ref, third))
	must(t, "Digest", err)
	if got, err := h.Digest(id); err != nil || got != want {
		t.Errorf("Digest(domain in memory given back) = %v, %v, want %v (a domain's own memory)", got, err, want)
	}
}
