package xenctrl

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/xenmig/xenmig/hypervisor"
)

// Operator-facing explanations of the ways enabling paging fails
// (xc_mem_paging_enable, Xen 4.17 xen/common/vm_event.c).
const (
	// MsgPagingUnsupported explains ENOSYS from the paging calls.
	MsgPagingUnsupported = "this Xen hypervisor was built without CONFIG_MEM_PAGING " +
		"(Debian's stock xen-hypervisor-4.17 is), so post-copy and hybrid migration cannot " +
		"page the destination's memory; rebuild Xen with CONFIG_UNSUPPORTED=y and " +
		"CONFIG_MEM_PAGING=y and boot it, or migrate with --mode precopy"
	// MsgHVMDom0 explains EOPNOTSUPP: dom0 is HVM or PVH.
	MsgHVMDom0 = "dom0 is an HVM/PVH domain; Xen allows a paging agent only in a PV dom0 " +
		"(boot dom0 as PV, the default), or migrate with --mode precopy"
	// MsgNoHAP explains ENODEV: the guest runs on shadow paging.
	MsgNoHAP = "the guest does not use hardware-assisted paging (HAP: Intel EPT or AMD NPT); " +
		"enable it (hap=1 in the xl config, on a CPU that has it), or migrate with --mode precopy"
	// MsgPassthrough explains EMLINK: the guest has an IOMMU context.
	MsgPassthrough = "the guest has PCI passthrough or an IOMMU context; paged memory is not " +
		"compatible with device DMA; detach the devices (and drop passthrough= from the config) " +
		"or migrate with --mode precopy"
	// MsgPoD explains EXDEV: populate-on-demand is active.
	MsgPoD = "the guest uses populate-on-demand (memory < maxmem in its config); set " +
		"memory == maxmem, or migrate with --mode precopy"
	// MsgPagingBusy explains EBUSY: a pager is already attached.
	MsgPagingBusy = "a paging agent is already attached to the domain (xenpaging, or another " +
		"xenmig receiver); only one may be"
	// MsgNoRingPage explains a zero HVM_PARAM_PAGING_RING_PFN.
	MsgNoRingPage = "the domain has no paging ring page (HVM_PARAM_PAGING_RING_PFN is 0); it " +
		"was not built by libxl's x86 HVM/PVH domain builder, which reserves one"
)

// pagingEnableDetail explains the errno of a failed xc_mem_paging_enable.
func pagingEnableDetail(errno syscall.Errno) string {
	switch errno {
	case syscall.ENOSYS:
		return MsgPagingUnsupported
	case syscall.EOPNOTSUPP:
		return MsgHVMDom0
	case syscall.ENODEV:
		return MsgNoHAP
	case syscall.EMLINK:
		return MsgPassthrough
	case syscall.EXDEV:
		return MsgPoD
	case syscall.EBUSY:
		return MsgPagingBusy
	}
	return ""
}

// guestError is one unmet precondition: it wraps
// hypervisor.ErrGuestUnsupported with a plain explanation.
type guestError struct {
	dom hypervisor.DomID
	msg string
}

func (e *guestError) Error() string {
	return fmt.Sprintf("domain %d cannot be paged: %s", e.dom, e.msg)
}
func (e *guestError) Unwrap() error { return hypervisor.ErrGuestUnsupported }

// CheckGuest reports whether a domain can be migrated post-copy (or hybrid)
// from what xc_domain_getinfolist says about it, before anything touches it.
// It returns nil, or one error per unmet precondition joined with
// errors.Join, each wrapping hypervisor.ErrGuestUnsupported.
//
// It checks: not dom0, a PVH guest (not PV, not HVM with a device model),
// hardware-assisted paging,
// not crashed, dying or shut down. Passthrough and populate-on-demand are not
// visible in domain info: EnablePaging detects them (EMLINK, EXDEV), and
// GuestWarnings flags a likely PoD guest.
func CheckGuest(info hypervisor.DomainInfo) error {
	var errs []error
	add := func(msg string) { errs = append(errs, &guestError{dom: info.ID, msg: msg}) }
	if info.ID == 0 {
		add("dom0 cannot be migrated")
	}
	switch {
	case !info.HVM:
		add("it is a PV guest; xenmig migrates PVH guests (type = \"pvh\"): Xen pages only HVM and " +
			"PVH guests, and migrating PV guests needs shadow paging, which Debian's Xen lacks")
	case info.DeviceModel:
		add("it is an HVM guest with a device model, whose state xenmig does not carry; xenmig " +
			"migrates PVH guests (type = \"pvh\"); use `xl migrate` for this one")
	case !info.HAP:
		add(MsgNoHAP)
	}
	switch info.State {
	case hypervisor.StateCrashed:
		add("it has crashed")
	case hypervisor.StateShutdown:
		add("it has shut down")
	case hypervisor.StateDying:
		add("it is being destroyed")
	}
	return errors.Join(errs...)
}

// GuestWarnings returns the doubts about a domain that its info raises but
// cannot settle: memory below maxmem may mean populate-on-demand (the cause of
// EXDEV when paging is enabled), or only a balloon driver at work.
func GuestWarnings(info hypervisor.DomainInfo) []string {
	var w []string
	if info.HVM && info.TotPages+info.PagedPages < info.MaxPages {
		w = append(w, fmt.Sprintf("domain %d has %d of %d pages populated: if it was created with "+
			"memory < maxmem it uses populate-on-demand, which paging refuses (EXDEV); "+
			"a balloon driver is the harmless other cause", info.ID, info.TotPages, info.MaxPages))
	}
	if info.PagedPages > 0 {
		w = append(w, fmt.Sprintf("domain %d already has %d pages paged out: another pager "+
			"(xenpaging?) is attached", info.ID, info.PagedPages))
	}
	return w
}

// CheckDom0 reports whether the control domain can run a paging agent: Xen
// refuses one in an HVM/PVH dom0 (EOPNOTSUPP). It returns nil or an error
// wrapping hypervisor.ErrGuestUnsupported.
func CheckDom0(dom0 hypervisor.DomainInfo) error {
	if dom0.HVM {
		return &guestError{dom: 0, msg: MsgHVMDom0}
	}
	return nil
}
