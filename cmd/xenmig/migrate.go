package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/xenmig/xenmig/conf"
	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenctrl/sim"
	"github.com/xenmig/xenmig/xenmig"
)

// planFlags are the migration choices a command line may override.
type planFlags struct {
	mode, push string
	pivots     int
	streams    int
	bandwidth  string
	balloon    bool
	noEarly    bool
	json       bool
}

func (f *planFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.mode, "mode", "", "precopy, postcopy or hybrid (default: migration.mode, postcopy)")
	fs.StringVar(&f.push, "push", "", "post-copy push order: demand, sequential, prepaging or workingset (default: migration.push)")
	fs.IntVar(&f.pivots, "pivots", 0, "pre-paging pivots (default: migration.pivots, 7)")
	fs.IntVar(&f.streams, "streams", 0, "TCP connections carrying pages in parallel, 1-16 (default: migration.streams; 0 there: one per CPU up to 4, 1 under 2.4 Gbit/s of --bandwidth)")
	fs.StringVar(&f.bandwidth, "bandwidth", "", `limit the migration's rate, e.g. "500mbit" or "100MiB/s" (default: migration.bandwidth, unlimited)`)
	fs.BoolVar(&f.balloon, "balloon", false, "ask the guest's self-ballooning agent to give back free memory first")
	fs.BoolVar(&f.noEarly, "no-early-push", false, "post-copy: send no page while the destination prepares (its preparation then does not overlap the transfer)")
	fs.BoolVar(&f.json, "json", false, "print the result as one JSON object on standard output")
}

// plan is the configured plan with the flags on top.
func (f *planFlags) plan(a *app) (xenmig.Plan, error) {
	c := planChoices{mode: xenmig.Mode(f.mode), push: xenmig.Push(f.push), pivots: f.pivots, streams: f.streams, balloon: f.balloon, noEarly: f.noEarly}
	if f.bandwidth != "" {
		var r conf.Rate
		if err := r.UnmarshalText([]byte(f.bandwidth)); err != nil {
			return xenmig.Plan{}, withCode(exitUsage, fmt.Errorf("--bandwidth: %w", err))
		}
		c.bandwidth = int64(r.BytesPerSecond())
	}
	p, err := c.over(a.plan())
	return p, withCode(exitUsage, err)
}

// planChoices are one migration's choices over the [migration]
// configuration: from the migrate and demo flags, or a plugin request. Zero
// values keep the configured ones.
type planChoices struct {
	mode      xenmig.Mode
	push      xenmig.Push
	pivots    int
	streams   int
	bandwidth int64 // bytes per second
	balloon   bool
	noEarly   bool // no early push
}

// over returns p with the choices on top, validated. Choosing hybrid
// without a push order pushes the working set first.
func (c planChoices) over(p xenmig.Plan) (xenmig.Plan, error) {
	if c.mode != "" {
		p.Mode = c.mode
		if c.push == "" && p.Mode == xenmig.Hybrid && p.Push == xenmig.PushPrepaging {
			p.Push = xenmig.PushWorkingSet
		}
	}
	if c.push != "" {
		p.Push = c.push
	}
	if c.pivots != 0 {
		p.Pivots = c.pivots
	}
	if c.streams != 0 {
		p.Streams = c.streams
	}
	if c.bandwidth != 0 {
		p.Bandwidth = c.bandwidth
	}
	p.Balloon = p.Balloon || c.balloon
	p.EarlyPush = p.EarlyPush && !c.noEarly
	return p, p.Validate()
}

// guestFlags describe the simulated guest a command boots.
type guestFlags struct {
	memory, used, workload string
	workingSet             string
	writePercent           int
	sweep                  bool
	vcpus                  int
	seed                   uint64
	rate                   float64
	run, warmup            time.Duration
}

func (f *guestFlags) register(fs *pflag.FlagSet, prefix string, run, warmup time.Duration) {
	fs.StringVar(&f.memory, prefix+"size", "", "simulated guest memory, e.g. 1G or 256M (binary, as xl's memory=; 1GB is 10^9 bytes) (default: sim.guest.memory)")
	fs.StringVar(&f.used, prefix+"used", "", "memory in use at boot, e.g. 300M (default: sim.guest.used)")
	fs.StringVar(&f.workload, prefix+"workload", "", "workload: idle, stress, kcompile, web, qsort (default: sim.guest.workload)")
	fs.IntVar(&f.vcpus, prefix+"vcpus", 0, "vCPUs (default: sim.guest.vcpus)")
	fs.StringVar(&f.workingSet, prefix+"working-set", "", "memory the workload works on, e.g. 512M (default: the workload's own)")
	fs.IntVar(&f.writePercent, prefix+"write-percent", -1, "share of stress accesses that write, 0-100 (default: the workload's own)")
	fs.BoolVar(&f.sweep, prefix+"sweep", false, "stress: sweep the working set in order instead of at random (spatial locality, as a scan or a copy has)")
	fs.Uint64Var(&f.seed, prefix+"seed", 0, "workload seed (default: sim.guest.seed)")
	fs.Float64Var(&f.rate, prefix+"rate", 0, "steps per second per vCPU (default: the workload's own pace)")
	fs.DurationVar(&f.run, prefix+"run", run, "how long the guest runs in all, at its pace, before it stops and its memory is checked (0: forever, no check)")
	fs.DurationVar(&f.warmup, prefix+"warmup", warmup, "how long the guest runs before the migration starts")
}

// spec builds the guest from the [sim.guest] configuration and the flags;
// with balloon, the guest runs the self-ballooning agent.
func (f *guestFlags) spec(a *app, name string, balloon bool) (sim.GuestSpec, error) {
	g := a.cfg.Sim.Guest
	var workingSet conf.Size
	for _, s := range []struct {
		flag, val string
		dst       *conf.Size
	}{{"size", f.memory, &g.Memory}, {"used", f.used, &g.Used}, {"working-set", f.workingSet, &workingSet}} {
		if s.val != "" {
			if err := s.dst.UnmarshalText([]byte(s.val)); err != nil {
				return sim.GuestSpec{}, withCode(exitUsage, fmt.Errorf("--%s: %w", s.flag, err))
			}
		}
	}
	if f.workload != "" {
		g.Workload = f.workload
	}
	if f.vcpus != 0 {
		g.VCPUs = f.vcpus
	}
	if f.seed != 0 {
		g.Seed = f.seed
	}
	switch {
	case g.Memory == 0:
		return sim.GuestSpec{}, withCode(exitUsage, errors.New("--size must be more than 0"))
	case g.Memory%conf.Size(hypervisor.PageSize) != 0:
		return sim.GuestSpec{}, withCode(exitUsage, fmt.Errorf("--size %v is not a whole number of 4 KiB pages", g.Memory))
	case g.Used > g.Memory:
		return sim.GuestSpec{}, withCode(exitUsage, fmt.Errorf("--used %v is more than the guest's memory (--size) %v", g.Used, g.Memory))
	}
	spec := sim.GuestSpec{
		Name:        name,
		VCPUs:       g.VCPUs,
		MemoryPages: g.Memory.Pages(),
		UsedPages:   g.Used.Pages(),
		Seed:        g.Seed,
		Workload:    sim.DefaultWorkload(sim.Kind(g.Workload), g.Memory.Pages()),
		// As a Linux PVH guest on real Xen: its resume registers its
		// vcpu_info again, so post-copy sends its resume set.
		PVResume: true,
	}
	if f.rate > 0 {
		spec.Workload.Rate = f.rate
	}
	if balloon {
		spec.Balloond = &sim.BalloondSpec{} // the guest runs xenmig-balloond
	}
	if f.workingSet != "" {
		spec.Workload.WorkingSet = workingSet.Pages()
	}
	if f.writePercent >= 0 {
		spec.Workload.WritePercent = f.writePercent
	}
	if f.sweep {
		spec.Workload.Random = false
	}
	if f.run > 0 {
		spec.StopAt = uint64(spec.Workload.Rate * f.run.Seconds())
	}
	if err := sim.ValidateSpec(spec); err != nil {
		return spec, withCode(exitUsage, err)
	}
	return spec, nil
}

func newMigrateCommand(a *app) *cobra.Command {
	var pf planFlags
	var gf guestFlags
	var sf sshFlags
	cmd := &cobra.Command{
		Use:   "migrate DOMAIN HOST[:PORT]",
		Short: "Move a running domain to HOST, as xl migrate does: over ssh, or to a receive daemon",
		Long: `Move DOMAIN to HOST. The domain keeps running here until the destination holds
its vCPU state; any failure before that leaves it running here, unchanged.

As ` + "`xl migrate DOMAIN HOST`" + `, it needs nothing on HOST but the xenmig binary
and ssh access from here: it runs ` + "`ssh HOST xenmig receive`" + ` for this one
migration. Only a one-time key fingerprint for each side crosses the ssh
channel; the migration's own TCP connections use mutual TLS pinned to those
one-time keys (no CA), so ssh's cipher never caps the rate. The receiver
listens on the address ssh reached HOST on, on a free port.

A ` + "`xenmig receive --serve`" + ` daemon on HOST is used instead when HOST names a
port (HOST:PORT), or when [tls] certificates are configured and a daemon
answers on HOST's port migration.port (8002); -s always means ssh. --debug
prints how the choice was made.

Flags from xl migrate:
  -s SSHCOMMAND  use SSHCOMMAND instead of ssh, passed to sh; -s "" runs HOST
                 itself as the receiving command (e.g. "xenmig receive --ssh-session")
  -C CONFIG      build the destination from this xl configuration file instead
                 of the domain's own (xen backend)
  -p             leave the domain paused on the destination once all its memory
                 is there
  --debug        print the debugging log of both sides

With the simulated backend, DOMAIN is first booted here as a simulated guest
(the --sim-* flags and [sim.guest]), run for --sim-warmup, then migrated; if
--sim-run is set the destination runs it to its end and the result says whether
its memory equals an unmigrated run's.

` + exitCodesHelp,
		Example: `  xenmig migrate web01 hostB                      # over ssh, as xl migrate web01 hostB
  xenmig migrate web01 root@hostB -s "ssh -p 2222" -p
  xenmig migrate web01 hostB:8002 --mode hybrid --bandwidth 500mbit --json   # to a daemon
  xenmig --backend sim migrate demo 127.0.0.1:8002 --sim-workload web --sim-size 512MiB`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if sf.debug {
				a.log.SetLevel(logrus.DebugLevel)
				a.cfg.Log.Level = "debug"
			}
			plan, err := pf.plan(a)
			if err != nil {
				return err
			}
			if sf.config != "" && a.cfg.Backend != conf.BackendXen {
				return withCode(exitUsage, fmt.Errorf("-C names an xl configuration file: it needs the xen backend, not %s", a.cfg.Backend))
			}
			ctx, host := cmd.Context(), args[1]
			rt := a.chooseRoute(ctx, host, cmd.Flags().Changed("ssh-command"))
			if !rt.ssh {
				if _, err := a.destination(rt.addr); err != nil {
					return err // a port out of range is a bad argument
				}
			}
			a.log.WithField("host", host).Debug(rt.why)
			if !rt.ssh && sf.paused {
				return withCode(exitUsage, errors.New("-p needs the receiver started over ssh (-s), which leaves the domain paused; a daemon takes `xenmig receive --paused`"))
			}
			hv, closeHV, err := a.openBackend()
			if err != nil {
				return err
			}
			defer closeHV()
			if sf.config != "" {
				if hv, err = withConfigFile(hv, sf.config); err != nil {
					return withCode(exitUsage, err)
				}
			}
			var ssh *sshReceiver
			connect := func(ctx context.Context) (string, xenmig.Transport, error) {
				if !rt.ssh {
					t, err := a.transport(false)
					return rt.addr, t, err
				}
				var err error
				ssh, err = a.startSSHReceiver(ctx, sf, host)
				if err != nil {
					return "", xenmig.Transport{}, err
				}
				return ssh.addr, ssh.t, nil
			}
			res, err := a.migrate(ctx, hv, plan, args[0], connect, &gf, pf.json)
			if ssh != nil {
				if werr := ssh.wait(err); werr != nil && err == nil {
					err = withCode(exitFailure, werr)
				}
			}
			if res != nil {
				if perr := printResult(res, pf.json); perr != nil && err == nil {
					err = perr
				}
			}
			return err
		},
	}
	pf.register(cmd.Flags())
	gf.register(cmd.Flags(), "sim-", 0, time.Second)
	fs := cmd.Flags()
	fs.StringVarP(&sf.command, "ssh-command", "s", "ssh", `as xl migrate -s: the ssh command, passed to sh; "" runs HOST itself as the receiving command`)
	fs.StringVar(&sf.remote, "remote-xenmig", "xenmig", "the xenmig binary on HOST, when ssh starts the receiver")
	fs.StringVarP(&sf.config, "config-file", "C", "", "as xl migrate -C: build the destination from this xl configuration file (xen backend)")
	fs.BoolVarP(&sf.paused, "paused", "p", false, "as xl migrate -p: leave the domain paused on the destination (receiver started over ssh)")
	fs.BoolVar(&sf.debug, "debug", false, "as xl migrate --debug: debugging log of both sides, and how the receiver was chosen")
	return cmd
}

// migrate moves the domain called name to addr. On the simulator it first
// boots the guest (and, when it will run to an end, the unmigrated reference
// whose digest the result is checked against).
// connect, called once the domain is found and before anything is sent,
// returns the destination's address and how to connect to it; its failure
// leaves the domain running here.
func (a *app) migrate(ctx context.Context, hv hypervisor.Hypervisor, plan xenmig.Plan, name string,
	connect func(context.Context) (string, xenmig.Transport, error), gf *guestFlags, quiet bool) (*xenmig.Result, error) {
	var reference *hypervisor.Digest
	if h, ok := hv.(*sim.Host); ok {
		spec, err := gf.spec(a, name, plan.Balloon)
		if err != nil {
			return nil, err
		}
		if reference, err = a.bootSimGuest(ctx, h, spec, gf.warmup); err != nil {
			if ctx.Err() != nil {
				return nil, withCode(exitNotMoved, err)
			}
			return nil, withCode(exitFailure, err)
		}
		plan.ReportGuest = reference != nil
	}
	dom, err := hv.Lookup(name)
	if err != nil {
		return nil, withCode(exitNotMoved, fmt.Errorf("domain %q: %w (see `xenmig list`)", name, err))
	}
	addr, t, err := connect(ctx)
	if err != nil {
		if ee := new(exitError); !errors.As(err, &ee) {
			err = withCode(exitNotMoved, err)
		}
		if h, ok := hv.(*sim.Host); ok && reference != nil {
			a.checkLocalRun(ctx, h, dom, *reference)
		}
		return nil, err
	}
	opts := []xenmig.Option{xenmig.WithLogger(a.log.WithField("side", "source")), xenmig.WithTransport(t)}
	waiting := ""
	if plan.ReportGuest {
		waiting = "waiting for the destination to run the guest to the end of its run and report its memory digest"
	}
	show, done := progressReporter(os.Stderr, a.log, waiting)
	if quiet && !isTerminal(os.Stderr) {
		show, done = func(xenmig.Progress) {}, func() {}
	}
	opts = append(opts, xenmig.WithProgress(show, 100*time.Millisecond))
	res, err := xenmig.Migrate(ctx, hv, dom, addr, plan, opts...)
	done()
	if err != nil {
		err = migrationExit(err)
		if h, ok := hv.(*sim.Host); ok && reference != nil && !errors.Is(err, xenmig.ErrCommitted) {
			a.checkLocalRun(ctx, h, dom, *reference)
		}
		return nil, err
	}
	if reference != nil {
		if res.Digest == "" {
			// Interrupted, or the destination could not say: no verdict.
			return res, reportedWithCode(exitFailure, errors.New("the destination reported no memory digest of the guest's run (interrupted, or its run did not end there): its memory was not checked"))
		}
		match := res.Digest == reference.String()
		res.DigestMatch = &match
		if !match {
			return res, reportedWithCode(exitDigest, fmt.Errorf("memory digest %s differs from the unmigrated run's %s", res.Digest, reference))
		}
	}
	return res, nil
}

// bootSimGuest boots spec on the simulated host and lets it run for warmup.
// When the guest runs to an end, it first computes the memory digest of the
// same run without migration and returns it, for the result to be checked
// against.
func (a *app) bootSimGuest(ctx context.Context, h *sim.Host, spec sim.GuestSpec, warmup time.Duration) (*hypervisor.Digest, error) {
	var reference *hypervisor.Digest
	if spec.StopAt > 0 {
		a.log.WithField("steps", spec.StopAt).Info("computing the digest of an unmigrated reference run")
		d, err := sim.ReferenceDigest(ctx, spec)
		if err != nil {
			return nil, fmt.Errorf("reference run of %s: %w", spec.Name, err)
		}
		reference = &d
	}
	dom, err := h.CreateDomain(spec)
	if err == nil {
		err = h.Unpause(dom)
	}
	if err != nil {
		return nil, fmt.Errorf("boot simulated guest %s: %w", spec.Name, err)
	}
	a.log.WithFields(map[string]any{"domain": spec.Name, "memory_pages": spec.MemoryPages,
		"workload": spec.Workload.Kind, "warmup": warmup}).Info("simulated guest booted")
	select {
	case <-time.After(warmup):
		return reference, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("warming up %s: %w", spec.Name, ctx.Err())
	}
}

// checkLocalRun follows a simulated guest that a failed migration left
// running here to the end of its run and says whether its memory is still
// exactly the unmigrated run's: the proof that the failure lost nothing.
func (a *app) checkLocalRun(ctx context.Context, h *sim.Host, dom hypervisor.DomID, reference hypervisor.Digest) {
	a.log.Info("the domain is still running here; following it to the end of its run")
	var d hypervisor.Digest
	err := h.WaitDone(ctx, dom)
	if err == nil {
		d, err = h.Digest(dom)
	}
	if err != nil {
		a.log.WithError(err).Error("could not check the domain's memory")
		return
	}
	fields := map[string]any{"digest": d.String(), "reference": reference.String()}
	if d != reference {
		a.log.WithFields(fields).Error("the domain's memory differs from the unmigrated run's")
		return
	}
	a.log.WithFields(fields).Info("the domain finished its run here with the unmigrated run's memory: nothing was lost")
}

// failureReport is what `--json` prints on standard output when a command
// fails, so scripts get an object either way.
type failureReport struct {
	Error    string `json:"error"`
	ExitCode int    `json:"exit_code"`
}

// printResult writes the result as JSON or as a table on standard output.
func printResult(res *xenmig.Result, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	return res.WriteTable(os.Stdout)
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
