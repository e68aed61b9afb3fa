package xenmig

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenmig/internal/wire"
)

// installer puts arriving pages into the paged-out guest and resumes the
// vCPUs waiting for them. Pages arrive on both channels and from the staging
// area; faults arrive from the ring.
type installer struct {
	pager hypervisor.Pager
	owed  *hypervisor.Bitmap // every gfn the source will send
	total uint64

	mu        sync.Mutex
	installed *hypervisor.Bitmap // loaded, or given back by the guest first
	dropped   *hypervisor.Bitmap // given back by the guest before their page came
	requested *hypervisor.Bitmap // asked of the source or taken from staging
	waiting   map[hypervisor.GFN][]waiter
	lat       []time.Duration
	count     uint64
	done      chan struct{}

	// Pages received before the switchover, installed after it: hybrid's
	// pre-copy pages, post-copy's late early pages (see preparer).
	stagedMu   sync.Mutex
	staged     map[hypervisor.GFN][]byte
	stagedZero *hypervisor.Bitmap // the staged pages that are zero: a bit each, not a map entry

	networkFaults, localFaults, foreignFaults atomic.Uint64

	onFault func(time.Duration) // called with each waiter's latency, if set
}

type waiter struct {
	req hypervisor.Request
	at  time.Time
}

func newInstaller(p hypervisor.Pager, want *hypervisor.Bitmap) *installer {
	in := &installer{pager: p, owed: want, total: want.Count(), installed: hypervisor.NewBitmap(want.Len()),
		dropped: hypervisor.NewBitmap(want.Len()), requested: hypervisor.NewBitmap(want.Len()), waiting: map[hypervisor.GFN][]waiter{},
		done: make(chan struct{}), staged: map[hypervisor.GFN][]byte{}, stagedZero: hypervisor.NewBitmap(want.Len())}
	if in.total == 0 {
		close(in.done)
	}
	return in
}

// setOwed makes owed the set of gfns to install, before the switchover.
func (in *installer) setOwed(owed *hypervisor.Bitmap) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.owed, in.total = owed, owed.Count()
	if in.total == 0 && !in.complete() {
		close(in.done)
	}
}

// stage keeps a pre-copy batch until the switchover.
func (in *installer) stage(p wire.Pages) error {
	p.Data = slices.Clone(p.Data) // the record's buffer is reused
	in.stagedMu.Lock()
	defer in.stagedMu.Unlock()
	for g, page := range p.All() {
		if uint64(g) >= in.installed.Len() {
			return fmt.Errorf("staged gfn %#x beyond the guest: %w", uint64(g), wire.ErrMalformed)
		}
		if page == nil { // this round's copy replaces an earlier one
			delete(in.staged, g)
			in.stagedZero.Set(g)
			continue
		}
		in.staged[g] = page
		in.stagedZero.Clear(g)
	}
	return nil
}

// stagePages keeps pages until the switchover, as stage does: the early
// pages a post-copy destination held (see preparer), the zero ones as a
// bitmap of the guest's size. The installer owns pages from then on: it runs
// in the downtime, so the map is taken, not copied.
func (in *installer) stagePages(pages map[hypervisor.GFN][]byte, zero *hypervisor.Bitmap) {
	in.stagedMu.Lock()
	defer in.stagedMu.Unlock()
	if len(in.staged) == 0 {
		in.staged = pages
	} else {
		maps.Copy(in.staged, pages)
	}
	in.stagedZero.Or(zero)
}

// forget drops staged copies made stale by later writes.
func (in *installer) forget(gfns []hypervisor.GFN) {
	in.stagedMu.Lock()
	defer in.stagedMu.Unlock()
	for _, g := range gfns {
		delete(in.staged, g)
		if uint64(g) < in.stagedZero.Len() {
			in.stagedZero.Clear(g)
		}
	}
}

// takeStaged removes and returns g's staged copy.
func (in *installer) takeStaged(g hypervisor.GFN) []byte {
	in.stagedMu.Lock()
	defer in.stagedMu.Unlock()
	if p, ok := in.staged[g]; ok {
		delete(in.staged, g)
		return p
	}
	if in.stagedZero.Test(g) {
		in.stagedZero.Clear(g)
		return zeroPage[:]
	}
	return nil
}

// drainStaged installs every staged page nobody has faulted on yet.
func (in *installer) drainStaged(ctx context.Context, stop <-chan struct{}) error {
	in.stagedMu.Lock()
	gfns := make([]hypervisor.GFN, 0, len(in.staged))
	for g := range in.staged {
		gfns = append(gfns, g)
	}
	gfns = append(gfns, in.stagedZero.GFNs()...)
	in.stagedMu.Unlock()
	for _, g := range gfns {
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return nil
		default:
		}
		in.mu.Lock()
		mine := !in.requested.Test(g) && !in.installed.Test(g)
		if mine {
			in.requested.Set(g)
		}
		in.mu.Unlock()
		if !mine {
			continue // a fault claimed it first and installs the staged copy
		}
		if p := in.takeStaged(g); p != nil {
			if err := in.install(g, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// fault files the ring's requests and returns the gfns to ask the source for.
func (in *installer) fault(reqs []hypervisor.Request) ([]hypervisor.GFN, error) {
	now := time.Now()
	var ask, local, dropped []hypervisor.GFN
	var resume []hypervisor.Request
	in.mu.Lock()
	for _, q := range reqs {
		if uint64(q.GFN) >= in.installed.Len() || !in.owed.Test(q.GFN) {
			resume = append(resume, q) // not memory the source owes us
			continue
		}
		if q.PagingFlags&hypervisor.PagingDropPage != 0 {
			// The guest's balloon gave the gfn back before its page
			// came: it is no longer wanted.
			resume = append(resume, q)
			dropped = append(dropped, q.GFN)
			continue
		}
		if q.Flags&hypervisor.FlagForeign != 0 {
			in.foreignFaults.Add(1) // a backend or the device model mapped a missing page
		}
		// Every request is answered exactly once, paused vCPU or not: the
		// ring frees a slot per response.
		if in.installed.Test(q.GFN) {
			resume = append(resume, q)
			continue
		}
		in.waiting[q.GFN] = append(in.waiting[q.GFN], waiter{q, now})
		if !in.requested.Test(q.GFN) {
			in.requested.Set(q.GFN)
			ask = append(ask, q.GFN)
		}
	}
	in.mu.Unlock()
	if len(resume) > 0 {
		if err := in.pager.Resume(resume...); err != nil {
			return nil, fmt.Errorf("resume vCPUs: %w", err)
		}
	}
	for _, g := range dropped {
		// Settled before its staged copy goes: an owed gfn is always
		// installed, staged or asked for, or the check at push-done
		// (unsent) would find it in none of them and abort.
		if err := in.settle(g, true); err != nil {
			return nil, err
		}
		in.takeStaged(g)
	}
	// Staged pages are served here, without the network.
	remote := ask[:0]
	for _, g := range ask {
		if p := in.takeStaged(g); p != nil {
			local = append(local, g)
			if err := in.install(g, p); err != nil {
				return nil, err
			}
		} else {
			remote = append(remote, g)
		}
	}
	in.localFaults.Add(uint64(len(local)))
	in.networkFaults.Add(uint64(len(remote)))
	return remote, nil
}

// owes reports whether g is owed and not installed yet.
func (in *installer) owes(g hypervisor.GFN) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return uint64(g) < in.owed.Len() && in.owed.Test(g) && !in.installed.Test(g)
}

// installBatch installs every page of a batch.
func (in *installer) installBatch(p wire.Pages) error {
	for g, page := range p.All() {
		if page == nil {
			page = zeroPage[:]
		}
		if err := in.install(g, page); err != nil {
			return err
		}
	}
	return nil
}

// install loads one page and resumes the vCPUs waiting on it. A page the
// guest gave back first is not loaded.
func (in *installer) install(g hypervisor.GFN, page []byte) error {
	if uint64(g) >= in.installed.Len() {
		return fmt.Errorf("page for gfn %#x beyond the guest: %w", uint64(g), wire.ErrMalformed)
	}
	in.mu.Lock()
	dup, dropped, owed := in.installed.Test(g), in.dropped.Test(g), in.owed.Test(g)
	in.mu.Unlock()
	if dropped || !owed {
		return nil // given back first; or present here, not paged (a special page, or written in the downtime)
	}
	if dup {
		return fmt.Errorf("gfn %#x arrived twice: %w", uint64(g), wire.ErrMalformed)
	}
	if err := in.pager.Load(g, page); errors.Is(err, hypervisor.ErrNotPopulated) {
		// Given back since it was paged out; the drop notice may come
		// later, or never if the ring was full.
		return in.settle(g, true)
	} else if err != nil {
		return fmt.Errorf("load gfn %#x: %w", uint64(g), err)
	}
	return in.settle(g, false)
}

// settle counts g as installed (or, if dropped, given back by the guest)
// and resumes the vCPUs waiting on it; a gfn already settled is left alone.
func (in *installer) settle(g hypervisor.GFN, dropped bool) error {
	in.mu.Lock()
	if in.installed.Test(g) {
		in.mu.Unlock()
		return nil
	}
	in.installed.Set(g)
	if dropped {
		in.dropped.Set(g)
	}
	ws := in.waiting[g]
	delete(in.waiting, g)
	in.count++
	finished := in.count == in.total
	now := time.Now()
	for _, w := range ws {
		in.lat = append(in.lat, now.Sub(w.at))
	}
	in.mu.Unlock()
	if in.onFault != nil {
		for _, w := range ws {
			in.onFault(now.Sub(w.at))
		}
	}
	if len(ws) > 0 {
		reqs := make([]hypervisor.Request, len(ws))
		for i, w := range ws {
			reqs[i] = w.req
		}
		if err := in.pager.Resume(reqs...); err != nil {
			return fmt.Errorf("resume vCPUs waiting on gfn %#x: %w", uint64(g), err)
		}
	}
	if finished {
		close(in.done)
	}
	return nil
}

// missing returns the owed gfns not installed yet, and those among them
// that vCPUs wait on (asked for again at once). Requests made before a break
// are forgotten: the source sends every missing gfn again.
func (in *installer) missing() (*hypervisor.Bitmap, []hypervisor.GFN) {
	in.mu.Lock()
	defer in.mu.Unlock()
	m := in.outstandingLocked()
	in.requested.AndNot(m)
	var wanted []hypervisor.GFN
	for g := range in.waiting {
		if !in.requested.Test(g) {
			in.requested.Set(g)
			wanted = append(wanted, g)
		}
	}
	return m, wanted
}

// outstandingLocked returns the owed gfns neither installed nor staged
// here: those only the source can still send. in.mu must be held (a staged
// page becomes requested under it).
func (in *installer) outstandingLocked() *hypervisor.Bitmap {
	m := in.owed.Clone()
	m.AndNot(in.installed)
	in.stagedMu.Lock()
	for g := range in.staged {
		m.Clear(g)
	}
	m.AndNot(in.stagedZero)
	in.stagedMu.Unlock()
	return m
}

// unsent counts the owed gfns neither installed, staged nor asked for, and
// returns the first of them.
func (in *installer) unsent() (n uint64, first hypervisor.GFN) {
	in.mu.Lock()
	defer in.mu.Unlock()
	m := in.outstandingLocked()
	m.AndNot(in.requested)
	if gfns := m.GFNs(); len(gfns) > 0 {
		return uint64(len(gfns)), gfns[0]
	}
	return 0, 0
}

// complete reports whether every owed gfn is installed.
func (in *installer) complete() bool {
	select {
	case <-in.done:
		return true
	default:
		return false
	}
}

func (in *installer) latencies() []time.Duration {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]time.Duration(nil), in.lat...)
}
