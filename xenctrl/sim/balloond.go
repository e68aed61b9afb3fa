package sim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/pvdriver"
)

// BalloondSpec runs xenmig-balloond's agent inside a simulated guest: the
// same pvdriver.Agent, policy and dom0 protocol a real guest runs, over this
// host's xenstore, with the guest's balloon driver standing in for sysfs and
// its allocator's counters for /proc/meminfo.
type BalloondSpec struct {
	// IntervalMS is the time between policy ticks; 0 takes the agent's
	// default (5 s).
	IntervalMS int `json:"interval_ms,omitempty"`
}

// startBalloond runs the agent until ctx is done; d.wg counts it.
func (d *domain) startBalloond(ctx context.Context) error {
	cfg := pvdriver.DefaultConfig()
	cfg.Interval = time.Duration(d.spec.Balloond.IntervalMS) * time.Millisecond
	cfg.RestoreOnExit = false // it stops only when the domain goes away
	a, err := pvdriver.NewAgent(cfg, guestBalloon{d}, guestMeminfo{d}, guestStore{d.h.store, domainPath(d.id)}, d.log.WithField("agent", "balloond"))
	if err != nil {
		return fmt.Errorf("domain %q: self-ballooning agent: %w", d.spec.Name, err)
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := a.Run(ctx); err != nil {
			d.log.WithError(err).Warn("self-ballooning agent stopped")
		}
	}()
	return nil
}

// guestBalloon is the guest's balloon driver as the agent sees it through
// /sys/devices/system/xen_memory/xen_memory0.
type guestBalloon struct{ d *domain }

var _ pvdriver.Balloon = guestBalloon{}

func (b guestBalloon) TargetKiB() (uint64, error) {
	t, ok := b.d.balloonTarget()
	if !ok {
		t = uint64(b.d.mem.populated.Load())
	}
	return t * hypervisor.PageSize / 1024, nil
}

func (b guestBalloon) SetTargetKiB(kib uint64) error {
	b.d.setBalloonTarget(kib * 1024 / hypervisor.PageSize)
	b.d.kickBalloon()
	return nil
}

func (b guestBalloon) CurrentKiB() (uint64, error) {
	return uint64(b.d.mem.populated.Load()) * hypervisor.PageSize / 1024, nil
}

// guestMeminfo is the guest's /proc/meminfo: what it holds, what is free,
// and what its workload has committed. As on Linux, Committed_AS counts the
// processes' memory only, not the kernel's (the static pages): a policy
// that trusted it alone would squeeze the guest until nothing is free (the
// Xen lab's lesson; see pvdriver.Target).
type guestMeminfo struct{ d *domain }

var _ pvdriver.MemSource = guestMeminfo{}

func (m guestMeminfo) MemInfo() (pvdriver.MemInfo, error) {
	m.d.guestMu.Lock()
	inUse := m.d.inUse
	m.d.guestMu.Unlock()
	kernel := min(uint64(len(m.d.lay.static)), inUse)
	total := uint64(m.d.mem.populated.Load())
	free := total - min(inUse, total)
	const kib = hypervisor.PageSize / 1024
	return pvdriver.MemInfo{MemTotalKiB: total * kib, MemFreeKiB: free * kib, MemAvailableKiB: free * kib,
		CommittedKiB: (inUse - kernel) * kib}, nil
}

// guestStore is xenstore as the guest sees it: paths relative to its home.
type guestStore struct {
	s    *store
	home string
}

var _ pvdriver.Store = guestStore{}

func (g guestStore) Read(path string) (string, error) {
	v, err := g.s.read(g.home + "/" + path)
	if errors.Is(err, hypervisor.ErrNotFound) {
		return "", fmt.Errorf("%w: %w", err, fs.ErrNotExist)
	}
	return v, err
}

func (g guestStore) Write(path, value string) error { return g.s.write(g.home+"/"+path, value) }

func (g guestStore) Watch(ctx context.Context, path string) (<-chan string, error) {
	return g.s.watch(ctx, g.home+"/"+path)
}
