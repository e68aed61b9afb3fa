package sim

import (
	"context"
	"testing"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
)

// testSpec is a small guest: 16 MiB with a 256 KiB hole, half in use.
func testSpec(kind Kind, vcpus int) GuestSpec {
	return GuestSpec{
		Name:        "guest",
		VCPUs:       vcpus,
		MemoryPages: 4096,
		Holes:       []Hole{{Start: 0xa00, Count: 0x40}},
		UsedPages:   2048,
		Seed:        42,
		Workload:    WorkloadSpec{Kind: kind},
	}
}

// newTestHost returns a host destroyed when the test ends.
func newTestHost(t testing.TB, opts ...Option) *Host {
	t.Helper()
	h := NewHost(opts...)
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return h
}

// create creates spec on h, paused.
func create(t testing.TB, h *Host, spec GuestSpec) hypervisor.DomID {
	t.Helper()
	id, err := h.CreateDomain(spec)
	if err != nil {
		t.Fatalf("CreateDomain(%+v) = %v", spec, err)
	}
	return id
}

// must fails the test if err is not nil.
func must(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s = %v, want nil", what, err)
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// steps returns vCPU v's step count.
func steps(t testing.TB, h *Host, id hypervisor.DomID, v int) uint64 {
	t.Helper()
	p, err := h.Progress(id)
	if err != nil {
		t.Fatalf("Progress(%d) = %v", id, err)
	}
	return p.Steps[v]
}

// waitSteps waits until vCPU v has done at least n steps.
func waitSteps(t testing.TB, h *Host, id hypervisor.DomID, v int, n uint64) {
	t.Helper()
	waitFor(t, "vCPU steps", func() bool { return steps(t, h, id, v) >= n })
}

// requests drains requests until it has n of them, failing after 10 s.
func requests(t testing.TB, p hypervisor.Pager, n int) []hypervisor.Request {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []hypervisor.Request
	for len(out) < n {
		rs, err := p.Requests(ctx)
		if err != nil {
			t.Fatalf("Requests() after %d of %d = %v", len(out), n, err)
		}
		out = append(out, rs...)
	}
	return out
}

// evict nominates and evicts gfns, returning their content beforehand.
func evict(t testing.TB, h *Host, id hypervisor.DomID, p hypervisor.Pager, gfns ...hypervisor.GFN) []byte {
	t.Helper()
	buf := make([]byte, len(gfns)*hypervisor.PageSize)
	must(t, "ReadPages", h.ReadPages(id, gfns, buf))
	for _, g := range gfns {
		must(t, "Nominate", p.Nominate(g))
		must(t, "Evict", p.Evict(g))
	}
	return buf
}
