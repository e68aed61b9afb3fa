package xenctrl

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/xenmig/xenmig/hypervisor"
)

func TestSentinel(t *testing.T) {
	for _, tt := range []struct {
		class class
		errno syscall.Errno
		want  error
	}{
		{classDomain, syscall.ESRCH, hypervisor.ErrNotFound},
		{classDomain, syscall.EBUSY, hypervisor.ErrBusy},
		{classDomain, syscall.EINVAL, hypervisor.ErrInvalid},
		{classDomain, syscall.E2BIG, hypervisor.ErrInvalid},
		{classDomain, syscall.ENOMEM, nil},
		{classDomain, syscall.EPERM, nil},
		{classForeign, syscall.ENOENT, hypervisor.ErrPaged},
		{classForeign, syscall.EAGAIN, hypervisor.ErrPaged},
		{classForeign, syscall.EINVAL, hypervisor.ErrNotPopulated},
		{classForeign, syscall.EFAULT, hypervisor.ErrNotPopulated},
		{classForeign, syscall.ESRCH, hypervisor.ErrNotFound},
		{classForeign, syscall.EPERM, nil},
		{classStore, syscall.ENOENT, hypervisor.ErrNotFound},
		{classStore, syscall.EACCES, nil},
		{classPagingLoad, syscall.ENOENT, hypervisor.ErrNotPopulated},
		{classPagingLoad, syscall.ENOSYS, hypervisor.ErrPagingUnsupported},
		{classPagingEnable, syscall.ENOSYS, hypervisor.ErrPagingUnsupported},
		{classPagingEnable, syscall.EOPNOTSUPP, hypervisor.ErrGuestUnsupported},
		{classPagingEnable, syscall.ENODEV, hypervisor.ErrGuestUnsupported},
		{classPagingEnable, syscall.EMLINK, hypervisor.ErrGuestUnsupported},
		{classPagingEnable, syscall.EXDEV, hypervisor.ErrGuestUnsupported},
		{classPagingEnable, syscall.EBUSY, hypervisor.ErrBusy},
		{classPagingEnable, syscall.ESRCH, hypervisor.ErrNotFound},
		{classPagingOp, syscall.ENOSYS, hypervisor.ErrPagingUnsupported},
		{classPagingOp, syscall.EBUSY, hypervisor.ErrBusy},
		{classPagingOp, syscall.ENODEV, hypervisor.ErrClosed},
		{classPagingOp, syscall.EINVAL, hypervisor.ErrInvalid},
		{classPagingOp, syscall.ENOMEM, nil},
	} {
		if got := sentinel(tt.class, tt.errno); got != tt.want {
			t.Errorf("sentinel(%d, %s) = %v, want %v", tt.class, errnoName(tt.errno), got, tt.want)
		}
	}
}

func TestErrorWrapsErrnoAndSentinel(t *testing.T) {
	err := error(newError(classPagingOp, "xc_mem_paging_evict", 3, syscall.EBUSY).withGFN(0x42))
	want := "xc_mem_paging_evict(dom 3, gfn 0x42): device or resource busy (EBUSY)"
	if got := err.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, syscall.EBUSY) {
		t.Errorf("errors.Is(%v, EBUSY) = false, want true", err)
	}
	if !errors.Is(err, hypervisor.ErrBusy) {
		t.Errorf("errors.Is(%v, ErrBusy) = false, want true", err)
	}
	if errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("errors.Is(%v, ErrNotFound) = true, want false", err)
	}
	var xe *Error
	if !errors.As(fmt.Errorf("wrapped: %w", err), &xe) || xe.Call != "xc_mem_paging_evict" || xe.Dom != 3 || xe.GFN != 0x42 {
		t.Errorf("errors.As(*Error) = %+v, want call xc_mem_paging_evict dom 3 gfn 0x42", xe)
	}
}

func TestPageError(t *testing.T) {
	err := pageError("read", 0x42, &Error{Call: "xenforeignmemory_map", Dom: 7, HasDom: true, Errno: syscall.ENOENT, Kind: sentinel(classForeign, syscall.ENOENT)})
	var pe *hypervisor.PageError
	if !errors.As(err, &pe) || pe.GFN != 0x42 || pe.Op != "read" {
		t.Fatalf("pageError() = %v, want a *hypervisor.PageError for read gfn 0x42", err)
	}
	if !errors.Is(err, hypervisor.ErrPaged) || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("errors.Is(%v, ErrPaged / ENOENT) = false, want true", err)
	}
	want := "read gfn 0x42: xenforeignmemory_map(dom 7): no such file or directory (ENOENT)"
	if got := err.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var xe *Error
	if errors.As(err, &xe); xe.GFN != 0x42 {
		t.Errorf("inner *Error GFN = %#x, want 0x42", uint64(xe.GFN))
	}
}

func TestErrorWithoutErrno(t *testing.T) {
	for _, tt := range []struct {
		err  *Error
		want string
	}{
		{&Error{Call: "xs_open"}, "xs_open: failed"},
		{&Error{Call: "xc_hvm_param_get", Dom: 2, HasDom: true, Kind: hypervisor.ErrGuestUnsupported, Detail: "why"},
			"xc_hvm_param_get(dom 2): guest not supported: why"},
		{newError(classDomain, "xc_domain_pause", 4, errors.New("odd")), "xc_domain_pause(dom 4): failed: odd"},
		{&Error{Call: "x", Errno: syscall.Errno(200)}, "x: errno 200 (errno 200)"},
	} {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestPagingEnableENOSYS(t *testing.T) {
	err := newError(classPagingEnable, "xc_mem_paging_enable", 5, syscall.ENOSYS)
	if !errors.Is(err, hypervisor.ErrPagingUnsupported) {
		t.Fatalf("errors.Is(%v, ErrPagingUnsupported) = false, want true", err)
	}
	msg := err.Error()
	for _, want := range []string{"xc_mem_paging_enable(dom 5)", "ENOSYS", "CONFIG_MEM_PAGING", "Debian", "CONFIG_UNSUPPORTED=y", "CONFIG_MEM_PAGING=y", "--mode precopy"} {
		if !strings.Contains(msg, want) {
			t.Errorf("ENOSYS message %q lacks %q", msg, want)
		}
	}
}

func TestPagingEnablePreconditions(t *testing.T) {
	for _, tt := range []struct {
		errno syscall.Errno
		want  error
		says  string
	}{
		{syscall.EOPNOTSUPP, hypervisor.ErrGuestUnsupported, "PV dom0"},
		{syscall.ENODEV, hypervisor.ErrGuestUnsupported, "hardware-assisted paging"},
		{syscall.EMLINK, hypervisor.ErrGuestUnsupported, "passthrough"},
		{syscall.EXDEV, hypervisor.ErrGuestUnsupported, "populate-on-demand"},
		{syscall.EBUSY, hypervisor.ErrBusy, "already attached"},
	} {
		err := newError(classPagingEnable, "xc_mem_paging_enable", 5, tt.errno)
		if !errors.Is(err, tt.want) {
			t.Errorf("enable with %s: errors.Is(%v, %v) = false, want true", errnoName(tt.errno), err, tt.want)
		}
		if !strings.Contains(err.Error(), tt.says) {
			t.Errorf("enable with %s: message %q lacks %q", errnoName(tt.errno), err, tt.says)
		}
	}
}
