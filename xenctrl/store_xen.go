//go:build xen && linux

package xenctrl

/*
#include "xenshim.h"
*/
import "C"

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xenmig/xenmig/hypervisor"
)

func storeError(call, path string, err error) error {
	e := &Error{Call: call, Detail: "path " + strconv.Quote(path)}
	if errno := errnoOf(err); errno != 0 {
		e.Errno, e.Kind = errno, sentinel(classStore, errno)
	}
	return e
}

// DomainPath wraps xs_get_domain_path: /local/domain/<id>.
func (h *Host) DomainPath(d hypervisor.DomID) (string, error) {
	p, err := C.xs_get_domain_path(h.xs, C.uint(d))
	if p == nil {
		return "", newError(classStore, "xs_get_domain_path", d, err)
	}
	defer C.free(unsafe.Pointer(p))
	return C.GoString(p), nil
}

// StoreRead wraps xs_read(h, XBT_NULL, path, &len); ErrNotFound (ENOENT) if
// the key does not exist.
func (h *Host) StoreRead(path string) (string, error) {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	var n C.uint
	v, err := C.xs_read(h.xs, 0, cp, &n)
	if v == nil {
		return "", storeError("xs_read", path, err)
	}
	defer C.free(v)
	return C.GoStringN((*C.char)(v), C.int(n)), nil
}

// StoreWrite wraps xs_write(h, XBT_NULL, path, value, len), which creates
// the key and its parents.
func (h *Host) StoreWrite(path, value string) error {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	cv := C.CString(value)
	defer C.free(unsafe.Pointer(cv))
	if ok, err := C.xs_write(h.xs, 0, cp, unsafe.Pointer(cv), C.uint(len(value))); !ok {
		return storeError("xs_write", path, err)
	}
	return nil
}

// StoreRemove wraps xs_rm(h, XBT_NULL, path).
func (h *Host) StoreRemove(path string) error {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	if ok, err := C.xs_rm(h.xs, 0, cp); !ok {
		return storeError("xs_rm", path, err)
	}
	return nil
}

var watchTokens atomic.Uint64

// StoreWatch opens a xenstore connection of its own (xs_open) and sets a
// watch on it (xs_watch); a goroutine polls xs_fileno and reads the events
// with xs_check_watch (the non-blocking form of xs_read_watch) until ctx is
// done, then xs_unwatch, xs_close and the channel is closed. xenstored fires
// one event for path itself when the watch is set.
func (h *Host) StoreWatch(ctx context.Context, path string) (<-chan string, error) {
	xs, err := C.xs_open(0)
	if xs == nil {
		return nil, storeError("xs_open", path, err)
	}
	cp := C.CString(path)
	ct := C.CString(fmt.Sprintf("xenmig-%d", watchTokens.Add(1)))
	if ok, err := C.xs_watch(xs, cp, ct); !ok {
		C.free(unsafe.Pointer(cp))
		C.free(unsafe.Pointer(ct))
		C.xs_close(xs)
		return nil, storeError("xs_watch", path, err)
	}
	fd := int32(C.xs_fileno(xs))
	ch := make(chan string, 16)
	go func() {
		defer func() {
			C.xs_unwatch(xs, cp, ct)
			C.xs_close(xs)
			C.free(unsafe.Pointer(cp))
			C.free(unsafe.Pointer(ct))
			close(ch)
		}()
		fds := []unix.PollFd{{Fd: fd, Events: unix.POLLIN}}
		for ctx.Err() == nil {
			n, err := unix.Poll(fds, int(pollInterval/time.Millisecond))
			if err == unix.EINTR || n == 0 {
				continue
			}
			if err != nil {
				return
			}
			for {
				vec, err := C.xs_check_watch(xs)
				if vec == nil {
					if errnoOf(err) == syscall.EAGAIN {
						break
					}
					return // the connection failed
				}
				p := C.GoString(*(**C.char)(unsafe.Pointer(vec))) // vec[XS_WATCH_PATH]
				C.free(unsafe.Pointer(vec))
				select {
				case ch <- p:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch, nil
}
