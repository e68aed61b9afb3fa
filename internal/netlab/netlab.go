// Package netlab builds the benchmark's network: two network namespaces
// joined by a veth pair, shaped like the paper's Gigabit LAN (a tbf token
// bucket for the rate, netem for an optional added delay). Programs run
// inside either end through Command. Every address lives only inside the two
// namespaces, which have no route anywhere else, so no benchmark traffic can
// leave the lab.
//
// The lab talks to the kernel directly: namespaces are named as `ip netns`
// names them (a bind mount under /run/netns, so `ip netns list` and `ip
// netns exec` see them), and links, addresses and qdiscs are made over
// rtnetlink (github.com/vishvananda/netlink and netns); no iproute2 program
// is needed. A lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and the
// kernel's tbf qdisc (and netem for an added delay). New says which one is
// missing.
//
// The lab is torn down when its context is cancelled or Close is called,
// whichever comes first; teardown kills every process left inside the
// namespaces. Tie the context to SIGINT and SIGTERM with
// signal.NotifyContext so an interrupted benchmark leaves nothing behind, and
// call RemoveStale at start-up to remove what a crashed run left.
package netlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
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
)

// Errors New wraps so callers can tell the user what to do (errors.Is).
var (
	// ErrPermission: the process lacks CAP_NET_ADMIN or CAP_SYS_ADMIN.
	ErrPermission = errors.New("netlab: creating network namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run as root, or run the benchmark without a shaped network")
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
	mtu    int
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

// The MTUs WithMTU takes: IPv4's minimum, a veth's maximum.
const (
	MinMTU = 68
	MaxMTU = 65535
)

// WithMTU sets both ends' MTU to bytes (MinMTU to MaxMTU); 0 keeps the
// kernel's default (1500). tbf counts each frame's headers against the rate,
// so the MTU decides how much of the link TCP's payload gets.
func WithMTU(bytes int) Option {
	return func(c *config) { c.mtu = bytes }
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
	mtu   int

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
	if cfg.mtu != 0 && (cfg.mtu < MinMTU || cfg.mtu > MaxMTU) {
		return nil, fmt.Errorf("netlab: MTU %d: want %d to %d", cfg.mtu, MinMTU, MaxMTU)
	}
	if err := preflight(); err != nil {
		return nil, err
	}
	l := &Lab{rate: cfg.rate, delay: cfg.delay, mtu: cfg.mtu}
	if err := l.addNamespaces(cfg.prefix); err != nil {
		return nil, err
	}
	if err := l.setup(); err != nil {
		return nil, errors.Join(err, l.teardown())
	}
	l.stop = context.AfterFunc(ctx, l.closeOnceOnly)
	return l, nil
}

// preflight checks what New needs before it changes anything.
func preflight() error {
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

// handle returns an rtnetlink handle that works inside side's namespace.
func (l *Lab) handle(side Side) (*netlink.Handle, error) {
	ns, err := netns.GetFromName(l.ns[side])
	if err != nil {
		return nil, fmt.Errorf("netlab: open network namespace %s: %w", l.ns[side], err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlab: netlink in namespace %s: %w", l.ns[side], err)
	}
	return h, nil
}

// setup joins the namespaces with the veth pair, addresses and shapes it.
func (l *Lab) setup() error {
	var hs [2]*netlink.Handle
	for _, side := range []Side{A, B} {
		h, err := l.handle(side)
		if err != nil {
			return err
		}
		defer h.Close()
		hs[side] = h
	}
	nsB, err := netns.GetFromName(l.ns[B])
	if err != nil {
		return fmt.Errorf("netlab: open network namespace %s: %w", l.ns[B], err)
	}
	defer nsB.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: vethA, MTU: l.mtu}, PeerName: vethB, PeerNamespace: netlink.NsFd(nsB)}
	if err := hs[A].LinkAdd(veth); err != nil {
		return fmt.Errorf("netlab: add veth pair %s/%s: %w", vethA, vethB, err)
	}
	for _, end := range []struct {
		side      Side
		dev, addr string
	}{{A, vethA, addrA}, {B, vethB, addrB}} {
		h := hs[end.side]
		link, err := h.LinkByName(end.dev)
		if err != nil {
			return fmt.Errorf("netlab: %s in %s: %w", end.dev, l.ns[end.side], err)
		}
		addr, err := netlink.ParseAddr(end.addr + prefixV4)
		if err != nil {
			return err
		}
		if err := h.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("netlab: address %s on %s: %w", addr, end.dev, err)
		}
		lo, err := h.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("netlab: lo in %s: %w", l.ns[end.side], err)
		}
		for _, up := range []netlink.Link{lo, link} {
			if err := h.LinkSetUp(up); err != nil {
				return fmt.Errorf("netlab: set %s up in %s: %w", up.Attrs().Name, l.ns[end.side], err)
			}
		}
		for _, q := range shaping(link.Attrs().Index, l.rate, l.delay) {
			if err := h.QdiscAdd(q); err != nil {
				if errors.Is(err, unix.ENOENT) {
					return fmt.Errorf("%w (tbf needs CONFIG_NET_SCH_TBF, a delay needs CONFIG_NET_SCH_NETEM: try `modprobe -a sch_tbf sch_netem`, or run without shaping or delay): add %s qdisc on %s: %w", ErrNoQdisc, q.Type(), end.dev, err)
				}
				return fmt.Errorf("netlab: add %s qdisc on %s: %w", q.Type(), end.dev, err)
			}
		}
	}
	return nil
}

// shaping returns the qdiscs that shape the link with index link: netem at
// the root (handle 1:) for the delay, with the token bucket as its child
// (handle 10:) for the rate; or the token bucket alone at the root.
func shaping(link int, rate uint64, delay time.Duration) []netlink.Qdisc {
	root := netlink.QdiscAttrs{LinkIndex: link, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT}
	tbf := func(attrs netlink.QdiscAttrs) *netlink.Tbf {
		bytesPerSec, burst := rate/8, Burst(rate)
		return &netlink.Tbf{
			QdiscAttrs: attrs,
			Rate:       bytesPerSec,
			// As tc computes them from "burst" and "latency": the bucket
			// in ticks of the packet scheduler, and the queue in bytes.
			Buffer: netlink.Xmittime(bytesPerSec, uint32(burst)),
			Limit:  uint32(float64(bytesPerSec)*tbfQueue.Seconds()) + uint32(burst),
		}
	}
	var qs []netlink.Qdisc
	switch {
	case delay > 0:
		qs = append(qs, netlink.NewNetem(root, netlink.NetemQdiscAttrs{
			Latency: uint32(delay.Microseconds()),
			Limit:   uint32(netemLimit(rate, delay)),
		}))
		if rate > 0 {
			qs = append(qs, tbf(netlink.QdiscAttrs{LinkIndex: link, Handle: netlink.MakeHandle(10, 0), Parent: netlink.MakeHandle(1, 1)}))
		}
	case rate > 0:
		qs = append(qs, tbf(root))
	}
	return qs
}

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
	return errors.Join(removeNamespace(l.ns[A]), removeNamespace(l.ns[B]))
}
