package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/xenmig/xenmig/conf"
	"github.com/xenmig/xenmig/internal/benchreport"
	"github.com/xenmig/xenmig/internal/netlab"
	"github.com/xenmig/xenmig/xenmig"
)

// benchMethod is one row of the matrix: a mode, its push order, and whether
// the guest's self-ballooning agent squeezes it first.
type benchMethod struct {
	mode, push string
	balloon    bool
}

// benchWorkload is one column: a simulated workload and its parameters.
type benchWorkload struct {
	name, kind   string
	workingSet   string  // "" for the workload's default
	wsDivisor    uint64  // if set, the working set is the guest's size / wsDivisor
	used         string  // memory in use at boot; "" for sim.guest.used, "all" for the guest's size
	vcpus        int     // 0 for sim.guest.vcpus
	writePercent int     // -1 for the workload's default
	sweep        bool    // stress: in order, not at random
	rate         float64 // steps per second per vCPU; 0 for the workload's own
	// run is how long the guest runs in all, at its pace, before it stops
	// (--sim-run); 0 for --warmup + --run.
	run time.Duration
}

// seqWriter is the sequential writer: one vCPU writing a byte of each page
// of a quarter of memory in order, as fast as it can (10^7 pages a second):
// the pattern whose post-copy best implementations bring to 1.05-1.15x
// the floor.
//
// Its pace is more than a simulated vCPU can do (about 1.5 µs a write on
// this kind of machine), so it stops after 3·10^6 writes, some seconds in:
// the unmigrated reference run its digest is checked against costs as many.
var seqWriter = benchWorkload{name: "seqwriter", kind: "stress", wsDivisor: 4, used: "1MiB", vcpus: 1,
	writePercent: 100, sweep: true, rate: 1e7, run: 300 * time.Millisecond}

// fullIdle is an idle guest whose every page is in use: the bulk rate.
var fullIdle = benchWorkload{name: "idle-full", kind: "idle", used: "all", writePercent: -1}

// benchMatrix is what `xenmig bench` runs.
type benchMatrix struct {
	methods   []benchMethod
	workloads []benchWorkload
	sizes     []conf.Size
	rates     []uint64 // link rates, bits per second (0: unshaped); nil: bench.rate
	reps      int
}

func fullMatrix(reps int) benchMatrix {
	return benchMatrix{
		methods: []benchMethod{{"precopy", "", false}, {"postcopy", "demand", false}, {"postcopy", "sequential", false},
			{"postcopy", "prepaging", false}, {"hybrid", "prepaging", false}, {"hybrid", "workingset", false},
			{"precopy", "", true}, {"postcopy", "prepaging", true}},
		workloads: []benchWorkload{
			{name: "idle", kind: "idle", writePercent: -1},
			{name: "kcompile", kind: "kcompile", writePercent: -1},
			{name: "web", kind: "web", writePercent: -1},
			{name: "stress-512MiB-write", kind: "stress", workingSet: "512MiB", writePercent: 100},
			// A scan: spatial locality for pre-paging to follow, at a pace
			// (20 MB/s per vCPU) the link can keep ahead of.
			{name: "sweep-256MiB", kind: "stress", workingSet: "256MiB", writePercent: 50, sweep: true, rate: 5000},
		},
		sizes: []conf.Size{512 * conf.MiB, 2 * conf.GiB},
		reps:  reps,
	}
}

// lineRateMatrix measures the transfer itself: the sequential writer (256
// MiB with 64 MiB written, 1 GiB with 256 MiB) and a fully used idle guest,
// post-copy and pre-copy, unshaped, at 10 and at 1 Gbit/s.
func lineRateMatrix(reps int) benchMatrix {
	return benchMatrix{
		methods:   []benchMethod{{"postcopy", "prepaging", false}, {"precopy", "", false}},
		workloads: []benchWorkload{seqWriter, fullIdle},
		sizes:     []conf.Size{256 * conf.MiB, conf.GiB},
		rates:     []uint64{0, 10e9, 1e9},
		reps:      reps,
	}
}

func quickMatrix() benchMatrix {
	return benchMatrix{
		methods:   []benchMethod{{"precopy", "", false}, {"postcopy", "prepaging", false}},
		workloads: []benchWorkload{{name: "stress-128MiB-write", kind: "stress", workingSet: "128MiB", writePercent: 100}},
		sizes:     []conf.Size{256 * conf.MiB},
		reps:      1,
	}
}

// filter keeps the methods and workloads named (all when a list is empty).
func (m *benchMatrix) filter(methods, workloads []string) error {
	if len(methods) > 0 {
		var keep []benchMethod
		for _, meth := range m.methods {
			if slices.Contains(methods, meth.key().Label()) {
				keep = append(keep, meth)
			}
		}
		if len(keep) == 0 {
			return fmt.Errorf("--methods %q matches none of the matrix's methods", methods)
		}
		m.methods = keep
	}
	if len(workloads) > 0 {
		var keep []benchWorkload
		for _, w := range m.workloads {
			if slices.Contains(workloads, w.name) || slices.Contains(workloads, w.kind) {
				keep = append(keep, w)
			}
		}
		if len(keep) == 0 {
			return fmt.Errorf("--workloads %q matches none of the matrix's workloads", workloads)
		}
		m.workloads = keep
	}
	return nil
}

// key is the method's part of a cell's key.
func (meth benchMethod) key() benchreport.Key {
	return benchreport.Key{Mode: meth.mode, Push: meth.push, Balloon: meth.balloon}
}

func newBenchCommand(a *app) *cobra.Command {
	var quick, lineRate, asJSON bool
	var rate, rates, delay, out string
	var reps, mtu int
	var warmup, run time.Duration
	var methods, workloads []string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark every migration mode on a shaped Gigabit link between two network namespaces",
		Long: `Create two network namespaces joined by a veth pair shaped with a tbf qdisc (the
paper's Gigabit LAN: bench.rate, 1gbit, and bench.delay), run a simulated
destination host in one and, in the other, one migration per cell of the
matrix: modes {pre-copy, post-copy demand only, post-copy sequential push,
post-copy pre-paging, hybrid, hybrid working-set-ordered, and pre-copy and
post-copy pre-paging with the guest's self-ballooning agent} x workloads {idle,
kernel compile, web server, write stress over a 512 MiB working set, an
in-order sweep of 256 MiB at 20 MB/s per vCPU} x guest sizes {512 MiB, 2 GiB},
bench.repetitions times each.

The simulated hosts charge each call into the hypervisor what it costs on
a real Xen host, as estimated from the lab's measures (--sim-costs xen, the
default; "lab" for the lab's own, "none" for none); the table says which.

It prints per cell the total time beside the physical floor (bytes that must
move / link rate), downtime, pages sent, network faults, fault latency p50/p99
and workload degradation, and writes results.csv and SVG charts to bench.out.
Namespaces and processes are removed at the end, on failure and on Ctrl-C.
It needs root (network namespaces and tc).

--quick runs a reduced matrix in under a minute: 256 MiB guests, one
repetition, post-copy with pre-paging against pre-copy on write stress.

--linerate measures the transfer itself: a sequential writer (one vCPU
writing a quarter of memory in order, 10^7 pages a second, 1 MiB used at
boot) and an idle guest whose every page is in use, 256 MiB and 1 GiB,
post-copy and pre-copy, on an unshaped link, at 10 Gbit/s and at 1 Gbit/s
(--rates overrides). The table gives GB/s and total / floor per cell.

Every guest runs to a known stop (--run after the migration starts) and the
destination compares its memory digest with an unmigrated run's: a cell
whose memory differs fails, and --json carries digest_match.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := a.cfg.Bench
			for _, f := range []struct {
				name, val string
				dst       interface{ UnmarshalText([]byte) error }
			}{{"rate", rate, &b.Rate}, {"delay", delay, &b.Delay}} {
				if f.val != "" {
					if err := f.dst.UnmarshalText([]byte(f.val)); err != nil {
						return withCode(exitUsage, fmt.Errorf("--%s: %w", f.name, err))
					}
				}
			}
			if reps > 0 {
				b.Repetitions = reps
			}
			if cmd.Flags().Changed("mtu") {
				if mtu < netlab.MinMTU || mtu > netlab.MaxMTU {
					return withCode(exitUsage, fmt.Errorf("--mtu %d: want %d to %d", mtu, netlab.MinMTU, netlab.MaxMTU))
				}
				b.MTU = mtu
			}
			if out != "" {
				b.Out = out
			}
			m := fullMatrix(b.Repetitions)
			switch {
			case quick:
				m = quickMatrix()
			case lineRate:
				m = lineRateMatrix(b.Repetitions)
			}
			if rates != "" {
				m.rates = nil
				for _, r := range strings.Split(rates, ",") {
					var v conf.Rate
					if err := v.UnmarshalText([]byte(strings.TrimSpace(r))); err != nil {
						return withCode(exitUsage, fmt.Errorf("--rates: %w", err))
					}
					m.rates = append(m.rates, v.BitsPerSecond())
				}
			}
			if m.rates == nil {
				m.rates = []uint64{b.Rate.BitsPerSecond()}
			}
			if err := m.filter(methods, workloads); err != nil {
				return withCode(exitUsage, err)
			}
			return a.bench(cmd.Context(), b, m, warmup, run, asJSON)
		},
	}
	cmd.Flags().BoolVar(&quick, "quick", false, "the reduced matrix (256 MiB, one repetition, post-copy vs pre-copy on write stress)")
	cmd.Flags().BoolVar(&lineRate, "linerate", false, "the transfer matrix: sequential writer and full idle guest, 256 MiB and 1 GiB, unshaped, 10 and 1 Gbit/s")
	cmd.Flags().StringVar(&rates, "rates", "", `link rates to run the matrix on, e.g. "0,10gbit,1gbit" (0: unshaped) (default: --rate)`)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per cell (the migration JSON's keys, averaged, plus rate_bps, mtu and floor_ms)")
	cmd.Flags().StringVar(&rate, "rate", "", `link rate, e.g. "1gbit"; "0" for an unshaped link (default: bench.rate)`)
	cmd.Flags().StringVar(&delay, "delay", "", `added one-way delay, e.g. "1ms" (default: bench.delay)`)
	cmd.Flags().IntVar(&mtu, "mtu", 0, "the link's MTU in bytes, e.g. 9000 for jumbo frames (default: bench.mtu, else 1500)")
	cmd.Flags().IntVar(&reps, "reps", 0, "repetitions per cell (default: bench.repetitions)")
	cmd.Flags().StringVar(&out, "out", "", "directory for results.csv and the charts (default: bench.out)")
	cmd.Flags().DurationVar(&warmup, "warmup", 2*time.Second, "how long each guest runs before its migration")
	cmd.Flags().DurationVar(&run, "run", 4*time.Second, "how long each guest runs after its warm-up before it stops and its memory is checked")
	cmd.Flags().StringSliceVar(&methods, "methods", nil, `run only these methods, by label, e.g. "precopy,postcopy prepaging +balloon"`)
	cmd.Flags().StringSliceVar(&workloads, "workloads", nil, `run only these workloads, e.g. "idle,web"`)
	return cmd
}

func (a *app) bench(ctx context.Context, b conf.BenchConfig, m benchMatrix, warmup, run time.Duration, asJSON bool) error {
	self, err := os.Executable()
	if err != nil {
		return withCode(exitFailure, err)
	}
	if err := os.MkdirAll(b.Out, 0o755); err != nil {
		return withCode(exitFailure, fmt.Errorf("bench.out: %w", err))
	}
	var cells []benchreport.Cell
	var objs []map[string]any
	var failures []error
	total := len(m.rates) * len(m.methods) * len(m.workloads) * len(m.sizes) * m.reps
	n := 0
	for _, rate := range m.rates {
		err := a.benchLink(ctx, self, rate, b.Delay.Duration(), b.MTU, slices.Max(m.sizes), func(lab *netlab.Lab, dest string) error {
			for _, size := range m.sizes {
				for _, w := range m.workloads {
					for _, meth := range m.methods {
						key := meth.key()
						key.Workload, key.GuestBytes = w.name, size.Bytes()
						var runs []benchreport.Run
						var results []*xenmig.Result
						for rep := 0; rep < m.reps; rep++ {
							n++
							a.log.WithFields(map[string]any{"cell": key.Label(), "size": size, "link": benchreport.LinkHuman(rate),
								"rep": rep + 1, "of": fmt.Sprintf("%d/%d", n, total)}).Info("migrating")
							res, err := a.benchRun(ctx, lab, self, dest, meth, w, size, warmup, run)
							if err != nil {
								if ctx.Err() != nil {
									return ctx.Err()
								}
								// One failed run does not lose the others: it is
								// reported, and the matrix goes on.
								err = fmt.Errorf("%s, %s, %s guest, %s, repetition %d: %w", key.Label(), w.name, size, benchreport.LinkHuman(rate), rep+1, err)
								a.log.WithError(err).Error("benchmark run failed")
								failures = append(failures, err)
								continue
							}
							results = append(results, res)
							runs = append(runs, benchreport.Run{TotalMS: res.TotalMS, DowntimeMS: res.DowntimeMS, PagesOwned: res.PagesOwned,
								PagesSent: res.PagesSent, BytesSent: res.BytesSent, NetworkFaults: res.NetworkFaults,
								FaultP50US: res.FaultP50US, FaultP99US: res.FaultP99US, OpsBefore: res.OpsBefore, OpsDuring: res.OpsDuring})
						}
						if len(runs) == 0 {
							continue // every repetition failed: in failures
						}
						cell, err := benchreport.Aggregate(key, rate, runs)
						if err != nil {
							return err
						}
						cells = append(cells, cell)
						obj := cellObject(cell, results)
						obj["sim_costs"] = a.cfg.Sim.Costs
						obj["mtu"] = cmp.Or(b.MTU, 1500)
						objs = append(objs, obj)
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := writeBenchFiles(b.Out, cells); err != nil {
		return withCode(exitFailure, err)
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		for _, o := range objs {
			if err := enc.Encode(o); err != nil {
				return err
			}
		}
	} else {
		fmt.Printf("Simulated hosts' costs: %s\n\n", simCostsHuman[a.cfg.Sim.Costs])
		if err := benchreport.WriteTable(os.Stdout, cells); err != nil {
			return err
		}
		fmt.Printf("\nCSV and charts in %s\n", b.Out)
	}
	if len(failures) > 0 {
		return withCode(exitFailure, fmt.Errorf("%d of %d benchmark runs failed:\n%w", len(failures), total, errors.Join(failures...)))
	}
	return nil
}

// simCostsHuman says what each cost model (sim.costs) stands for.
var simCostsHuman = map[string]string{
	"xen":  "xen, a real Xen host's estimated per-call costs (docs/XEN.md, \"The simulator's costs\")",
	"lab":  "lab, the per-call costs measured in the TCG lab (a real host is faster)",
	"none": "none, this machine's speed (no hypervisor costs)",
}

// benchLink builds the lab for one link rate (0: unshaped), starts the
// destination host in it, with resident memory for a guest of guest bytes
// (sim.resident_memory, unless set), and runs f once it listens; everything
// is removed afterwards.
func (a *app) benchLink(ctx context.Context, self string, rate uint64, delay time.Duration, mtu int, guest conf.Size, f func(lab *netlab.Lab, dest string) error) error {
	if _, err := netlab.RemoveStale(ctx, netlab.DefaultPrefix); err != nil {
		a.log.WithError(err).Warn("could not remove namespaces left by an earlier run")
	}
	lab, err := netlab.New(ctx, netlab.WithRate(rate), netlab.WithDelay(delay), netlab.WithMTU(mtu))
	if err != nil {
		if errors.Is(err, netlab.ErrPermission) {
			return withCode(exitUnsupported, fmt.Errorf("%w\n(xenmig bench creates network namespaces, a veth pair and qdiscs: run it as root)", err))
		}
		return withCode(exitUnsupported, err)
	}
	defer lab.Close()
	a.log.WithFields(map[string]any{"rate_bps": rate, "delay": delay, "mtu": mtu,
		"a": lab.Addr(netlab.A), "b": lab.Addr(netlab.B)}).Info("link ready")

	dest := lab.Addr(netlab.B) + ":8002"
	args := append([]string{"--backend", "sim", "--insecure-plaintext", "--log-level", "error"}, a.simArgs()...)
	if a.cfg.Sim.ResidentMemory == 0 {
		// A Xen host's memory is resident before a page arrives; the
		// receiver faults it in before it listens, not page by page
		// as it installs them (docs/BENCH.md, "Resident memory").
		args = append(args, "--sim-resident-memory", guest.String())
	}
	recv := lab.Command(ctx, netlab.B, self, append(args, "receive", "--listen", dest, "--serve", "--discard", "--json")...)
	recv.Stderr = os.Stderr
	recvOut, err := recv.StdoutPipe()
	if err != nil {
		return withCode(exitFailure, err)
	}
	if err := recv.Start(); err != nil {
		return withCode(exitFailure, fmt.Errorf("start the destination host: %w", err))
	}
	defer func() { recv.Process.Kill(); recv.Wait() }()
	// Its first event says it listens (after faulting its memory in:
	// seconds a GiB here); the rest are not needed, but its pipe is kept
	// drained.
	events := bufio.NewReader(recvOut)
	if _, err := events.ReadString('\n'); err != nil {
		return withCode(exitFailure, fmt.Errorf("the destination host did not start listening (its errors are above): %w", err))
	}
	go io.Copy(io.Discard, events)
	if err := f(lab, dest); err != nil {
		if ctx.Err() != nil {
			return withCode(exitFailure, ctx.Err())
		}
		return withCode(exitFailure, err)
	}
	return nil
}

// benchRunTimeout bounds one migration of the benchmark, so that a stuck
// one is reported instead of stalling the matrix.
const benchRunTimeout = 5 * time.Minute

// benchRun runs one migration in namespace A, from a source host with
// resident memory for the guest (sim.resident_memory, unless set), and
// returns its result.
func (a *app) benchRun(ctx context.Context, lab *netlab.Lab, self, dest string, meth benchMethod, w benchWorkload, size conf.Size, warmup, run time.Duration) (*xenmig.Result, error) {
	args := append([]string{"--backend", "sim", "--insecure-plaintext", "--log-level", "error"}, a.simArgs()...)
	if a.cfg.Sim.ResidentMemory == 0 {
		// The source's too: a Xen domain's memory is all allocated when
		// it is made, and reading a page the guest never touched must
		// not cost the kernel's fault of a zero page (docs/BENCH.md,
		// "Resident memory").
		args = append(args, "--sim-resident-memory", size.String())
	}
	args = append(args, "migrate", "bench", dest, "--json", "--mode", meth.mode,
		"--sim-size", size.String(), "--sim-workload", w.kind, "--sim-warmup", warmup.String())
	if meth.push != "" {
		args = append(args, "--push", meth.push)
	}
	if meth.balloon {
		args = append(args, "--balloon")
	}
	stop := warmup + run
	if w.run > 0 {
		stop = w.run
	}
	args = append(args, "--sim-run", stop.String())
	switch {
	case w.wsDivisor > 0:
		args = append(args, "--sim-working-set", conf.Size(size.Bytes()/w.wsDivisor).String())
	case w.workingSet != "":
		args = append(args, "--sim-working-set", w.workingSet)
	}
	switch w.used {
	case "":
	case "all":
		args = append(args, "--sim-used", size.String())
	default:
		args = append(args, "--sim-used", w.used)
	}
	if w.vcpus > 0 {
		args = append(args, "--sim-vcpus", fmt.Sprint(w.vcpus))
	}
	if w.writePercent >= 0 {
		args = append(args, "--sim-write-percent", fmt.Sprint(w.writePercent))
	}
	if w.sweep {
		args = append(args, "--sim-sweep")
	}
	if w.rate > 0 {
		args = append(args, "--sim-rate", fmt.Sprint(w.rate))
	}
	ctx, cancel := context.WithTimeout(ctx, benchRunTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	c := lab.Command(ctx, netlab.A, self, args...)
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var res xenmig.Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("decode the migration's JSON: %w", err)
	}
	return &res, nil
}

// cellObject is a cell as one JSON object: the migration JSON's keys,
// numbers averaged over the repetitions, plus the link rate and the floor.
func cellObject(c benchreport.Cell, results []*xenmig.Result) map[string]any {
	obj := map[string]any{}
	counts := map[string]int{}
	for _, r := range results {
		b, _ := json.Marshal(r)
		var m map[string]any
		json.Unmarshal(b, &m)
		for k, v := range m {
			switch v := v.(type) {
			case float64:
				sum, _ := obj[k].(float64)
				obj[k] = sum + v
				counts[k]++
			default:
				if _, ok := obj[k]; !ok {
					obj[k] = v
				}
			}
		}
	}
	for k, n := range counts {
		obj[k] = obj[k].(float64) / float64(n)
	}
	obj["balloon"] = c.Balloon
	obj["workload"] = c.Workload
	obj["guest_bytes"] = c.GuestBytes
	obj["reps"] = c.Reps
	obj["rate_bps"] = c.RateBPS
	obj["floor_ms"] = c.FloorMS
	obj["gb_per_s"] = c.GBps()
	if c.FloorMS > 0 {
		obj["total_over_floor"] = c.OverFloor()
	}
	match := len(results) > 0
	for _, r := range results {
		match = match && r.DigestMatch != nil && *r.DigestMatch
	}
	obj["digest_match"] = match
	return obj
}

// writeBenchFiles writes results.csv and the charts into dir.
func writeBenchFiles(dir string, cells []benchreport.Cell) error {
	f, err := os.Create(filepath.Join(dir, "results.csv"))
	if err != nil {
		return err
	}
	if err := benchreport.WriteCSV(f, cells); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	for _, ch := range benchreport.Charts(cells) {
		f, err := os.Create(filepath.Join(dir, ch.Name+".svg"))
		if err != nil {
			return err
		}
		if err := benchreport.WriteSVG(f, ch); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}
