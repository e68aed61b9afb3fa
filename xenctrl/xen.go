//go:build xen && linux

package xenctrl

/*
#cgo pkg-config: xencontrol xenguest xenevtchn xenforeignmemory xenstore xentoollog
#include "xenshim.h"
*/
import "C"

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"github.com/xenmig/xenmig/hypervisor"
)

var _ hypervisor.Hypervisor = (*Host)(nil)

// Host is a connection to the Xen hypervisor this process runs on (from a
// PV dom0, as root): one libxenctrl, libxenforeignmemory and libxenstore
// handle each, shared by every call. It implements hypervisor.Hypervisor;
// its methods are safe for concurrent use (the libraries' handles are
// reentrant).
type Host struct {
	opts   options
	logger *C.xentoollog_logger
	xch    *C.xc_interface
	fmem   *C.xenforeignmemory_handle
	xs     *C.struct_xs_handle

	tkOnce sync.Once // the libxl context, opened on first use
	tk     *toolstack
	tkErr  error

	mu     sync.Mutex
	closed bool

	// shadowMu serializes log-dirty operations: Xen runs one (preemptible)
	// shadow op per domain at a time and answers another caller's EBUSY
	// (paging_domctl: "Paging op ... with unexpected state"), as the lab
	// saw with two early pushers peeking at once.
	shadowMu sync.Mutex
}

// Open connects to the local Xen hypervisor: xc_interface_open,
// xenforeignmemory_open and xs_open. Without a hypervisor (no
// /dev/xen/privcmd) it fails at once with an error wrapping ErrNoHypervisor
// and ENOENT. The libraries' own error messages are silenced unless
// WithLibraryLog(true) is given.
func Open(opts ...Option) (*Host, error) {
	o := applyOptions(opts)
	h := &Host{opts: o}
	verbose := C.int(0)
	if o.libLog {
		verbose = 1
	}
	h.logger = C.xenmig_logger(verbose)

	xch, err := C.xc_interface_open(h.logger, h.logger, 0)
	if xch == nil {
		h.Close()
		return nil, openError("xc_interface_open", err)
	}
	h.xch = xch
	fmem, err := C.xenforeignmemory_open(h.logger, 0)
	if fmem == nil {
		h.Close()
		return nil, openError("xenforeignmemory_open", err)
	}
	h.fmem = fmem
	xs, err := C.xs_open(0)
	if xs == nil {
		h.Close()
		e := &Error{Call: "xs_open", Detail: "is xenstored running (systemctl status xenstored)?"}
		var errno syscall.Errno
		if errors.As(err, &errno) {
			e.Errno = errno
		}
		return nil, e
	}
	h.xs = xs
	return h, nil
}

// openError reports a library that could not reach the hypervisor.
func openError(call string, err error) error {
	e := &Error{Call: call}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		e.Errno = errno
	}
	if e.Errno == syscall.ENOENT || e.Errno == syscall.ENXIO || e.Errno == syscall.ENODEV || e.Errno == 0 {
		if _, statErr := os.Stat("/dev/xen/privcmd"); statErr != nil {
			return fmt.Errorf("xenctrl: %w: %w", ErrNoHypervisor, e)
		}
	}
	return fmt.Errorf("xenctrl: %w", e)
}

// Close releases the library handles. Pagers must be closed first, and the
// Host must not be used afterwards.
func (h *Host) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	if h.tk != nil {
		h.tk.close()
	}
	if h.xs != nil {
		C.xs_close(h.xs)
	}
	if h.fmem != nil {
		C.xenforeignmemory_close(h.fmem)
	}
	if h.xch != nil {
		C.xc_interface_close(h.xch)
	}
	if h.logger != nil {
		C.xtl_logger_destroy(h.logger)
	}
	return nil
}

// errno extracts the errno cgo returned alongside a C result.
func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}

// rawInfo wraps xc_domain_getinfolist(xch, d, 1, &info), checking that the
// domain returned is d: the call returns the next domain >= d.
func (h *Host) rawInfo(d hypervisor.DomID) (rawDomainInfo, error) {
	var info C.xc_domaininfo_t
	n, err := C.xc_domain_getinfolist(h.xch, C.uint32_t(d), 1, &info)
	if n < 0 {
		return rawDomainInfo{}, newError(classDomain, "xc_domain_getinfolist", d, err)
	}
	if n == 0 || hypervisor.DomID(info.domain) != d {
		return rawDomainInfo{}, &Error{Call: "xc_domain_getinfolist", Dom: d, HasDom: true,
			Errno: syscall.ESRCH, Kind: hypervisor.ErrNotFound, Detail: "no such domain"}
	}
	return rawFromC(&info), nil
}

func rawFromC(info *C.xc_domaininfo_t) rawDomainInfo {
	r := rawDomainInfo{
		Domain:     uint16(info.domain),
		Flags:      uint32(info.flags),
		TotPages:   uint64(info.tot_pages),
		MaxPages:   uint64(info.max_pages),
		PagedPages: uint64(info.paged_pages),
		MaxVCPUID:  uint32(info.max_vcpu_id),
		EmuFlags:   uint32(info.arch_config.emulation_flags),
	}
	for i := range r.Handle {
		r.Handle[i] = byte(info.handle[i])
	}
	return r
}

// name reads /local/domain/<id>/name; "" if it has none.
func (h *Host) name(d hypervisor.DomID) string {
	s, err := h.StoreRead(fmt.Sprintf("/local/domain/%d/name", d))
	if err != nil {
		return ""
	}
	return s
}

// Domains wraps xc_domain_getinfolist from domid 1, in batches, with names
// from xenstore /local/domain/<id>/name.
func (h *Host) Domains() ([]hypervisor.DomainInfo, error) {
	const batch = 64
	var infos [batch]C.xc_domaininfo_t
	var out []hypervisor.DomainInfo
	next := uint32(1)
	for {
		n, err := C.xc_domain_getinfolist(h.xch, C.uint32_t(next), batch, &infos[0])
		if n < 0 {
			return nil, newError(classDomain, "xc_domain_getinfolist", hypervisor.DomID(next), err)
		}
		for i := 0; i < int(n); i++ {
			r := rawFromC(&infos[i])
			out = append(out, domainInfo(r, h.name(hypervisor.DomID(r.Domain))))
			next = uint32(r.Domain) + 1
		}
		if int(n) < batch {
			return out, nil
		}
	}
}

// Lookup finds a domain by its xenstore name, as libxl_name_to_domid does.
func (h *Host) Lookup(name string) (hypervisor.DomID, error) {
	doms, err := h.Domains()
	if err != nil {
		return 0, err
	}
	for _, d := range doms {
		if d.Name == name {
			return d.ID, nil
		}
	}
	return 0, fmt.Errorf("xenctrl: no domain called %q: %w", name, hypervisor.ErrNotFound)
}

// Info wraps xc_domain_getinfolist(xch, d, 1, &info), checking that
// info.domain == d; the name comes from xenstore.
func (h *Host) Info(d hypervisor.DomID) (hypervisor.DomainInfo, error) {
	r, err := h.rawInfo(d)
	if err != nil {
		return hypervisor.DomainInfo{}, err
	}
	return domainInfo(r, h.name(d)), nil
}

// Config returns what a destination shell of d is built from: libxl's own
// record of the domain's configuration as JSON (libxl_retrieve_domain_configuration,
// as `xl migrate` sends it), its UUID, its toolstack ring pages
// (HVM_PARAM_STORE_PFN, HVM_PARAM_CONSOLE_PFN) and its CPU policy
// (xc_cpu_policy_get_domain, serialised). A domain libxl has no record of
// (not created by xl) falls back to its xl configuration file, found with the
// WithConfigPaths patterns (default /etc/xen/<name>.cfg ...). An HVM or PVH
// domain without its ring pages is still being built: hypervisor.ErrBusy.
func (h *Host) Config(d hypervisor.DomID) (hypervisor.DomainConfig, error) {
	info, err := h.Info(d)
	if err != nil {
		return hypervisor.DomainConfig{}, err
	}
	raw, err := h.configJSON(d)
	if err != nil {
		_, file, ferr := findConfig(h.opts.configPaths, info.Name)
		if ferr != nil {
			return hypervisor.DomainConfig{}, fmt.Errorf("xenctrl: config of domain %d: %w", d, errors.Join(err, ferr))
		}
		raw = file
	}
	cfg := domainConfig(info, raw)
	if cfg.SpecialPages, err = h.specialPages(d); err != nil {
		return cfg, err
	}
	if info.HVM && len(cfg.SpecialPages) < 2 {
		// libxl sets the ring pages while it builds the domain: one
		// without them is being created, or restarted after a crash.
		return cfg, fmt.Errorf("xenctrl: config of domain %d (%s): it has no xenstore or console ring yet: the toolstack is still building it; migrate it once it runs: %w",
			d, info.Name, hypervisor.ErrBusy)
	}
	if cfg.CPUPolicy, err = h.cpuPolicyOf(d); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// configJSON is libxl's record of d's configuration.
func (h *Host) configJSON(d hypervisor.DomID) ([]byte, error) {
	t, err := h.toolstack()
	if err != nil {
		return nil, err
	}
	return t.configJSON(d)
}

// xl runs the toolstack's xl with args, returning its combined output in the
// error when it fails.
func (h *Host) xl(args ...string) error {
	cmd := exec.Command(h.opts.xl, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("xenctrl: %s %v: %w: %s", h.opts.xl, args, err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// CreateShell builds the destination domain, paused, under cfg.Name: from
// libxl's JSON record (libxl_domain_config_from_json,
// libxl_domain_create_new, through this process's libxl context) or, for a
// configuration carried as an xl file, `xl create -p`. The toolstack builds
// the domain, its memory and its devices (backends) and leaves it paused;
// xenmig then takes it over for memory and vCPU state. The guest's CPU
// policy is applied before it ever runs (xc_set_domain_cpu_policy): a host
// that cannot offer it refuses with hypervisor.ErrIncompatible and the shell
// is destroyed. The host must have everything the config names (disk paths,
// bridges, kernels).
func (h *Host) CreateShell(cfg hypervisor.DomainConfig) (hypervisor.DomID, error) {
	if err := checkShellConfig(cfg); err != nil {
		return 0, fmt.Errorf("xenctrl: create shell: %w", err)
	}
	if _, err := h.Lookup(cfg.Name); err == nil {
		return 0, fmt.Errorf("xenctrl: create shell: a domain called %q already exists: %w", cfg.Name, hypervisor.ErrBusy)
	}
	var d hypervisor.DomID
	var err error
	if isJSONConfig(cfg.Raw) {
		var t *toolstack
		if t, err = h.toolstack(); err == nil {
			d, err = t.createPaused(cfg.Raw, cfg.Name)
		}
	} else {
		d, err = h.createFromFile(cfg)
	}
	if err != nil {
		return 0, fmt.Errorf("xenctrl: create shell: %w", err)
	}
	if len(cfg.CPUPolicy) > 0 {
		if err := h.setCPUPolicy(d, cfg.CPUPolicy); err != nil {
			h.Destroy(d)
			return 0, fmt.Errorf("xenctrl: create shell: %w", err)
		}
	}
	return d, nil
}

// createFromFile runs `xl create -p` with an xl configuration file's text
// (written to a temporary file) under cfg.Name.
func (h *Host) createFromFile(cfg hypervisor.DomainConfig) (hypervisor.DomID, error) {
	f, err := os.CreateTemp("", "xenmig-*.cfg")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(cfg.Raw); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := h.xl(xlCreateArgs(f.Name(), cfg.Name)...); err != nil {
		return 0, err
	}
	return h.Lookup(cfg.Name)
}

// Rename runs `xl rename`, which is libxl_domain_rename: it renames the
// domain in xenstore (/local/domain/<id>/name, /vm/<uuid>/name) and in
// libxl's stored configuration.
func (h *Host) Rename(d hypervisor.DomID, name string) error {
	return h.xl("rename", strconv.Itoa(int(d)), name)
}

// Pause wraps xc_domain_pause (reference counted).
func (h *Host) Pause(d hypervisor.DomID) error {
	if rc, err := C.xc_domain_pause(h.xch, C.uint32_t(d)); rc != 0 {
		return newError(classDomain, "xc_domain_pause", d, err)
	}
	return nil
}

// Unpause wraps xc_domain_unpause.
func (h *Host) Unpause(d hypervisor.DomID) error {
	if rc, err := C.xc_domain_unpause(h.xch, C.uint32_t(d)); rc != 0 {
		return newError(classDomain, "xc_domain_unpause", d, err)
	}
	return nil
}

// Destroy runs `xl destroy`, which is libxl_domain_destroy: it tears down
// the domain's devices and device model too. Where xl is not installed it
// falls back to xc_domain_destroy, which kills the domain but leaves its
// backends to the toolstack.
func (h *Host) Destroy(d hypervisor.DomID) error {
	err := h.xl("destroy", strconv.Itoa(int(d)))
	if err == nil || !errors.Is(err, exec.ErrNotFound) {
		return err
	}
	if rc, cerr := C.xc_domain_destroy(h.xch, C.uint32_t(d)); rc != 0 {
		return newError(classDomain, "xc_domain_destroy", d, cerr)
	}
	return nil
}

// SaveCPU wraps xc_domain_hvm_getcontext (sized by a first call with no
// buffer), xc_hvm_param_get for the parameters Xen's saver carries (those
// that are non-zero) and xc_domain_get_tsc_info. d must be paused.
func (h *Host) SaveCPU(d hypervisor.DomID) (hypervisor.CPUState, error) {
	var s hypervisor.CPUState
	size, err := C.xc_domain_hvm_getcontext(h.xch, C.uint32_t(d), nil, 0)
	if size < 0 {
		return s, newError(classDomain, "xc_domain_hvm_getcontext(size)", d, err)
	}
	buf := make([]byte, int(size))
	if size > 0 {
		n, err := C.xc_domain_hvm_getcontext(h.xch, C.uint32_t(d), (*C.uint8_t)(unsafe.Pointer(&buf[0])), C.uint32_t(size))
		if n < 0 {
			return s, newError(classDomain, "xc_domain_hvm_getcontext", d, err)
		}
		buf = buf[:int(n)]
	}
	s.HVMContext = buf
	s.Params = make(map[uint32]uint64)
	for _, p := range hvmSaveParams {
		var v C.uint64_t
		if rc, err := C.xc_hvm_param_get(h.xch, C.uint32_t(d), C.uint32_t(p), &v); rc != 0 {
			e := newError(classDomain, "xc_hvm_param_get", d, err)
			e.Detail = fmt.Sprintf("HVM param %d", p)
			return s, e
		}
		if v != 0 {
			s.Params[p] = uint64(v)
		}
	}
	var mode, khz, inc C.uint32_t
	var ns C.uint64_t
	if rc, err := C.xc_domain_get_tsc_info(h.xch, C.uint32_t(d), &mode, &ns, &khz, &inc); rc != 0 {
		return s, newError(classDomain, "xc_domain_get_tsc_info", d, err)
	}
	s.TSC = hypervisor.TSCInfo{Mode: uint32(mode), ElapsedNsec: uint64(ns), GTSCkHz: uint32(khz), Incarnation: uint32(inc)}
	return s, nil
}

// RestoreCPU wraps xc_domain_set_tsc_info, xc_hvm_param_set for each saved
// parameter that differs from d's (xc_hvm_param_get) and
// xc_domain_hvm_setcontext, in the restorer's order, into a paused d.
func (h *Host) RestoreCPU(d hypervisor.DomID, s hypervisor.CPUState) error {
	t := s.TSC
	if rc, err := C.xc_domain_set_tsc_info(h.xch, C.uint32_t(d), C.uint32_t(t.Mode), C.uint64_t(t.ElapsedNsec), C.uint32_t(t.GTSCkHz), C.uint32_t(t.Incarnation)); rc != 0 {
		return newError(classDomain, "xc_domain_set_tsc_info", d, err)
	}
	for _, p := range hvmSaveParams { // a fixed order, not the map's
		v, ok := s.Params[p]
		if !ok {
			continue
		}
		// The shell's builder set most of them already, some for good
		// (set-once: VIRIDIAN, IOREQ_*, MCA_CAP fail EEXIST when changed):
		// only what differs is set.
		var cur C.uint64_t
		if rc, _ := C.xc_hvm_param_get(h.xch, C.uint32_t(d), C.uint32_t(p), &cur); rc == 0 && uint64(cur) == v {
			continue
		}
		if rc, err := C.xc_hvm_param_set(h.xch, C.uint32_t(d), C.uint32_t(p), C.uint64_t(v)); rc != 0 {
			e := newError(classDomain, "xc_hvm_param_set", d, err)
			e.Detail = fmt.Sprintf("HVM param %d", p)
			return e
		}
	}
	if len(s.HVMContext) == 0 {
		return fmt.Errorf("xenctrl: restore CPU of domain %d: empty HVM context: %w", d, hypervisor.ErrInvalid)
	}
	ctx := s.HVMContext
	if rc, err := C.xc_domain_hvm_setcontext(h.xch, C.uint32_t(d), (*C.uint8_t)(unsafe.Pointer(&ctx[0])), C.uint32_t(len(ctx))); rc != 0 {
		return newError(classDomain, "xc_domain_hvm_setcontext", d, err)
	}
	runtime.KeepAlive(ctx)
	return nil
}
