package xenctrl

import (
	"fmt"

	"github.com/xenmig/xenmig/hypervisor"
)

// XEN_DOMINF_* flags of xc_domaininfo_t (xen/domctl.h).
const (
	dominfDying     = 1 << 0
	dominfHVM       = 1 << 1
	dominfShutdown  = 1 << 2
	dominfPaused    = 1 << 3
	dominfHAP       = 1 << 8
	dominfShutShift = 16
	dominfShutMask  = 255

	shutdownSuspend = 2 // SHUTDOWN_suspend (xen/sched.h)
	shutdownCrash   = 3 // SHUTDOWN_crash

	emuLAPIC = 1 << 0 // XEN_X86_EMU_LAPIC: all Xen emulates for a PVH guest

	invalidMaxVCPUID = ^uint32(0) // XEN_INVALID_MAX_VCPU_ID: no vCPUs
)

// rawDomainInfo is the part of xc_domaininfo_t the contract uses, copied out
// of the C struct by the cgo edge.
type rawDomainInfo struct {
	Domain     uint16
	Flags      uint32
	TotPages   uint64
	MaxPages   uint64
	PagedPages uint64
	MaxVCPUID  uint32
	Handle     [16]byte // xen_domain_handle_t: the UUID
	EmuFlags   uint32   // arch_config.emulation_flags (XEN_X86_EMU_*)
}

// stateFromFlags decodes a domain's run state from XEN_DOMINF_* flags.
func stateFromFlags(flags uint32) hypervisor.State {
	switch {
	case flags&dominfDying != 0:
		return hypervisor.StateDying
	case flags&dominfShutdown != 0:
		switch (flags >> dominfShutShift) & dominfShutMask {
		case shutdownCrash:
			return hypervisor.StateCrashed
		case shutdownSuspend:
			return hypervisor.StateSuspended
		}
		return hypervisor.StateShutdown
	case flags&dominfPaused != 0:
		return hypervisor.StatePaused
	}
	return hypervisor.StateRunning
}

// domainInfo converts raw domain info and the name from xenstore.
func domainInfo(r rawDomainInfo, name string) hypervisor.DomainInfo {
	vcpus := 0
	if r.MaxVCPUID != invalidMaxVCPUID {
		vcpus = int(r.MaxVCPUID) + 1
	}
	return hypervisor.DomainInfo{
		ID:         hypervisor.DomID(r.Domain),
		Name:       name,
		State:      stateFromFlags(r.Flags),
		VCPUs:      vcpus,
		MaxPages:   r.MaxPages,
		TotPages:   r.TotPages,
		PagedPages: r.PagedPages,
		HVM:        r.Flags&dominfHVM != 0,
		HAP:        r.Flags&dominfHAP != 0,
		// PVH: Xen emulates the local APIC only; HVM: much more, and a
		// device model (QEMU) serves the rest.
		DeviceModel: r.Flags&dominfHVM != 0 && r.EmuFlags&^emuLAPIC != 0,
		// Every HVM/PVH guest that resumes cooperatively re-registers its
		// vcpu_info (docs/XEN.md, "Post-copy on real Xen").
		PagedResumeFails: r.Flags&dominfHVM != 0,
		UUID:             formatUUID(r.Handle),
	}
}

// formatUUID renders a domain handle as libxl prints a UUID.
func formatUUID(h [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}
