package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/spf13/cobra"

	"github.com/xenmig/xenmig/conf"
	"github.com/xenmig/xenmig/xenmig"
)

func newDemoCommand(a *app) *cobra.Command {
	var pf planFlags
	var gf guestFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Post-copy migration between two local simulated hosts, with progress and the result table",
		Long: `Start a second xenmig process as a simulated destination host, boot a
simulated guest here (1 GiB, a busy workload by default), let it run, migrate
it (post-copy by default) with a progress bar, and print the measures. The
destination runs the guest to its end; its memory digest must equal that of
the same guest run without migration, which proves nothing was lost.`,
		Example: `  xenmig demo
  xenmig demo --size 2G --workload web --mode hybrid
  xenmig demo --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a.cfg.Backend = conf.BackendSim
			a.cfg.TLS.InsecurePlaintext = true // both ends are on loopback
			plan, err := pf.plan(a)
			if err != nil {
				return err
			}
			if gf.run <= 0 {
				return withCode(exitUsage, fmt.Errorf("--run must be positive: the demo checks the guest's memory at its end"))
			}
			ctx := cmd.Context()
			addr, wait, err := startReceiver(ctx, a)
			if err != nil {
				return withCode(exitFailure, err)
			}
			hv, err := a.simHost()
			if err != nil {
				return err
			}
			defer hv.Close()
			connect := func(context.Context) (string, xenmig.Transport, error) { return addr, xenmig.Transport{}, nil }
			res, err := a.migrate(ctx, hv, plan, "demo", connect, &gf, pf.json)
			if werr := wait(); werr != nil && err == nil {
				err = withCode(exitFailure, fmt.Errorf("destination process: %w", werr))
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
	gf.register(cmd.Flags(), "", 6*time.Second, 1500*time.Millisecond)
	return cmd
}

// startReceiver runs `xenmig receive` on a simulated host in a child process,
// listening on a free loopback port, and returns its address and a function
// that waits for it to exit.
func startReceiver(ctx context.Context, a *app) (string, func() error, error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("find own executable: %w", err)
	}
	args := append([]string{"--backend", "sim", "--insecure-plaintext", "--log-level", "warn"}, a.simArgs()...)
	args = append(args, "receive", "--listen", "127.0.0.1:0", "--json")
	child := exec.CommandContext(ctx, self, args...)
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := child.Start(); err != nil {
		return "", nil, fmt.Errorf("start the destination host: %w", err)
	}
	lines := bufio.NewScanner(out)
	var ev receiveEvent
	if !lines.Scan() || json.Unmarshal(lines.Bytes(), &ev) != nil || ev.Event != "listening" {
		child.Process.Kill()
		child.Wait()
		return "", nil, fmt.Errorf("the destination host did not start listening")
	}
	a.log.WithFields(map[string]any{"addr": ev.Addr, "pid": child.Process.Pid}).Info("destination host started")
	wait := func() error {
		go func() {
			for lines.Scan() { // drain the remaining events
			}
		}()
		done := make(chan error, 1)
		go func() { done <- child.Wait() }()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			child.Process.Kill()
			return fmt.Errorf("did not exit after the migration")
		}
	}
	return ev.Addr, wait, nil
}
