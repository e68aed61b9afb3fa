package hypervisor

import (
	"encoding/hex"
	"fmt"
)

// DomID is a Xen domain id (domid_t).
type DomID uint32

// GFN is a guest frame number: a guest-physical address >> 12.
type GFN uint64

// State is the run state of a domain, as xc_domaininfo_t.flags reports it.
type State int

// Domain states.
const (
	StateRunning   State = iota // scheduled or runnable
	StatePaused                 // XEN_DOMINF_paused
	StateShutdown               // XEN_DOMINF_shutdown: the guest stopped itself
	StateCrashed                // shutdown with SHUTDOWN_crash
	StateDying                  // XEN_DOMINF_dying: being destroyed
	StateSuspended              // shutdown with SHUTDOWN_suspend: stopped by its own suspend, resumable
)

func (s State) String() string {
	switch s {
	case StateRunning:
		return "running"
	case StatePaused:
		return "paused"
	case StateShutdown:
		return "shutdown"
	case StateCrashed:
		return "crashed"
	case StateDying:
		return "dying"
	case StateSuspended:
		return "suspended"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// DomainInfo is what xc_domain_getinfolist reports about a domain, plus its
// name from xenstore.
type DomainInfo struct {
	ID         DomID
	Name       string
	State      State
	VCPUs      int    // max_vcpu_id + 1
	MaxPages   uint64 // max_pages: the memory limit, in pages
	TotPages   uint64 // tot_pages: pages populated now
	PagedPages uint64 // paged_pages: pages paged out by a pager
	HVM        bool   // XEN_DOMINF_hvm_guest: HVM or PVH
	HAP        bool   // XEN_DOMINF_hap
	// DeviceModel: Xen emulates more than the local APIC for the domain, so
	// an HVM guest with a device model (QEMU), not PVH
	// (arch_config.emulation_flags beyond XEN_X86_EMU_LAPIC).
	DeviceModel bool
	// PagedResumeFails: the guest's resume in a new domain names gfns in
	// hypercalls that fail, without a paging request, when the gfn is paged
	// out (Xen 4.17: VCPUOP_register_vcpu_info, EVTCHNOP_init_control), so
	// those pages must be present before it runs: the engine sends the
	// pages its suspend writes (the resume set) in the downtime. The lab
	// showed it for a Linux PVH guest on real Xen ("register_vcpu_info
	// failed: err=-22", a kernel panic); simulated guests with
	// GuestSpec.PVResume behave so.
	PagedResumeFails bool
	// UUID is the domain's handle (xc_domaininfo_t.handle), as libxl shows it.
	UUID string
}

// DomainConfig is what a destination shell is created from: the toolstack's
// configuration of the domain. The engine carries it across unchanged.
type DomainConfig struct {
	Name     string
	VCPUs    int
	MaxPages uint64
	HVM      bool
	// Backend is the kind of hypervisor the config is meant for ("xen" or
	// "sim"); a receiver refuses a config of another kind.
	Backend string
	// UUID is the domain's handle; the destination keeps it, as a restore
	// does, and refuses to take a name held by a domain with another one.
	UUID string `json:",omitempty"`
	// SpecialPages are the gfns of the rings the toolstack's daemons own
	// (xenstore and console: HVM_PARAM_STORE_PFN, HVM_PARAM_CONSOLE_PFN).
	// Their contents are each host's own: a migration never copies them, as
	// Xen's restore clears them, and the shell's must be at the same gfns.
	SpecialPages []GFN `json:",omitempty"`
	// CPUPolicy is the guest's CPUID and MSR policy in the backend's
	// serialised form (xc_cpu_policy_serialise's leaves and MSRs on Xen);
	// the destination applies it to the shell, and refuses a guest whose
	// CPU features its host cannot offer, before the source suspends.
	CPUPolicy []byte `json:",omitempty"`
	// Raw is the backend's own description: the xl/libxl configuration on
	// Xen, the guest model (workload, seed, layout) in the simulator.
	Raw []byte
}

// TSCInfo is a domain's time stamp counter state (xc_domain_get_tsc_info).
type TSCInfo struct {
	Mode        uint32
	ElapsedNsec uint64
	GTSCkHz     uint32
	Incarnation uint32
}

// CPUState is a paused domain's vCPU and platform state: everything but
// memory and devices that the destination needs to resume it.
type CPUState struct {
	// HVMContext is the blob of xc_domain_hvm_getcontext: every vCPU's
	// registers and the platform devices' state. In the simulator it holds
	// the workload's per-vCPU state.
	HVMContext []byte
	// Params are the HVM parameters the saver carries (HVM_PARAM_*).
	Params map[uint32]uint64
	TSC    TSCInfo
}

// Size returns the number of bytes the state takes on the wire, roughly.
func (s CPUState) Size() int { return len(s.HVMContext) + 12*len(s.Params) + 20 }

// vm_event flags (xen/vm_event.h), as carried in Request.Flags.
const (
	FlagVCPUPaused uint32 = 1 << 0 // VM_EVENT_FLAG_VCPU_PAUSED: the vCPU waits for the response
	FlagForeign    uint32 = 1 << 1 // VM_EVENT_FLAG_FOREIGN: raised by a foreign mapping, nothing paused
)

// mem_paging flags (xen/vm_event.h, u.mem_paging.flags), as carried in
// Request.PagingFlags.
const (
	PagingDropPage  uint32 = 1 << 0 // MEM_PAGING_DROP_PAGE: the guest dropped the gfn; no load needed
	PagingEvictFail uint32 = 1 << 1 // MEM_PAGING_EVICT_FAIL: the gfn was nominated, not evicted
)

// RingSlots is the number of requests the vm_event ring holds:
// __CONST_RING_SIZE(vm_event, 4096) with a 400-byte vm_event_request_t.
const RingSlots = 8

// VMEventVersion is VM_EVENT_INTERFACE_VERSION in Xen 4.17; a response with
// another version is dropped and its vCPU stays paused.
const VMEventVersion = 7

// Request is one mem_paging request from the ring: vCPU VCPU touched GFN
// while it was paged out (or nominated).
type Request struct {
	VCPU        uint32
	GFN         GFN
	Flags       uint32 // FlagVCPUPaused, FlagForeign
	PagingFlags uint32 // PagingDropPage, PagingEvictFail
}

// Digest is a hash of a guest's memory contents.
type Digest [16]byte

func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// Progress is a guest workload's counters, summed over its vCPUs.
type Progress struct {
	Ops     uint64   // operations done: the workload's throughput counter
	Steps   []uint64 // steps done, per vCPU
	Done    bool     // every vCPU reached its step target
	Blocked []int64  // nanoseconds each vCPU spent waiting on paging faults
}
