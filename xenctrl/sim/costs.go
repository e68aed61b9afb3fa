package sim

import (
	"fmt"
	"sync"
	"time"
)

// Cost is what one call of a hypervisor operation costs on the host being
// modelled: a fixed part per call and a part per page (or gfn) it handles.
type Cost struct {
	Call time.Duration // per call
	Page time.Duration // per page or gfn of the call
}

// of returns the cost of one call on n pages.
func (c Cost) of(n int) time.Duration { return c.Call + time.Duration(n)*c.Page }

// Costs is the simulator's cost model: how long each dom0 call into the
// hypervisor takes on the host being modelled. A call takes at least its
// cost; the simulator's own work counts toward it. The zero Costs, the
// default, adds nothing, so tests run at the machine's speed.
//
// Costs are booked on lanes, one of each kind per domain, each serving its
// calls one at a time, as a queue:
//
//   - the p2m lane: Populate, Depopulate, Nominate, Evict, Load. Xen runs
//     each under the domain's p2m lock (gfn_lock is p2m_lock,
//     xen/arch/x86/mm/mm-locks.h), so they serialize per domain whichever
//     dom0 thread calls them;
//   - the mapping lane: ReadPages, WritePages (foreign maps); several dom0
//     threads would run them in parallel, but with a real host's costs
//     they amount to milliseconds per GiB, and one lane is simple;
//   - the log-dirty lane: DirtyLog.
//
// A lane does not make a caller wait for every microsecond: it keeps the
// time at which it will have served what it was given, and a caller
// sleeps only once that time is more than laneSlack (200 µs) ahead of
// the clock, and a caller late by a sleep's overshoot is counted as served
// on time. A busy lane's throughput is exact; an isolated call cheaper
// than 200 µs costs nothing. The ring's Notify latency is different: it
// delays each request precisely (see WithNotifyLatency).
type Costs struct {
	// Read and Write are a foreign map of a batch of pages, the copy and
	// the unmap: ReadPages, WritePages.
	Read, Write Cost
	// DirtyLog is one log-dirty peek or clean; Page is per gfn of the
	// guest's gfn space, which Xen walks.
	DirtyLog Cost
	// Populate and Depopulate are per call and per gfn.
	Populate, Depopulate Cost
	// Nominate, Evict and Load are per gfn (one call each).
	Nominate, Evict, Load time.Duration
	// Notify is the delay between the guest posting a paging request and
	// the pager seeing it: with the Load of the gfn, a ring round trip.
	Notify time.Duration
}

// WithCosts makes the host charge c for every dom0 call (see Costs). Its
// Notify replaces the notification latency of an earlier WithNotifyLatency.
func WithCosts(c Costs) Option {
	return func(h *Host) {
		h.costs = c
		h.notifyLatency = max(c.Notify, 0)
	}
}

// The per-call costs measured in the real-Xen lab (lab/xen, the bench
// scenario: xenctrl's BenchmarkLive* in a PV dom0 of Xen 4.17.7 with
// mem_paging, under QEMU 7.2 TCG, the guest idle), in µs, and the TCG
// slow-downs of its calibration benchmarks against the host the lab runs
// on. docs/XEN.md ("The simulator's costs") has the table and the command.
const (
	labRead1      = 209.0   // ReadPages of 1 page
	labRead64     = 651.0   // of 64
	labRead512    = 3775.0  // of 512
	labDirtyLog   = 1338.0  // peek-and-clean, 128 MiB guest
	labLogGFNs    = 32768.0 // the gfns it walked, taken as the guest's pages
	labPopulate1  = 36787.0 // Depopulate + Populate of 1 gfn
	labPopulate64 = 41272.0 // of 64
	labPaging     = 77.0    // Nominate + Evict of one gfn
	labLoad       = 266.0   // Load of one gfn
	labRoundTrip  = 2078.0  // a foreign read of an evicted gfn: request, Load, Resume, the read
	labTrap       = 14.0    // CalibGetpid: one system call through Xen, the cost of an ioctl's traps

	// trapInflation is TCG's slow-down of a system call (CalibGetpid,
	// lab 14 µs, host 0.052 µs); memInflation of a 4 KiB copy
	// (CalibCopy4K, lab 0.90 µs, host 0.026 µs).
	trapInflation = 270.0
	memInflation  = 35.0
)

// us is a duration of x µs.
func us(x float64) time.Duration { return time.Duration(x * float64(time.Microsecond)) }

// labSplit is a lab cost split into its trap part (system calls and
// hypercalls into Xen) and its work part (Xen's and the copy's code).
type labSplit struct{ trap, work float64 }

// real estimates the cost on a real host: each part divided by TCG's
// slow-down of the calibration benchmark it resembles.
func (s labSplit) real() time.Duration { return us(s.trap/trapInflation + s.work/memInflation) }

// lab is the cost in the lab itself.
func (s labSplit) lab() time.Duration { return us(s.trap + s.work) }

// labModel is the lab's figures fitted to Costs' shape, each split.
type labModel struct {
	mapCall, mapPage, logCall, logPage, popCall, popPage, nominate, evict, load, notify labSplit
}

func newLabModel() labModel {
	perPage := (labRead512 - labRead64) / (512 - 64) // the map's PTEs and the copy
	popPage := (labPopulate64 - labPopulate1) / 63 / 2
	return labModel{
		// The fixed part of a foreign map (mmap, the batch ioctl and its
		// hypercall, munmap and its TLB flush) is traps; per page, work.
		mapCall: labSplit{trap: labRead64 - 64*perPage},
		mapPage: labSplit{work: perPage},
		// One ioctl; the walk of the bitmap (and, cleaning, the p2m's
		// types) is work.
		logCall: labSplit{trap: labTrap},
		logPage: labSplit{work: (labDirtyLog - labTrap) / labLogGFNs},
		// The lab's populate has a fixed part of some 18 ms a call
		// (depopulate the same), flat from 1 to 64 gfns: traps and the
		// IPIs of TLB flushes, whose delivery TCG stretches.
		popCall: labSplit{trap: (labPopulate1 - 2*popPage) / 2},
		popPage: labSplit{work: popPage},
		// Nominate, evict, load: one ioctl each, the rest Xen's work under
		// the p2m lock (load also allocates a page and copies the buffer).
		nominate: labSplit{trap: labTrap, work: labPaging/2 - labTrap},
		evict:    labSplit{trap: labTrap, work: labPaging/2 - labTrap},
		load:     labSplit{trap: labTrap, work: labLoad - labTrap},
		// The round trip less its load and its one-page read: event
		// channel upcalls, the pager's wake-up, the response's notify.
		notify: labSplit{trap: labRoundTrip - labLoad - labRead1},
	}
}

// costs builds Costs from the model with f (real or lab).
func (m labModel) costs(f func(labSplit) time.Duration) Costs {
	mapping := Cost{Call: f(m.mapCall), Page: f(m.mapPage)}
	reservation := Cost{Call: f(m.popCall), Page: f(m.popPage)}
	return Costs{
		Read: mapping, Write: mapping,
		DirtyLog: Cost{Call: f(m.logCall), Page: f(m.logPage)},
		Populate: reservation, Depopulate: reservation,
		Nominate: f(m.nominate), Evict: f(m.evict), Load: f(m.load),
		Notify: f(m.notify),
	}
}

// XenCosts estimates a real Xen 4.17 host's costs (a PV dom0 on hardware,
// not under TCG): the lab's figures, each part divided by the TCG slow-down
// of the calibration it resembles, traps by a system call's (270x), the
// rest by a 4 KiB copy's (35x). Nominate plus evict comes to about 1.5 µs
// a gfn; xenpaging's published 16 µs per gfn (nominate, evict and the
// write of the page to its file, on older hardware) bounds it from above.
func XenCosts() Costs { return newLabModel().costs(labSplit.real) }

// LabCosts are the lab's own figures, TCG's slow-down included: the
// simulator then runs about as fast as xenmig in the lab.
func LabCosts() Costs { return newLabModel().costs(labSplit.lab) }

// CostModels names the cost models ParseCosts knows.
var CostModels = []string{"none", "xen", "lab"}

// ParseCosts returns the cost model called name: "none" (the zero Costs),
// "xen" (XenCosts) or "lab" (LabCosts).
func ParseCosts(name string) (Costs, error) {
	switch name {
	case "none":
		return Costs{}, nil
	case "xen":
		return XenCosts(), nil
	case "lab":
		return LabCosts(), nil
	}
	return Costs{}, fmt.Errorf("unknown cost model %q (want one of %q)", name, CostModels)
}

// laneSlack is how far ahead of the clock a lane may be before its caller
// sleeps. It is also what another caller may find queued in front of it:
// on Xen a call holds the p2m lock for its own few µs, so a lane that let
// one caller book a millisecond ahead (as it once did) made a demand
// fault's load wait behind a background drain's millisecond of loads. 200
// µs keeps the sleeps few and the queue short.
const laneSlack = 200 * time.Microsecond

// laneIdle is how long a lane may have been idle and still count a late
// caller's lateness as served: a sleep overshoots, by more than a
// millisecond on a loaded machine, and the lane's throughput must not
// suffer from it.
const laneIdle = 10 * time.Millisecond

// lane serves booked costs one at a time (see Costs).
type lane struct {
	mu   sync.Mutex
	free time.Time // when the lane will have served everything booked
}

// book books a call that arrived at arrived and costs cost, and returns how
// long its caller must sleep now, at now, for the lane to have served it:
// zero unless the lane is more than laneSlack ahead of now.
func (l *lane) book(arrived, now time.Time, cost time.Duration) time.Duration {
	if cost <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if arrived.Sub(l.free) > laneIdle {
		l.free = arrived // idle since: start afresh
	}
	l.free = l.free.Add(cost)
	if ahead := l.free.Sub(now); ahead > laneSlack {
		return ahead
	}
	return 0
}

// pay starts a call that costs cost and returns what the call defers: the
// booking, and the sleep the lane asks for. The call's own work counts
// toward its cost. A free call reads no clock.
//
//	defer d.lanes.p2m.pay(cost)()
func (l *lane) pay(cost time.Duration) func() {
	if cost <= 0 {
		return func() {}
	}
	arrived := time.Now()
	return func() {
		if d := l.book(arrived, time.Now(), cost); d > 0 {
			time.Sleep(d)
		}
	}
}

// lanes are a domain's cost lanes.
type lanes struct{ p2m, mapping, logDirty lane }
