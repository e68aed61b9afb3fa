//go:build xen && linux

package xenctrl

/*
#cgo pkg-config: xenlight
#include "libxlshim.h"
*/
import "C"

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"unsafe"

	"github.com/xenmig/xenmig/hypervisor"
)

// toolstack is a libxl context: what the toolstack itself does (keeping a
// domain's configuration, building a domain with its devices) is done by
// libxl, not re-implemented. Its children (hotplug scripts) are reaped by
// libxl on every SIGCHLD the Go runtime reports (libxl_sigchld_owner_mainloop:
// libxl installs no signal handler in this Go process).
type toolstack struct {
	ctx    *C.libxl_ctx
	log    *C.xentoollog_logger // libxl's own: its errors explain a failed create
	sigs   chan os.Signal
	reaped chan struct{} // closed when the reaper has stopped using ctx
}

// toolstack returns the Host's libxl context, opening it on first use.
func (h *Host) toolstack() (*toolstack, error) {
	h.tkOnce.Do(func() {
		var rc C.int
		var lg *C.xentoollog_logger
		verbose := C.int(0)
		if h.opts.libLog {
			verbose = 1
		}
		ctx := C.xenmig_libxl_open(verbose, &lg, &rc)
		if ctx == nil {
			h.tkErr = &Error{Call: "libxl_ctx_alloc", Detail: fmt.Sprintf("libxl error %d", int(rc))}
			return
		}
		t := &toolstack{ctx: ctx, log: lg, sigs: make(chan os.Signal, 1), reaped: make(chan struct{})}
		signal.Notify(t.sigs, syscall.SIGCHLD)
		go func() {
			defer close(t.reaped)
			for range t.sigs {
				C.libxl_childproc_sigchld_occurred(ctx)
			}
		}()
		h.tk = t
	})
	return h.tk, h.tkErr
}

// close stops the reaper, waits until it no longer uses the context (a
// SIGCHLD already queued is still handed to libxl), then frees the context
// (libxl_ctx_free). Freeing it under a running reaper aborted xenmig in the
// lab (libxl_childproc_sigchld_occurred on a freed context).
func (t *toolstack) close() {
	signal.Stop(t.sigs)
	close(t.sigs)
	<-t.reaped
	C.libxl_ctx_free(t.ctx)
	C.xtl_logger_destroy(t.log)
}

// libxlMu serialises the toolstack's long operations: one domain creation
// at a time, as xl does.
var libxlMu sync.Mutex

// configJSON wraps libxl_retrieve_domain_configuration and
// libxl_domain_config_to_json: libxl's own record of d's configuration,
// brought up to date with what changed at runtime (generated MACs, UUID,
// hot-plugged devices, memory targets), as `xl migrate` sends it.
func (t *toolstack) configJSON(d hypervisor.DomID) ([]byte, error) {
	var rc C.int
	js := C.xenmig_libxl_config_json(t.ctx, C.uint32_t(d), &rc)
	if js == nil {
		return nil, &Error{Call: "libxl_retrieve_domain_configuration", Dom: d, HasDom: true,
			Detail: fmt.Sprintf("libxl error %d: is it a domain libxl (xl) created?", int(rc))}
	}
	defer C.free(unsafe.Pointer(js))
	return []byte(C.GoString(js)), nil
}

// createPaused wraps libxl_domain_config_from_json and
// libxl_domain_create_new under name: libxl builds the domain from the
// migrated configuration with its devices and backends and leaves it paused.
func (t *toolstack) createPaused(js []byte, name string) (hypervisor.DomID, error) {
	cjs := C.CString(string(js))
	defer C.free(unsafe.Pointer(cjs))
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	libxlMu.Lock()
	defer libxlMu.Unlock()
	var domid C.uint32_t
	if rc := C.xenmig_libxl_create_paused(t.ctx, cjs, cname, &domid); rc != 0 {
		return 0, &Error{Call: "libxl_domain_create_new", Detail: fmt.Sprintf("domain %q: libxl error %d (libxl's messages above say why)", name, int(rc))}
	}
	return hypervisor.DomID(domid), nil
}
