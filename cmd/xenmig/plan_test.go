package main

import (
	"errors"
	"testing"

	"github.com/xenmig/xenmig/conf"
	"github.com/xenmig/xenmig/xenmig"
)

// TestPlanChoices: the flags and a plugin request override the configured
// plan the same way.
func TestPlanChoices(t *testing.T) {
	base := xenmig.DefaultPlan() // post-copy, pre-paging, 7 pivots, unlimited
	for _, tc := range []struct {
		name    string
		c       planChoices
		mode    xenmig.Mode
		push    xenmig.Push
		pivots  int
		bw      int64
		balloon bool
		err     error
	}{
		{"none", planChoices{}, xenmig.PostCopy, xenmig.PushPrepaging, 7, 0, false, nil},
		{"hybrid pushes the working set", planChoices{mode: xenmig.Hybrid}, xenmig.Hybrid, xenmig.PushWorkingSet, 7, 0, false, nil},
		{"hybrid keeps a chosen push", planChoices{mode: xenmig.Hybrid, push: xenmig.PushSequential}, xenmig.Hybrid, xenmig.PushSequential, 7, 0, false, nil},
		{"all set", planChoices{mode: xenmig.PreCopy, push: xenmig.PushDemand, pivots: 3, bandwidth: 1 << 20, balloon: true},
			xenmig.PreCopy, xenmig.PushDemand, 3, 1 << 20, true, nil},
		{"no early push", planChoices{noEarly: true}, xenmig.PostCopy, xenmig.PushPrepaging, 7, 0, false, nil},
		{"bad mode", planChoices{mode: "teleport"}, "", "", 0, 0, false, xenmig.ErrBadPlan},
		{"workingset needs hybrid", planChoices{push: xenmig.PushWorkingSet}, "", "", 0, 0, false, xenmig.ErrBadPlan},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tc.c.over(base)
			if !errors.Is(err, tc.err) {
				t.Fatalf("over() error = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if p.Mode != tc.mode || p.Push != tc.push || p.Pivots != tc.pivots || p.Bandwidth != tc.bw || p.Balloon != tc.balloon {
				t.Errorf("over() = mode %s push %s pivots %d bandwidth %d balloon %v, want %s %s %d %d %v",
					p.Mode, p.Push, p.Pivots, p.Bandwidth, p.Balloon, tc.mode, tc.push, tc.pivots, tc.bw, tc.balloon)
			}
			if p.EarlyPush != !tc.c.noEarly {
				t.Errorf("over() early push = %v, want %v", p.EarlyPush, !tc.c.noEarly)
			}
		})
	}
}

// TestGuestSizeFlags: size flags read xl's units (a bare M is MiB) and an
// error names the flag and shows an example.
func TestGuestSizeFlags(t *testing.T) {
	for _, tc := range []struct {
		memory, used string
		pages, used4 uint64 // memory and used pages
		err          string
	}{
		{"256M", "64m", 65536, 16384, ""},
		{"1G", "256MiB", 262144, 65536, ""},
		{"1GiB", "4096kB", 262144, 1000, ""},
		{"256MB", "", 62500, 62500, ""}, // 256e6 bytes: used defaults to the memory
		{"256 megs", "", 0, 0, `--size: invalid size "256 megs": unknown unit "megs" (want e.g. "256M" or "256MiB" (binary), "1GB" (10^9 bytes) or a number of bytes)`},
		{"256M", "300M", 0, 0, "--used 300MiB is more than the guest's memory (--size) 256MiB"},
		{"0", "", 0, 0, "--size must be more than 0"},
	} {
		a := &app{cfg: conf.Default()}
		a.cfg.Sim.Guest.Used = a.cfg.Sim.Guest.Memory
		if tc.used == "" {
			tc.used = tc.memory
		}
		f := guestFlags{memory: tc.memory, used: tc.used, writePercent: -1}
		spec, err := f.spec(a, "g", false)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("spec(--size %s --used %s) = %v, want %q", tc.memory, tc.used, err, tc.err)
			}
			continue
		}
		if err != nil || spec.MemoryPages != tc.pages || spec.UsedPages != tc.used4 {
			t.Errorf("spec(--size %s --used %s) = %d, %d pages, %v, want %d, %d", tc.memory, tc.used, spec.MemoryPages, spec.UsedPages, err, tc.pages, tc.used4)
		}
	}
}

// TestPlanStreams: --streams overrides the configured count, and a count
// the protocol cannot carry is refused.
func TestPlanStreams(t *testing.T) {
	for _, tc := range []struct {
		streams, want int
		err           error
	}{
		{0, 0, nil}, // the configured choice (0: chosen from the CPUs and the link)
		{3, 3, nil},
		{16, 16, nil},
		{17, 0, xenmig.ErrBadPlan},
		{-1, 0, xenmig.ErrBadPlan},
	} {
		p, err := planChoices{streams: tc.streams}.over(xenmig.DefaultPlan())
		if !errors.Is(err, tc.err) || (err == nil && p.Streams != tc.want) {
			t.Errorf("over(streams %d) = %d, %v, want %d, %v", tc.streams, p.Streams, err, tc.want, tc.err)
		}
	}
}

// TestDestinationPort: a destination whose port is not a port is a bad
// argument (exit 2), not a failed migration.
func TestDestinationPort(t *testing.T) {
	a := &app{cfg: conf.Default()}
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{"host", "host:8002", false},
		{"10.0.0.2:9000", "10.0.0.2:9000", false},
		{"[::1]:8002", "[::1]:8002", false},
		{"host:99999", "", true},
		{"host:0", "", true},
		{"host:http", "", true},
		{":8002", "", true},
	} {
		got, err := a.destination(tc.in)
		var ee *exitError
		if tc.bad {
			if !errors.As(err, &ee) || ee.code != exitUsage {
				t.Errorf("destination(%q) = %q, %v; want a usage error (exit %d)", tc.in, got, err, exitUsage)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("destination(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
