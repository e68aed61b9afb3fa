package sim

import (
	"io"
	"time"

	"github.com/sirupsen/logrus"
)

// DefaultNotifyLatency is the event-channel notification latency of a Host
// created without WithNotifyLatency: a few microseconds, as an interdomain
// event reaching a dom0 process takes on real hardware.
const DefaultNotifyLatency = 5 * time.Microsecond

// Option configures a Host.
type Option func(*Host)

// WithNotifyLatency sets the delay between the guest posting a paging request
// and the pager seeing it (the event channel's latency). Zero delivers at once.
// WithCosts sets it too: the later option wins.
func WithNotifyLatency(d time.Duration) Option {
	return func(h *Host) { h.notifyLatency = max(d, 0) }
}

// WithLogger makes the Host log through l; by default it logs nothing.
func WithLogger(l *logrus.Entry) Option {
	return func(h *Host) { h.log = l }
}

// discardLogger is the logger of a Host created without WithLogger.
func discardLogger() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

// AllCPUFeatures is the CPU feature set of a Host created without
// WithCPUFeatures: every feature the simulator knows.
const AllCPUFeatures = ^uint64(0)

// WithCPUFeatures sets the CPU features the host offers its guests, one bit
// each. A guest gets its host's features when it boots and keeps them when it
// migrates; a host lacking one of them refuses to create its shell (as
// xc_set_domain_cpu_policy refuses a policy the host cannot run).
func WithCPUFeatures(mask uint64) Option {
	return func(h *Host) { h.cpuFeatures = mask }
}

// WithoutPaging makes a host whose hypervisor lacks mem_paging, as Debian's
// stock Xen does: EnablePaging fails with hypervisor.ErrPagingUnsupported.
func WithoutPaging() Option {
	return func(h *Host) { h.noPaging = true }
}

// WithResidentMemory gives the host bytes of memory faulted in when it is
// made (which takes a while: 1-4 s a GiB on a VM whose own host backs its
// memory lazily), and makes its domains take their memory from it while it
// lasts, as a Xen host's domains take theirs from RAM that is resident
// before any page arrives. Without it each domain maps its own memory, and
// every page the destination of a migration installs first faults it in:
// at 4-18 µs a page on such a VM, that was the larger part of the
// destination's CPU, a cost a real host does not have. A domain that does
// not fit in what is free maps its own.
func WithResidentMemory(bytes uint64) Option {
	return func(h *Host) { h.resident = bytes }
}
