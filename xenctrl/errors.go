package xenctrl

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/xenmig/xenmig/hypervisor"
)

// ErrNotBuilt is returned by Open in a binary built without the real Xen
// backend (without the build tag `xen`).
var ErrNotBuilt = errors.New("xenmig was built without the real Xen backend; rebuild with `make build-xen` (go build -tags xen)")

// ErrNoHypervisor is wrapped by Open's error when no Xen hypervisor is
// reachable from this host (no /dev/xen/privcmd: not a Xen dom0, or the
// xen-privcmd module is not loaded).
var ErrNoHypervisor = errors.New("no Xen hypervisor is reachable (is this a Xen dom0 with /dev/xen/privcmd? is xenfs mounted and the xen_privcmd module loaded?)")

// Error is a failed call into a Xen library. It names the call, the domain
// and, for a per-gfn call outside a *hypervisor.PageError, the gfn.
//
// errors.Is matches both the errno (syscall.Errno) and, where one applies, the
// contract's sentinel error (hypervisor.ErrBusy, ErrNotFound, ...).
type Error struct {
	Call   string           // the C function, e.g. "xc_mem_paging_evict"
	Dom    hypervisor.DomID // the domain the call was about
	HasDom bool             // Dom is meaningful
	GFN    hypervisor.GFN   // the gfn the call was about
	HasGFN bool             // GFN is meaningful and named in the message
	Errno  syscall.Errno    // errno the call failed with, 0 if it set none
	Kind   error            // the contract's sentinel error, nil if none applies
	Detail string           // an explanation for the operator, may be empty
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Call)
	switch {
	case e.HasDom && e.HasGFN:
		fmt.Fprintf(&b, "(dom %d, gfn %#x)", e.Dom, uint64(e.GFN))
	case e.HasDom:
		fmt.Fprintf(&b, "(dom %d)", e.Dom)
	case e.HasGFN:
		fmt.Fprintf(&b, "(gfn %#x)", uint64(e.GFN))
	}
	switch {
	case e.Errno != 0:
		fmt.Fprintf(&b, ": %v (%s)", e.Errno, errnoName(e.Errno))
	case e.Kind != nil:
		fmt.Fprintf(&b, ": %v", e.Kind)
	default:
		b.WriteString(": failed")
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// Unwrap returns the errno and the sentinel error, those that are set.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Errno != 0 {
		errs = append(errs, e.Errno)
	}
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	return errs
}

// class says how a call's errno maps to the contract: the same errno means
// different things to different calls (ENOENT is a missing key to xenstore
// but a paged-out gfn to a foreign mapping).
type class int

const (
	classDomain       class = iota // domctls, memory ops: ESRCH is a missing domain
	classForeign                   // per-gfn errors of xenforeignmemory_map
	classStore                     // xenstore: ENOENT is a missing key
	classPagingEnable              // xc_mem_paging_enable: the preconditions
	classPagingOp                  // nominate, evict, disable
	classPagingLoad                // load: ENOENT is a gfn no longer paged out
)

// sentinel maps errno, as returned by a call of class c, to the contract's
// sentinel error, or nil if none applies.
func sentinel(c class, errno syscall.Errno) error {
	switch c {
	case classForeign:
		switch errno {
		case syscall.ENOENT, syscall.EAGAIN:
			return hypervisor.ErrPaged
		case syscall.EINVAL, syscall.EFAULT, syscall.ENXIO:
			return hypervisor.ErrNotPopulated
		case syscall.ESRCH:
			return hypervisor.ErrNotFound
		}
		return nil
	case classStore:
		switch errno {
		case syscall.ENOENT:
			return hypervisor.ErrNotFound
		case syscall.EINVAL:
			return hypervisor.ErrInvalid
		case syscall.EBUSY, syscall.EAGAIN:
			return hypervisor.ErrBusy
		}
		return nil
	case classPagingEnable:
		switch errno {
		case syscall.ENOSYS:
			return hypervisor.ErrPagingUnsupported
		case syscall.EOPNOTSUPP, syscall.ENODEV, syscall.EMLINK, syscall.EXDEV:
			return hypervisor.ErrGuestUnsupported
		}
	case classPagingLoad:
		if errno == syscall.ENOENT {
			// prep found the gfn neither paged nor paging in: the guest
			// released it (or took it back) since it was evicted.
			return hypervisor.ErrNotPopulated
		}
		fallthrough
	case classPagingOp:
		switch errno {
		case syscall.ENOSYS:
			return hypervisor.ErrPagingUnsupported
		case syscall.ENODEV:
			// Per-page paging ops on a domain with no ring attached.
			return hypervisor.ErrClosed
		}
	}
	switch errno {
	case syscall.ESRCH:
		return hypervisor.ErrNotFound
	case syscall.EBUSY:
		return hypervisor.ErrBusy
	case syscall.EINVAL, syscall.E2BIG, syscall.ERANGE:
		return hypervisor.ErrInvalid
	}
	return nil
}

// newError builds the *Error of a call of class c on domain d that failed
// with err (the errno cgo returned; nil or a non-errno error is kept as
// "failed" with no errno).
func newError(c class, call string, d hypervisor.DomID, err error) *Error {
	e := &Error{Call: call, Dom: d, HasDom: true}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		e.Errno = errno
		e.Kind = sentinel(c, errno)
		if c == classPagingEnable {
			e.Detail = pagingEnableDetail(errno)
		}
	} else if err != nil {
		e.Detail = err.Error()
	}
	return e
}

// withGFN sets the gfn the call was about and returns e.
func (e *Error) withGFN(g hypervisor.GFN) *Error {
	e.GFN, e.HasGFN = g, true
	return e
}

// pageError wraps a per-gfn failure in the contract's *hypervisor.PageError;
// the PageError names the gfn, so the inner *Error records it without
// repeating it in the message.
func pageError(op string, g hypervisor.GFN, e *Error) error {
	e.GFN = g
	return &hypervisor.PageError{Op: op, GFN: g, Err: e}
}

// errnoName returns the symbolic name of the errnos this package explains.
func errnoName(e syscall.Errno) string {
	if n, ok := errnoNames[e]; ok {
		return n
	}
	return fmt.Sprintf("errno %d", int(e))
}

var errnoNames = map[syscall.Errno]string{
	syscall.EPERM: "EPERM", syscall.ENOENT: "ENOENT", syscall.ESRCH: "ESRCH",
	syscall.EINTR: "EINTR", syscall.EIO: "EIO", syscall.ENXIO: "ENXIO",
	syscall.E2BIG: "E2BIG", syscall.EAGAIN: "EAGAIN", syscall.ENOMEM: "ENOMEM",
	syscall.EACCES: "EACCES", syscall.EFAULT: "EFAULT", syscall.EBUSY: "EBUSY",
	syscall.EEXIST: "EEXIST", syscall.EXDEV: "EXDEV", syscall.ENODEV: "ENODEV",
	syscall.EINVAL: "EINVAL", syscall.ENOSPC: "ENOSPC", syscall.EMLINK: "EMLINK",
	syscall.ERANGE: "ERANGE", syscall.ENOSYS: "ENOSYS", syscall.EOPNOTSUPP: "EOPNOTSUPP",
	syscall.ETIMEDOUT: "ETIMEDOUT",
}
