package xenmig_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/internal/testnet"
	"github.com/xenmig/xenmig/xenctrl/sim"
	"github.com/xenmig/xenmig/xenmig"
)

// The chaos test's knobs, from the environment.
const (
	// chaosSeedEnv replays a chaos run: its seed is printed in the test's
	// output.
	chaosSeedEnv = "XENMIG_CHAOS_SEED"
	// chaosBudgetEnv sets how long the chaos test runs migrations (a Go
	// duration; default 40s, 8s with -short).
	chaosBudgetEnv = "XENMIG_CHAOS_BUDGET"
)

// chaosFault is what strikes one chaos run.
type chaosFault int

const (
	faultCut   chaosFault = iota // every connection open is closed
	faultStall                   // connections stay open, nothing arrives
	faultKill                    // the receiver dies: connections closed, receiver gone
	faultSlow                    // connections slow to a crawl
	numFaults
)

func (f chaosFault) String() string { return [...]string{"cut", "stall", "kill", "slow"}[f] }

// chaosCase is one run's draw.
type chaosCase struct {
	mode    xenmig.Mode
	push    xenmig.Push
	kind    sim.Kind
	balloon bool
	fault   chaosFault
	at      int64 // client bytes after which the fault strikes
}

func (c chaosCase) String() string {
	return fmt.Sprintf("%s/%s %s balloon=%v %s after %d KiB", c.mode, c.push, c.kind, c.balloon, c.fault, c.at>>10)
}

func drawChaos(r *rand.Rand) chaosCase {
	c := chaosCase{
		mode:    []xenmig.Mode{xenmig.PreCopy, xenmig.PostCopy, xenmig.Hybrid}[r.IntN(3)],
		kind:    []sim.Kind{sim.Idle, sim.Stress, sim.KernelCompile, sim.WebServer, sim.Quicksort}[r.IntN(5)],
		balloon: r.IntN(2) == 0,
		fault:   chaosFault(r.IntN(int(numFaults))),
		at:      r.Int64N(16 << 20), // a 32 MiB guest using 12 MiB: from the hello to past the end
	}
	pushes := []xenmig.Push{xenmig.PushDemand, xenmig.PushSequential, xenmig.PushPrepaging}
	if c.mode == xenmig.Hybrid {
		pushes = append(pushes, xenmig.PushWorkingSet)
	}
	c.push = pushes[r.IntN(len(pushes))]
	return c
}

// chaosOutcome is how a run ended; every one of them keeps the guest.
type chaosOutcome string

const (
	outcomeMigrated   chaosOutcome = "migrated, digest matched"
	outcomeRecovered  chaosOutcome = "recovered after a break, digest matched"
	outcomeOnSource   chaosOutcome = "failed before the switchover, guest ran on unchanged on the source"
	outcomeKeptPaused chaosOutcome = "receiver killed after the switchover, source copy kept stopped and whole"
)

// TestChaos: many short migrations across every mode and push order, with
// and without ballooning, each struck at a random point by a fault (a cut,
// a stall, the receiver killed, a slow link). Every run must end with the
// guest whole: migrated with the unmigrated run's digest (after a
// reconnection if the fault broke the post-copy), or still running on the
// source and ending with that digest, or, when the receiver was killed
// after the switchover, the source copy kept paused. Never split, never
// hung. The seed is printed; XENMIG_CHAOS_SEED replays it,
// XENMIG_CHAOS_BUDGET sets how long it runs (40 s by default, 8 s with
// -short).
func TestChaos(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(chaosSeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", chaosSeedEnv, s, err)
		}
	}
	budget := 40 * time.Second
	if testing.Short() {
		budget = 8 * time.Second
	}
	if s := os.Getenv(chaosBudgetEnv); s != "" {
		var err error
		if budget, err = time.ParseDuration(s); err != nil {
			t.Fatalf("%s=%q: %v", chaosBudgetEnv, s, err)
		}
	}
	t.Logf("chaos seed %d (replay: %s=%d), budget %v", seed, chaosSeedEnv, seed, budget)
	r := rand.New(rand.NewPCG(seed, seed>>32|1))
	refs := map[string]hypervisor.Digest{}
	counts := map[chaosOutcome]int{}
	byFault := map[string]int{}
	start := time.Now()
	runs := 0
	for time.Since(start) < budget {
		c := drawChaos(r)
		runs++
		spec := chaosGuest(c)
		key := fmt.Sprintf("%s/%v", c.kind, c.balloon)
		if _, ok := refs[key]; !ok {
			refs[key] = reference(t, spec)
		}
		out, err := chaosRun(t, c, spec, refs[key])
		if err != nil {
			t.Fatalf("chaos run %d (%v; seed %d): %v", runs, c, seed, err)
		}
		counts[out]++
		byFault[fmt.Sprintf("%s: %s", c.fault, out)]++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "chaos seed %d: %d runs in %v, every guest whole", seed, runs, time.Since(start).Round(time.Second))
	for _, o := range []chaosOutcome{outcomeMigrated, outcomeRecovered, outcomeOnSource, outcomeKeptPaused} {
		fmt.Fprintf(&b, "\n  %4d %s", counts[o], o)
	}
	for k, n := range byFault {
		fmt.Fprintf(&b, "\n  %4d %s", n, k)
	}
	t.Log(b.String())
}

// chaosGuest is a small guest of the case's workload: a run of about 0.6 s.
func chaosGuest(c chaosCase) sim.GuestSpec {
	spec := guest(string(c.kind), c.kind, 3000)
	if c.balloon {
		spec.Balloond = &sim.BalloondSpec{IntervalMS: 50}
	}
	return spec
}

// chaosRun migrates one guest through a fault and says how it ended, or
// why that end lost or split the guest.
func chaosRun(t *testing.T, c chaosCase, spec sim.GuestSpec, want hypervisor.Digest) (chaosOutcome, error) {
	const bound = 90 * time.Second // no run may take longer: a hang
	tr := xenmig.Transport{DialTimeout: 2 * time.Second, StallTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	l := xenmig.Listen(ln, tr, testLog("dst"))
	defer l.Close()
	dst := sim.NewHost()
	defer dst.Close()
	rctx, kill := context.WithTimeout(context.Background(), bound)
	defer kill()
	var inc *xenmig.Incoming
	var rerr error
	received := make(chan struct{})
	go func() {
		defer close(received)
		inc, rerr = xenmig.Receive(rctx, dst, l, testLog("dst"), xenmig.WithReconnectTimeout(5*time.Second))
	}()

	fault := map[chaosFault]testnet.Fault{faultCut: testnet.Cut, faultStall: testnet.Stall, faultKill: testnet.Cut, faultSlow: testnet.Slow}[c.fault]
	via := testnet.NewFaults(t, ln.Addr().String(), c.at, fault)
	var killOnce sync.Once
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	if c.fault == faultKill {
		go func() {
			for !via.Struck() {
				select {
				case <-stopWatch:
					return
				case <-time.After(time.Millisecond):
				}
			}
			killOnce.Do(func() { kill(); l.Close() })
		}()
	}

	src := sim.NewHost()
	defer src.Close()
	dom := boot(t, src, spec, 300)
	p := plan(c.mode, c.push)
	p.Balloon = c.balloon
	p.ReconnectTimeout = 5 * time.Second
	p.DemandMax = time.Second
	mctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	began := time.Now()
	res, err := xenmig.Migrate(mctx, src, dom, via.Addr, p, testLog("src"), xenmig.WithTransport(tr))
	if time.Since(began) >= bound {
		return "", fmt.Errorf("Migrate() hung for %v: %v", bound, err)
	}
	select {
	case <-received:
	case <-time.After(bound):
		return "", fmt.Errorf("Receive() hung for %v after Migrate() = %v", bound, err)
	}
	switch {
	case err == nil:
		if res.Digest != want.String() {
			return "", fmt.Errorf("migrated with digest %s, want %s (unmigrated run)", res.Digest, want)
		}
		if rerr != nil || inc == nil {
			return "", fmt.Errorf("Migrate() succeeded but Receive() = %v", rerr)
		}
		if _, err := src.Info(dom); !errors.Is(err, hypervisor.ErrNotFound) {
			return "", fmt.Errorf("source copy after a complete migration: Info() = %v, want ErrNotFound", err)
		}
		if res.Reconnects > 0 {
			return outcomeRecovered, nil
		}
		return outcomeMigrated, nil
	case !errors.Is(err, xenmig.ErrCommitted):
		// Before the switchover: the guest must run on, unchanged, here
		// and nowhere else.
		info, ierr := src.Info(dom)
		if ierr != nil || info.State != hypervisor.StateRunning || info.Name != spec.Name {
			return "", fmt.Errorf("after Migrate() = %v: source Info() = %+v, %v; want running as %q", err, info, ierr, spec.Name)
		}
		if doms, _ := dst.Domains(); len(doms) > 0 && c.fault != faultKill {
			return "", fmt.Errorf("after Migrate() = %v: destination still holds %+v", err, doms)
		}
		wctx, wcancel := context.WithTimeout(context.Background(), bound)
		defer wcancel()
		if err := src.WaitDone(wctx, dom); err != nil {
			return "", fmt.Errorf("the guest left on the source did not finish: %v", err)
		}
		if got, derr := src.Digest(dom); derr != nil || got != want {
			return "", fmt.Errorf("guest left on the source ended with %v, %v; want %v", got, derr, want)
		}
		return outcomeOnSource, nil
	case c.fault == faultKill:
		// The receiver died after the switchover: nothing can finish the
		// migration, but the source copy must be kept, paused and whole.
		info, ierr := src.Info(dom)
		stopped := info.State == hypervisor.StatePaused || info.State == hypervisor.StateSuspended
		if ierr != nil || !stopped || info.Name != spec.Name+xenmig.MigratedAwaySuffix {
			return "", fmt.Errorf("after Migrate() = %v: source Info() = %+v, %v; want paused or suspended as %s%s", err, info, ierr, spec.Name, xenmig.MigratedAwaySuffix)
		}
		return outcomeKeptPaused, nil
	}
	return "", fmt.Errorf("split: Migrate() = %v, Receive() = %v", err, rerr)
}
