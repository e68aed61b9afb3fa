// Package hypervisor is the contract between the migration engine and Xen.
//
// The engine (package xenmig) drives a domain only through the Hypervisor
// interface declared here. Two implementations exist: package xenctrl, cgo
// bindings to Xen 4.17's libxenctrl, libxenevtchn, libxenforeignmemory and
// libxenstore; and package xenctrl/sim, a simulated Xen host with the same
// semantics that every test, benchmark and the demo run on. Each method's
// documentation names the Xen call it stands for, so both implementations
// can be checked against one reference.
//
// The package is a leaf: it imports nothing from this module.
package hypervisor

import (
	"context"
	"time"
)

// PageSize is the size of one guest page frame (XC_PAGE_SIZE).
const PageSize = 4096

// Hypervisor is what the migration engine needs from one Xen host.
//
// All methods are safe for concurrent use. Errors wrap the sentinel errors of
// this package where one applies, so callers can test them with errors.Is.
type Hypervisor interface {
	// Domains lists every domain on the host except dom0.
	// Xen: xc_domain_getinfolist from domid 1, names from xenstore
	// /local/domain/<id>/name.
	Domains() ([]DomainInfo, error)

	// Lookup returns the id of the domain called name, or ErrNotFound.
	// Xen: the name -> domid map of xenstore /local/domain/*/name
	// (libxl_name_to_domid).
	Lookup(name string) (DomID, error)

	// Info returns the state of one domain, or ErrNotFound.
	// Xen: xc_domain_getinfolist(xch, d, 1, &info), checking that
	// info.domain == d, since the call returns the next domain >= d.
	Info(d DomID) (DomainInfo, error)

	// Config returns the configuration a destination shell is created from.
	// Xen: the toolstack's saved configuration (libxl_retrieve_domain_configuration,
	// as `xl migrate` sends it).
	Config(d DomID) (DomainConfig, error)

	// CreateShell creates a paused domain from cfg, its memory populated
	// but its vCPUs not yet started, ready to receive a migrated guest.
	// Xen: the toolstack's job (`xl create -p` with the migrated config, or
	// libxl_domain_create_restore); xenmig then takes the domain over.
	CreateShell(cfg DomainConfig) (DomID, error)

	// Rename changes a domain's name.
	// Xen: libxl_domain_rename (xenstore /local/domain/<id>/name).
	Rename(d DomID, name string) error

	// Pause stops every vCPU of d; it returns once none is running. Pauses
	// nest: each Pause needs its own Unpause.
	// Xen: xc_domain_pause (reference counted).
	Pause(d DomID) error

	// Unpause undoes one Pause.
	// Xen: xc_domain_unpause.
	Unpause(d DomID) error

	// Suspend asks d's guest to suspend itself and waits until it has, as
	// `xl migrate` does before it takes the vCPU state: the guest quiesces
	// its devices and shuts down with reason suspend (Info then reports
	// StateSuspended); restored in a new domain, it takes its
	// resume-in-a-new-domain path and re-makes its event channels, timers,
	// grant tables and PV frontends there. If it has not suspended within
	// timeout (or ctx ends first) the request is withdrawn and the error
	// wraps ErrNotSuspended; a guest that suspends anyway afterwards reads
	// as StateSuspended and CancelSuspend gives it back.
	// Xen: libxl's guest suspend: notify the guest's suspend event channel
	// (xenstore device/suspend/event-channel) if it offers one, else write
	// control/shutdown = "suspend"; then wait for XEN_DOMINF_shutdown with
	// SHUTDOWN_suspend.
	Suspend(ctx context.Context, d DomID, timeout time.Duration) error

	// CancelSuspend resumes a suspended d where it stopped: its suspend
	// hypercall returns "cancelled" and the guest goes on with its event
	// channels and devices as they were. ErrInvalid if d is not suspended.
	// Xen: libxl_domain_resume(ctx, d, suspend_cancel=1, NULL), i.e.
	// xc_domain_resume(xch, d, fast=1) then xs_resume_domain.
	CancelSuspend(d DomID) error

	// Destroy kills d and frees its memory.
	// Xen: xc_domain_destroy (libxl_domain_destroy for its devices).
	Destroy(d DomID) error

	// MaxGFN returns the highest gfn of d's physmap; the gfn space is
	// [0, MaxGFN], with holes.
	// Xen: xc_domain_maximum_gpfn.
	MaxGFN(d DomID) (GFN, error)

	// Populated returns the set of gfns in [0, MaxGFN] backed by memory.
	// Holes and ballooned-out gfns are not in it. Call it on a domain with no
	// pager attached: on Xen a paged-out gfn reads as XTAB (and the lookup
	// starts paging it in), so paged-out gfns are not reliably reported.
	// Xen: xc_get_pfn_type_batch over the physmap, every type but
	// XEN_DOMCTL_PFINFO_XTAB.
	Populated(d DomID) (*Bitmap, error)

	// ReadPages copies the pages gfns[i] into dst[i*PageSize:]. A gfn that
	// cannot be read fails the call with a *PageError naming it (ErrPaged for
	// a paged-out gfn, ErrNotPopulated for a hole).
	// Xen: xenforeignmemory_map(PROT_READ) of the batch, per-gfn err[],
	// memcpy, xenforeignmemory_unmap.
	ReadPages(d DomID, gfns []GFN, dst []byte) error

	// WritePages copies src[i*PageSize:] into the pages gfns[i], which must
	// be populated and not paged out.
	// Xen: xenforeignmemory_map(PROT_READ|PROT_WRITE), memcpy, unmap.
	WritePages(d DomID, gfns []GFN, src []byte) error

	// Populate backs gfns with fresh zeroed memory.
	// Xen: xc_domain_populate_physmap_exact(xch, d, n, 0, 0, gfns).
	Populate(d DomID, gfns []GFN) error

	// Depopulate releases the memory behind gfns, as a balloon driver does.
	// Xen: xc_domain_decrease_reservation_exact(xch, d, n, 0, gfns).
	Depopulate(d DomID, gfns []GFN) error

	// EnableLogDirty starts tracking writes to d's memory, every page clean.
	// Xen: xc_shadow_control(XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY).
	EnableLogDirty(d DomID) error

	// DirtyLog returns the pages written since log-dirty was enabled or last
	// cleaned. With clean, the log is reset in the same atomic step, so every
	// write is reported exactly once across successive calls.
	// Xen: xc_logdirty_control(XEN_DOMCTL_SHADOW_OP_CLEAN or _PEEK) into a
	// hypercall buffer.
	DirtyLog(d DomID, clean bool) (*Bitmap, error)

	// DisableLogDirty stops tracking writes.
	// Xen: xc_shadow_control(XEN_DOMCTL_SHADOW_OP_OFF).
	DisableLogDirty(d DomID) error

	// SaveCPU returns d's vCPU and platform state; d must be paused or
	// suspended (a migration saves it suspended).
	// Xen: xc_domain_hvm_getcontext, xc_hvm_param_get for the saver's
	// parameter list, xc_domain_get_tsc_info.
	SaveCPU(d DomID) (CPUState, error)

	// RestoreCPU loads state saved by SaveCPU into a paused d.
	// Xen: xc_domain_set_tsc_info, xc_hvm_param_set, xc_domain_hvm_setcontext.
	RestoreCPU(d DomID, s CPUState) error

	// EnablePaging attaches a pager to d and returns it. Only one pager may
	// be attached (ErrBusy). A hypervisor without mem_paging fails with
	// ErrPagingUnsupported; an unsuitable guest with ErrGuestUnsupported.
	// Xen: the ring set-up of xenpaging (HVM_PARAM_PAGING_RING_PFN, foreign
	// map, xc_mem_paging_enable, xenevtchn_bind_interdomain, BACK_RING_INIT,
	// decrease_reservation of the ring gfn).
	EnablePaging(d DomID) (Pager, error)

	// DomainPath returns d's xenstore home, /local/domain/<id>.
	// Xen: xs_get_domain_path.
	DomainPath(d DomID) (string, error)

	// StoreRead reads a xenstore key; ErrNotFound if it does not exist.
	// Xen: xs_read(h, XBT_NULL, path, &len).
	StoreRead(path string) (string, error)

	// StoreWrite writes a xenstore key, creating it and its parents.
	// Xen: xs_write(h, XBT_NULL, path, value, len).
	StoreWrite(path, value string) error

	// StoreRemove deletes a xenstore key and its children.
	// Xen: xs_rm(h, XBT_NULL, path).
	StoreRemove(path string) error

	// StoreWatch reports the paths at or below path that change, starting
	// with one event for path itself as xenstored does, until ctx is done;
	// then the channel is closed.
	// Xen: xs_watch, xs_fileno, xs_read_watch, xs_unwatch.
	StoreWatch(ctx context.Context, path string) (<-chan string, error)
}

// Pager is a mem_paging agent attached to one domain: it evicts gfns, loads
// them back and serves the guest's faults on them. The engine's receiver uses
// it to run the guest before its memory has arrived.
//
// Pager methods are safe for concurrent use.
type Pager interface {
	// Nominate marks gfn for eviction; a guest access before Evict cancels
	// it (the access faults with PagingEvictFail set).
	// Xen: xc_mem_paging_nominate.
	Nominate(gfn GFN) error

	// Evict frees a nominated gfn, which becomes paged out: a guest access
	// then pauses the vCPU and posts a Request. ErrBusy if the gfn was
	// touched since Nominate.
	// Xen: xc_mem_paging_evict.
	Evict(gfn GFN) error

	// Load installs page (PageSize bytes) at a paged-out gfn, making it
	// present again. It does not resume vCPUs waiting on the gfn: Resume
	// does. Loading a gfn nobody asked for (prefetch) is allowed.
	// ErrNotPopulated if the gfn is no longer paged out: the guest's
	// balloon released it (a PagingDropPage request tells of it) or took
	// it back since, and the page is not wanted.
	// Xen: xc_mem_paging_load (XENMEM_paging_op_prep with a buffer; ENOENT
	// if the gfn is neither paged nor paging in); never a bare prep, which
	// fails on an evicted gfn.
	Load(gfn GFN, page []byte) error

	// Requests blocks until the guest posts at least one request, then
	// drains the ring (at most RingSlots at a time). It returns ctx.Err()
	// when ctx is done and ErrClosed after Close.
	// Xen: poll(xenevtchn_fd), xenevtchn_pending, xenevtchn_unmask,
	// RING_GET_REQUEST until RING_FINAL_CHECK_FOR_REQUESTS is false.
	Requests(ctx context.Context) ([]Request, error)

	// Resume answers requests: each vCPU a request paused is unpaused once
	// its gfn is present. Every Request that Requests returned must be
	// answered exactly once, even one that paused nothing (FlagForeign,
	// PagingDropPage): the ring frees a slot only per response.
	// Xen: RING_PUSH_RESPONSES of vm_event_response_t{version 7, reason
	// MEM_PAGING, vcpu_id, flags & VCPU_PAUSED, gfn}, then xenevtchn_notify.
	Resume(reqs ...Request) error

	// Close detaches the pager. Xen crashes a domain that touches a
	// paged-out gfn with no pager, so Close fails with ErrBusy while any gfn
	// is still paged out or any vCPU waits.
	// Xen: xc_mem_paging_disable, xenevtchn_unbind, xenevtchn_close.
	Close() error
}

// Inspector is implemented by backends that can see inside a guest: the
// simulator does, real Xen does not. The engine uses it, when present, for the
// memory-digest oracle and the workload throughput measures.
type Inspector interface {
	// Digest hashes the contents of every populated non-zero page of d with
	// its gfn; paged-out pages are not readable and fail with ErrPaged.
	Digest(d DomID) (Digest, error)

	// Progress returns the guest workload's counters.
	Progress(d DomID) (Progress, error)
}
