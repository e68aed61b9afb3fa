// Package netlab builds the benchmark's network: two network namespaces
// joined by a veth pair, shaped with tc like the paper's Gigabit LAN (token
// bucket rate, optional added delay). Programs run inside either end through
// Command. Every address lives only inside the two namespaces, which have no
// route anywhere else, so no benchmark traffic can leave the lab.
//
// A lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN, for `ip netns`), the ip
// and tc programs of iproute2, and the kernel's tbf qdisc (and netem for an
// added delay). New says which one is missing.
//
// The lab is torn down when its context is cancelled or Close is called,
// whichever comes first; teardown kills every process left inside the
// namespaces. Tie the context to SIGINT and SIGTERM with
// signal.NotifyContext so an interrupted benchmark leaves nothing behind, and
// call RemoveStale at start-up to remove what a crashed run left.
package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultPrefix starts the name of every namespace a lab creates unless
// WithPrefix says otherwise. Names are "<prefix>-<pid>-<random>-a" and "-b".
const DefaultPrefix = "xenmig"

// The lab's fixed plan. The addresses are private to the two namespaces, so
// labs created at the same time by other processes cannot clash with them.
const (
	addrA    = "10.77.0.1"
	addrB    = "10.77.0.2"
	prefixV4 = "/30"
	vethA    = "veth-a"
	vethB    = "veth-b"

	// tbfQueue bounds the time a packet may wait in the token bucket's
	// queue (tbf latency), like the buffer of a Gigabit switch port.
	tbfQueue = 5 * time.Millisecond
	// minBurst is the smallest token bucket: a full GSO super-packet (64
	// KiB) must fit, or tbf segments it and misses its rate.
	minBurst = 64 << 10
	// teardownTimeout bounds Close, which must work after ctx is cancelled.
	teardownTimeout = 10 * time.Second
)

// Errors New wraps so callers can tell the user what to do (errors.Is).
var (
	// ErrPermission: the process lacks CAP_NET_ADMIN or CAP_SYS_ADMIN.
	ErrPermission = errors.New("netlab: creating network namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run as root, or run the benchmark without a shaped network")
	// ErrNoIproute2: the ip or tc program is not on PATH.
	ErrNoIproute2 = errors.New("netlab: the ip and tc programs are needed: install iproute2 (apt-get install iproute2)")
	// ErrNoQdisc: the kernel lacks a queueing discipline the shaping needs.
	ErrNoQdisc = errors.New("netlab: the kernel lacks a queueing discipline the shaping needs")
)

// Side names one end of the lab.
type Side int

// The two ends of the veth pair.
const (
	A Side = iota // the first namespace, conventionally the source host
	B             // the second namespace, conventionally the destination host
)

// String returns "a" or "b".
func (s Side) String() string {
	if s == A {
		return "a"
	}
	return "b"
}

// Option configures New.
type Option func(*config)

type config struct {
	rate   uint64
	delay  time.Duration
	prefix string
}

// WithRate shapes both directions to bitsPerSecond with a token bucket
// (tc tbf). 0 leaves the link unshaped (a veth runs at several Gbit/s).
func WithRate(bitsPerSecond uint64) Option {
	return func(c *config) { c.rate = bitsPerSecond }
}

// WithDelay adds d to each direction with tc netem, so the round trip grows
// by 2d. 0 adds none.
func WithDelay(d time.Duration) Option {
	return func(c *config) { c.delay = d }
}

// WithPrefix replaces DefaultPrefix in the namespaces' names.
func WithPrefix(prefix string) Option {
	return func(c *config) { c.prefix = prefix }
}

// Lab is a pair of network namespaces joined by a shaped veth pair.
type Lab struct {
	ns    [2]string
	rate  uint64
	delay time.Duration

	stop      func() bool // unregisters the teardown on ctx cancellation
	closeOnce sync.Once
	closeErr  error
}

// New creates a lab. The lab is torn down when ctx is cancelled or Close is
// called; the caller must call Close in any case.
func New(ctx context.Context, opts ...Option) (*Lab, error) {
	cfg := config{prefix: DefaultPrefix}
	for _, o := range opts {
		o(&cfg)
	}
	if err := preflight(); err != nil {
		return nil, err
	}
	l := &Lab{rate: cfg.rate, delay: cfg.delay}
	if err := l.addNamespaces(ctx, cfg.prefix); err != nil {
		return nil, err
	}
	if err := l.setup(ctx); err != nil {
		return nil, errors.Join(err, l.teardown())
	}
	l.stop = context.AfterFunc(ctx, l.closeOnceOnly)
	return l, nil
}

// preflight checks what New needs before it changes anything.
func preflight() error {
	for _, p := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("%w (%v)", ErrNoIproute2, err)
		}
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Errorf("netlab: reading capabilities: %w", err)
	}
	ok, err := hasCaps(string(status), capNetAdmin, capSysAdmin)
	if err != nil {
		return err
	}
	if !ok {
		return ErrPermission
	}
	return nil
}

// Capability numbers from linux/capability.h.
const (
	capNetAdmin = 12
	capSysAdmin = 21
)

// hasCaps reports whether the CapEff line of a /proc/<pid>/status text holds
// every capability in caps.
func hasCaps(status string, caps ...uint) (bool, error) {
	for _, line := range strings.Split(status, "\n") {
		v, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return false, fmt.Errorf("netlab: parsing CapEff %q: %w", strings.TrimSpace(v), err)
		}
		for _, c := range caps {
			if eff&(1<<c) == 0 {
				return false, nil
			}
		}
		return true, nil
	}
	return false, errors.New("netlab: no CapEff line in /proc/self/status")
}

// addNamespaces creates the two namespaces under fresh names.
func (l *Lab) addNamespaces(ctx context.Context, prefix string) error {
	base := fmt.Sprintf("%s-%d-%06x", prefix, os.Getpid(), rand.Uint32()&0xffffff)
	l.ns = [2]string{base + "-a", base + "-b"}
	if err := run(ctx, "ip", "netns", "add", l.ns[A]); err != nil {
		return permissionHint(err)
	}
	if err := run(ctx, "ip", "netns", "add", l.ns[B]); err != nil {
		return errors.Join(permissionHint(err), run(context.WithoutCancel(ctx), "ip", "netns", "del", l.ns[A]))
	}
	return nil
}

// permissionHint marks err as ErrPermission when ip said so.
func permissionHint(err error) error {
	if strings.Contains(err.Error(), "Operation not permitted") || strings.Contains(err.Error(), "Permission denied") {
		return fmt.Errorf("%w: %w", ErrPermission, err)
	}
	return err
}

// setup joins the namespaces with the veth pair, addresses and shapes it.
func (l *Lab) setup(ctx context.Context) error {
	a, b := l.ns[A], l.ns[B]
	steps := [][]string{
		{"ip", "-n", a, "link", "add", vethA, "type", "veth", "peer", "name", vethB, "netns", b},
		{"ip", "-n", a, "addr", "add", addrA + prefixV4, "dev", vethA},
		{"ip", "-n", b, "addr", "add", addrB + prefixV4, "dev", vethB},
		{"ip", "-n", a, "link", "set", "lo", "up"},
		{"ip", "-n", b, "link", "set", "lo", "up"},
		{"ip", "-n", a, "link", "set", vethA, "up"},
		{"ip", "-n", b, "link", "set", vethB, "up"},
	}
	steps = append(steps, shaping(a, vethA, l.rate, l.delay)...)
	steps = append(steps, shaping(b, vethB, l.rate, l.delay)...)
	for _, s := range steps {
		if err := run(ctx, s[0], s[1:]...); err != nil {
			if strings.Contains(err.Error(), "qdisc kind is unknown") {
				return fmt.Errorf("%w (tbf needs CONFIG_NET_SCH_TBF, a delay needs CONFIG_NET_SCH_NETEM: try `modprobe -a sch_tbf sch_netem`, or run without shaping or delay): %w", ErrNoQdisc, err)
			}
			return err
		}
	}
	return nil
}

// shaping returns the tc commands that shape dev in namespace ns: netem at
// the root for the delay, with the token bucket as its child for the rate.
func shaping(ns, dev string, rate uint64, delay time.Duration) [][]string {
	tc := []string{"tc", "-n", ns, "qdisc", "add", "dev", dev}
	tbf := []string{"tbf", "rate", fmt.Sprintf("%dbit", rate),
		"burst", strconv.FormatUint(Burst(rate), 10),
		"latency", fmt.Sprintf("%dus", tbfQueue.Microseconds())}
	var cmds [][]string
	switch {
	case delay > 0:
		netem := []string{"root", "handle", "1:", "netem",
			"delay", fmt.Sprintf("%dus", delay.Microseconds()),
			"limit", strconv.FormatUint(netemLimit(rate, delay), 10)}
		cmds = append(cmds, append(clone(tc), netem...))
		if rate > 0 {
			cmds = append(cmds, append(append(clone(tc), "parent", "1:1", "handle", "10:"), tbf...))
		}
	case rate > 0:
		cmds = append(cmds, append(append(clone(tc), "root", "handle", "1:"), tbf...))
	}
	return cmds
}

func clone(s []string) []string { return append([]string(nil), s...) }

// Burst returns the token bucket size in bytes New gives tbf for a rate in
// bits per second: a millisecond of traffic, and at least 64 KiB so that a
// GSO super-packet passes whole. Measured on a veth pair, 1 Gbit/s with this
// burst carries 955 Mbit/s of TCP payload (a real Gigabit link ~940); a 16
// KiB burst only 880.
func Burst(rate uint64) uint64 {
	return max(rate/8/1000, minBurst)
}

// netemLimit is netem's queue length in packets: twice the packets in flight
// over the delay at the link rate (10 Gbit/s when unshaped), at least
// netem's default of 1000.
func netemLimit(rate uint64, delay time.Duration) uint64 {
	if rate == 0 {
		rate = 10e9
	}
	const packet = 1500 * 8
	inFlight := uint64(float64(rate) * delay.Seconds() / packet)
	return max(2*inFlight, 1000)
}

// Addr returns the IPv4 address of side.
func (l *Lab) Addr(side Side) string {
	if side == A {
		return addrA
	}
	return addrB
}

// Namespace returns the name of side's network namespace.
func (l *Lab) Namespace(side Side) string { return l.ns[side] }

// Rate returns the shaped rate in bits per second, 0 when unshaped.
func (l *Lab) Rate() uint64 { return l.rate }

// Delay returns the delay added to each direction.
func (l *Lab) Delay() time.Duration { return l.delay }

// Command returns a command that runs name inside side's namespace (through
// `ip netns exec`, which execs the program: the command's process is the
// program). The process is killed (with its process group) when ctx is
// done, when the calling process dies, and when the lab is torn down.
func (l *Lab) Command(ctx context.Context, side Side, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.ns[side], name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	return cmd
}

// Close kills every process inside the lab's namespaces and removes them,
// which removes the veth pair and its qdiscs. It is safe to call more than
// once and from several goroutines; every call returns the first's result.
func (l *Lab) Close() error {
	l.stop()
	l.closeOnceOnly()
	return l.closeErr
}

// closeOnceOnly tears the lab down on the first call.
func (l *Lab) closeOnceOnly() {
	l.closeOnce.Do(func() { l.closeErr = l.teardown() })
}

func (l *Lab) teardown() error {
	ctx, cancel := context.WithTimeout(context.Background(), teardownTimeout)
	defer cancel()
	return errors.Join(removeNamespace(ctx, l.ns[A]), removeNamespace(ctx, l.ns[B]))
}

// removeNamespace kills the processes inside ns, then deletes it.
func removeNamespace(ctx context.Context, ns string) error {
	out, err := output(ctx, "ip", "netns", "pids", ns)
	if err != nil {
		return err
	}
	for _, f := range strings.Fields(out) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return fmt.Errorf("netlab: ip netns pids %s: bad pid %q", ns, f)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("netlab: killing process %d in namespace %s: %w", pid, ns, err)
		}
	}
	return run(ctx, "ip", "netns", "del", ns)
}

// RemoveStale removes the namespaces named by labs with prefix (DefaultPrefix
// when empty) whose creating process no longer runs, as a crashed or killed
// benchmark leaves them. It returns the names it removed.
func RemoveStale(ctx context.Context, prefix string) ([]string, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	out, err := output(ctx, "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line) // "name (id: 3)"
		if len(fields) == 0 {
			continue
		}
		name := fields[0]
		pid, ok := creator(name, prefix)
		if !ok || processAlive(pid) {
			continue
		}
		if err := removeNamespace(ctx, name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

// creator returns the pid in a lab namespace name "<prefix>-<pid>-<rand>-<side>".
func creator(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix+"-")
	if !ok {
		return 0, false
	}
	parts := strings.Split(rest, "-")
	if len(parts) != 3 || (parts[2] != "a" && parts[2] != "b") {
		return 0, false
	}
	pid, err := strconv.Atoi(parts[0])
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// run runs an external command; its error names the command and carries
// its stderr.
func run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, name, args...)
	return err
}

// output runs an external command and returns its stdout.
func output(ctx context.Context, name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = "no output"
		}
		return "", fmt.Errorf("netlab: %s: %w: %s", strings.Join(cmd.Args, " "), err, msg)
	}
	return stdout.String(), nil
}
