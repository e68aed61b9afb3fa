package netlab

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// Cmd is a command that runs inside one of the lab's namespaces. Use it as
// an exec.Cmd; Start, Run, Output and CombinedOutput start the process
// inside the namespace.
type Cmd struct {
	*exec.Cmd
	ns string // the namespace's name
}

// Command returns a command that runs name inside side's namespace. The
// process is killed (with its process group) when ctx is done, when the
// calling process dies, and when the lab is torn down.
func (l *Lab) Command(ctx context.Context, side Side, name string, args ...string) *Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	return &Cmd{Cmd: cmd, ns: l.ns[side]}
}

// Start starts the process inside the namespace: from an OS thread moved
// into it, so the child is born there (the program is exec'd directly, as
// `ip netns exec` does).
func (c *Cmd) Start() error {
	ns, err := netns.GetFromName(c.ns)
	if err != nil {
		return fmt.Errorf("netlab: open network namespace %s: %w", c.ns, err)
	}
	defer ns.Close()
	started := false
	err = onLockedThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("netlab: enter network namespace %s: %w", c.ns, err)
		}
		if err := c.Cmd.Start(); err != nil {
			return err
		}
		started = true
		return nil
	})
	if err != nil && started {
		// The thread could not leave the namespace and is gone; Pdeathsig
		// has killed the child with it.
		c.Cmd.Process.Kill()
		c.Cmd.Wait()
	}
	return err
}

// Run starts the command inside the namespace and waits for it.
func (c *Cmd) Run() error {
	if err := c.Start(); err != nil {
		return err
	}
	return c.Wait()
}

// Output runs the command and returns its standard output; as
// exec.Cmd.Output, an *exec.ExitError carries its standard error when
// Stderr was not set.
func (c *Cmd) Output() ([]byte, error) {
	if c.Stdout != nil {
		return nil, errors.New("netlab: Stdout already set")
	}
	var stdout, stderr strings.Builder
	c.Stdout = &stdout
	captured := c.Stderr == nil
	if captured {
		c.Stderr = &stderr
	}
	err := c.Run()
	var ee *exec.ExitError
	if captured && errors.As(err, &ee) {
		ee.Stderr = []byte(stderr.String())
	}
	return []byte(stdout.String()), err
}

// CombinedOutput runs the command and returns its standard output and
// standard error together.
func (c *Cmd) CombinedOutput() ([]byte, error) {
	if c.Stdout != nil || c.Stderr != nil {
		return nil, errors.New("netlab: Stdout or Stderr already set")
	}
	var out lockedBuilder
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	return []byte(out.String()), err
}

// lockedBuilder is a strings.Builder two copying goroutines may write.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *lockedBuilder) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuilder) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
