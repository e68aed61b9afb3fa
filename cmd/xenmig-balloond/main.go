// Command xenmig-balloond is xenmig's in-guest dynamic self-ballooning
// agent for Linux domUs. Every interval it sets the Xen balloon target to
// what the guest needs (the larger of Committed_AS and the memory in use,
// plus a reserve, with hysteresis and a floor), reports in xenstore under
// data/xenmig/balloon, and squeezes the guest to its smallest safe size
// when dom0 migrates it (control key control/xenmig/migrate). See
// docs/BALLOON.md.
//
// Usage:
//
//	xenmig-balloond [-config /etc/xenmig/balloond.toml] [-interval 5s]
//	                [-root /] [-xenstore path|none] [-log-level info]
//	                [-log-format text|json] [-dry-run] [-check]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/xenmig/xenmig/pvdriver"
)

// Exit statuses: 0 clean stop, 1 runtime failure, 2 bad flags or
// configuration, 3 not a suitable Xen guest (no balloon driver or no
// xenstore). The systemd unit does not restart on 2 and 3.
const (
	exitFailure   = 1
	exitUsage     = 2
	exitNotAGuest = 3
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("xenmig-balloond", flag.ContinueOnError)
	fl.SetOutput(stderr)
	configPath := fl.String("config", DefaultConfigPath, "TOML configuration `file` (optional at the default path)")
	interval := fl.Duration("interval", 0, "tick interval (overrides the config; default 5s)")
	root := fl.String("root", "", "root `dir` under which sys/ and proc/ are found (overrides the config)")
	xs := fl.String("xenstore", "", "xenstore device or socket `path`, or none (overrides the config)")
	level := fl.String("log-level", "", "log level: debug, info, warn, error (overrides the config)")
	format := fl.String("log-format", "", "log format: text or json (overrides the config)")
	dryRun := fl.Bool("dry-run", false, "compute and report targets, never write the balloon")
	check := fl.Bool("check", false, "check access to the balloon, meminfo and xenstore, print one decision and exit")
	if err := fl.Parse(args); err != nil {
		return exitUsage
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "xenmig-balloond: unexpected arguments %q\n", fl.Args())
		return exitUsage
	}
	set := map[string]bool{}
	fl.Visit(func(f *flag.Flag) { set[f.Name] = true })

	cfg, err := LoadConfig(*configPath, set["config"])
	if err != nil {
		fmt.Fprintf(stderr, "xenmig-balloond: %v\n", err)
		return exitUsage
	}
	if set["interval"] {
		cfg.Interval = *interval
	}
	if set["root"] {
		cfg.Root = *root
	}
	if set["xenstore"] {
		cfg.Xenstore = *xs
	}
	if set["log-level"] {
		cfg.LogLevel = *level
	}
	if set["log-format"] {
		cfg.LogFormat = *format
	}
	if *dryRun {
		cfg.DryRun = true
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "xenmig-balloond: %v\n", err)
		return exitUsage
	}

	log := logrus.New()
	log.Out = stderr
	lvl, _ := logrus.ParseLevel(cfg.LogLevel)
	log.SetLevel(lvl)
	if cfg.LogFormat == "json" {
		log.SetFormatter(&logrus.JSONFormatter{})
	}

	balloon, err := pvdriver.OpenSysfsBalloon(cfg.Root)
	if err != nil {
		log.WithError(err).Error("cannot start")
		return exitNotAGuest
	}
	mem := pvdriver.NewProcMeminfo(cfg.Root)
	if _, err := mem.MemInfo(); err != nil {
		log.WithError(err).Error("cannot start")
		return exitFailure
	}
	var store pvdriver.Store
	if cfg.Xenstore != "none" {
		c, err := pvdriver.OpenXenstore(cfg.Xenstore)
		if err != nil {
			log.WithError(err).Error("cannot start (set xenstore = \"none\" to self-balloon without dom0's squeeze protocol)")
			return exitNotAGuest
		}
		c.Timeout = 10 * time.Second
		defer c.Close()
		store = c
	}

	if *check {
		return checkOnce(cfg, balloon, mem, store, stdout, stderr)
	}

	agent, err := pvdriver.NewAgent(cfg.AgentConfig(), balloon, mem, store, log)
	if err != nil {
		log.WithError(err).Error("cannot start")
		return exitFailure
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx); err != nil {
		log.WithError(err).Error("agent failed")
		return exitFailure
	}
	return 0
}

// checkOnce prints what the agent sees and what it would do now.
func checkOnce(cfg Config, b pvdriver.Balloon, m pvdriver.MemSource, s pvdriver.Store, stdout, stderr io.Writer) int {
	mi, err := m.MemInfo()
	if err != nil {
		fmt.Fprintf(stderr, "xenmig-balloond: %v\n", err)
		return exitFailure
	}
	target, err := b.TargetKiB()
	if err != nil {
		fmt.Fprintf(stderr, "xenmig-balloond: %v\n", err)
		return exitFailure
	}
	current, err := b.CurrentKiB()
	if err != nil {
		fmt.Fprintf(stderr, "xenmig-balloond: %v\n", err)
		return exitFailure
	}
	ceiling := cfg.MaxKiB
	xsState := "disabled"
	if s != nil {
		xsState = "ok"
		if ceiling == 0 {
			if v, err := s.Read(pvdriver.MemoryTargetKey); err == nil {
				fmt.Sscan(v, &ceiling)
			} else if !errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(stderr, "xenmig-balloond: %v\n", err)
				return exitFailure
			}
		}
	}
	if ceiling == 0 {
		ceiling = target
	}
	in := pvdriver.Inputs{CommittedKiB: mi.CommittedKiB, UsedKiB: mi.UsedKiB(current), CurrentKiB: target, MaxKiB: ceiling}
	d := pvdriver.Target(in, cfg.Policy)
	fmt.Fprintf(stdout, "balloon:   target %d KiB, current %d KiB\n", target, current)
	fmt.Fprintf(stdout, "meminfo:   MemTotal %d KiB, MemAvailable %d KiB, Committed_AS %d KiB, in use %d KiB\n",
		mi.MemTotalKiB, mi.MemAvailableKiB, mi.CommittedKiB, in.UsedKiB)
	fmt.Fprintf(stdout, "xenstore:  %s\n", xsState)
	fmt.Fprintf(stdout, "ceiling:   %d KiB\n", ceiling)
	fmt.Fprintf(stdout, "decision:  target %d KiB, change %v (%s)\n", d.TargetKiB, d.Change, d.Reason)
	in.Squeeze = true
	fmt.Fprintf(stdout, "squeezed:  target %d KiB\n", pvdriver.Target(in, cfg.Policy).TargetKiB)
	return 0
}
