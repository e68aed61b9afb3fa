package hypervisor

import (
	"errors"
	"fmt"
)

// Sentinel errors of the contract. Implementations wrap them with context
// (the call, the domain, the gfn) and, on Xen, the errno.
var (
	// ErrNotFound: no such domain or xenstore key (ESRCH, ENOENT).
	ErrNotFound = errors.New("not found")
	// ErrBusy: the operation conflicts with the domain's current use (EBUSY),
	// e.g. evicting a gfn the guest touched since it was nominated, or
	// attaching a second pager.
	ErrBusy = errors.New("busy")
	// ErrPaged: the gfn is paged out and cannot be mapped (ENOENT from a
	// foreign map of a paged gfn).
	ErrPaged = errors.New("gfn is paged out")
	// ErrNotPopulated: the gfn has no memory behind it (a hole or ballooned).
	ErrNotPopulated = errors.New("gfn not populated")
	// ErrInvalid: an argument is out of range or the domain is in the wrong
	// state for the call (EINVAL).
	ErrInvalid = errors.New("invalid argument")
	// ErrPagingUnsupported: the hypervisor has no mem_paging (ENOSYS: Xen built
	// without CONFIG_MEM_PAGING, as Debian's stock build is).
	ErrPagingUnsupported = errors.New("hypervisor has no memory paging (CONFIG_MEM_PAGING)")
	// ErrGuestUnsupported: the domain cannot be migrated as asked: a PV
	// guest or an HVM guest with a device model, or one that cannot be paged
	// (EOPNOTSUPP for an HVM dom0, ENODEV without HAP, EMLINK with
	// passthrough, EXDEV with populate-on-demand).
	ErrGuestUnsupported = errors.New("guest not supported")
	// ErrNotSuspended: the guest did not suspend when asked (no PV drivers
	// listening, or it took longer than the timeout).
	ErrNotSuspended = errors.New("guest did not suspend")
	// ErrIncompatible: this host cannot run the guest as it runs on its
	// source (a CPU feature the guest uses is missing here, a special page
	// at another gfn, a name held by another domain).
	ErrIncompatible = errors.New("this host cannot run the guest")
	// ErrClosed: the pager or host was closed.
	ErrClosed = errors.New("closed")
)

// PageError reports the gfn a page operation failed on.
type PageError struct {
	Op  string // "read", "write", "evict", ...
	GFN GFN
	Err error
}

func (e *PageError) Error() string { return fmt.Sprintf("%s gfn %#x: %v", e.Op, uint64(e.GFN), e.Err) }

// Unwrap returns the underlying error.
func (e *PageError) Unwrap() error { return e.Err }
