// Command xenmig is the dom0 side of xenmig: it migrates domains (post-copy,
// pre-copy or hybrid), receives them, and runs the demo and the benchmark on
// simulated hosts.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/xenmig/xenmig/conf"
	"github.com/xenmig/xenmig/internal/logging"
	"github.com/xenmig/xenmig/internal/metrics"
)

// Exit codes scripts can act on.
const (
	exitOK          = 0
	exitFailure     = 1 // anything else
	exitUsage       = 2 // bad flags, arguments or configuration
	exitNotMoved    = 3 // failed before the switchover: the domain still runs on the source
	exitCommitted   = 4 // failed after the switchover: the domain needs attention on both hosts
	exitDigest      = 5 // the migrated guest's memory differs from the unmigrated run's
	exitUnsupported = 6 // this host cannot do what was asked (no Xen, no mem_paging)
)

const exitCodesHelp = `Exit codes:
  0  success
  1  failure
  2  bad flags, arguments or configuration
  3  migration failed before the switchover: the domain still runs on the source, unchanged
  4  migration failed after the switchover: the source keeps its copy paused (renamed
     <name>--migratedaway); the destination has the domain, paused if memory is owed
  5  the migrated guest's memory digest differs from the unmigrated run's (simulator)
  6  this host cannot do it: no Xen hypervisor, or no mem_paging (use --mode precopy)`

// exitError carries an exit code with the error that caused it.
type exitError struct {
	code     int
	err      error
	reported bool // the command already printed its JSON result
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// reportedWithCode is withCode for a command that has already printed its
// result (with --json, the one object on stdout): main adds no failure
// object after it.
func reportedWithCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err, reported: true}
}

// app is what every command shares: the configuration and the logger.
type app struct {
	configPath string
	logLevel   string
	backend    string
	plaintext  bool
	simCosts   string
	simMemory  string
	cfg        conf.Config
	log        *logrus.Logger
	metrics    *metrics.Receiver // the receiver's metrics, when served

	cpuProfile, memProfile, traceFile string   // --cpuprofile, --memprofile, --trace
	cpuProfileFile, traceOut          *os.File // while the CPU profile or the trace runs
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	root, a := newRootCommand()
	cmd, err := root.ExecuteContextC(ctx)
	a.stopProfiles()
	stop()
	if err == nil {
		os.Exit(exitOK)
	}
	fmt.Fprintln(os.Stderr, "xenmig:", err)
	code, reported := exitUsage, false // cobra's own errors: unknown flags and commands
	var ee *exitError
	if errors.As(err, &ee) {
		code, reported = ee.code, ee.reported
	}
	// A script that asked for JSON gets one object on failure too: the
	// command's result if it printed one, else this.
	if f := cmd.Flags().Lookup("json"); f != nil && f.Value.String() == "true" && !reported {
		json.NewEncoder(os.Stdout).Encode(failureReport{Error: err.Error(), ExitCode: code})
	}
	os.Exit(code)
}

func newRootCommand() (*cobra.Command, *app) {
	a := &app{}
	root := &cobra.Command{
		Use:   "xenmig",
		Short: "Post-copy live migration of Xen domains",
		Long: `xenmig moves a running Xen domain to another host. In post-copy mode (the
default) the vCPU state goes first and the domain resumes on the destination
at once; its memory follows, pushed in the background and fetched on demand
when the guest touches a page that has not arrived (Xen mem_paging), with
pre-paging around recent faults. Pre-copy and hybrid modes exist too.

Without Xen (no /dev/xen/privcmd) every command runs on a simulated Xen host.

` + exitCodesHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.setup(); err != nil {
				return err
			}
			return a.startProfiles()
		},
	}
	root.PersistentFlags().StringVarP(&a.configPath, "config", "c", os.Getenv("XENMIG_CONFIG"),
		"TOML configuration file (default: built-in defaults; env XENMIG_CONFIG)")
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", "", "log level: debug, info, warn, error (overrides log.level)")
	root.PersistentFlags().StringVar(&a.backend, "backend", "", `hypervisor backend: "xen" or "sim" (overrides backend)`)
	root.PersistentFlags().BoolVar(&a.plaintext, "insecure-plaintext", false,
		"plain TCP without TLS (tls.insecure_plaintext): for loopback tests only")
	root.PersistentFlags().StringVar(&a.simCosts, "sim-costs", "",
		`simulated hosts' cost model: "xen" (a real Xen host's estimated costs), "lab" (the TCG lab's), "none" (this machine's speed) (overrides sim.costs)`)
	root.PersistentFlags().StringVar(&a.simMemory, "sim-resident-memory", "",
		`memory a simulated host faults in at start and gives its domains, as a Xen host's RAM is resident, e.g. "1G" (overrides sim.resident_memory)`)
	root.PersistentFlags().StringVar(&a.cpuProfile, "cpuprofile", "", "write a CPU profile of this command to FILE (go tool pprof)")
	root.PersistentFlags().StringVar(&a.memProfile, "memprofile", "", "write a memory profile (allocations and heap) of this command to FILE at its end")
	root.PersistentFlags().StringVar(&a.traceFile, "trace", "", "write an execution trace of this command to FILE (go tool trace): where wall time goes that a CPU profile does not show, such as waits on the network")
	root.AddCommand(newMigrateCommand(a), newReceiveCommand(a), newListCommand(a),
		newDemoCommand(a), newDoctorCommand(a), newBenchCommand(a), newPluginCommand(a), newCertsCommand())
	return root, a
}

// setup loads the configuration and builds the logger.
func (a *app) setup() error {
	a.cfg = conf.Default()
	if a.configPath != "" {
		c, err := conf.Load(a.configPath)
		if err != nil {
			return withCode(exitUsage, err)
		}
		a.cfg = c
	}
	if a.logLevel != "" {
		a.cfg.Log.Level = a.logLevel
	}
	if a.backend != "" {
		a.cfg.Backend = conf.Backend(a.backend)
	}
	if a.plaintext {
		a.cfg.TLS.InsecurePlaintext = true
	}
	if a.simCosts != "" {
		a.cfg.Sim.Costs = a.simCosts
	}
	if a.simMemory != "" {
		if err := a.cfg.Sim.ResidentMemory.UnmarshalText([]byte(a.simMemory)); err != nil {
			return withCode(exitUsage, fmt.Errorf("--sim-resident-memory: %w", err))
		}
	}
	if err := a.cfg.Validate(); err != nil {
		return withCode(exitUsage, err)
	}
	l, err := logging.New(a.cfg.Log.Level, a.cfg.Log.Format, os.Stderr)
	if err != nil {
		return withCode(exitUsage, err)
	}
	a.log = l
	return nil
}
