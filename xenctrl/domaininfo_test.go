package xenctrl

import (
	"testing"

	"github.com/xenmig/xenmig/hypervisor"
)

func TestStateFromFlags(t *testing.T) {
	for _, tt := range []struct {
		flags uint32
		want  hypervisor.State
	}{
		{0, hypervisor.StateRunning},
		{1 << 5, hypervisor.StateRunning}, // XEN_DOMINF_running
		{1 << 4, hypervisor.StateRunning}, // XEN_DOMINF_blocked
		{dominfPaused, hypervisor.StatePaused},
		{dominfShutdown, hypervisor.StateShutdown}, // SHUTDOWN_poweroff = 0
		{dominfShutdown | 1<<16, hypervisor.StateShutdown},
		{dominfShutdown | shutdownCrash<<16, hypervisor.StateCrashed},
		{dominfShutdown | shutdownSuspend<<16, hypervisor.StateSuspended},
		{dominfShutdown | dominfPaused, hypervisor.StateShutdown},
		{dominfDying | dominfShutdown | dominfPaused, hypervisor.StateDying},
	} {
		if got := stateFromFlags(tt.flags); got != tt.want {
			t.Errorf("stateFromFlags(%#x) = %v, want %v", tt.flags, got, tt.want)
		}
	}
}

func TestDomainInfo(t *testing.T) {
	r := rawDomainInfo{Domain: 7, Flags: dominfHVM | dominfHAP | dominfPaused, TotPages: 100, MaxPages: 200, PagedPages: 3, MaxVCPUID: 3,
		Handle: [16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8}, EmuFlags: emuLAPIC}
	got := domainInfo(r, "web")
	want := hypervisor.DomainInfo{ID: 7, Name: "web", State: hypervisor.StatePaused, VCPUs: 4, MaxPages: 200, TotPages: 100, PagedPages: 3,
		HVM: true, HAP: true, PagedResumeFails: true, UUID: "12345678-9abc-def0-0102-030405060708"}
	if got != want {
		t.Errorf("domainInfo(%+v) = %+v, want %+v", r, got, want)
	}
	r.EmuFlags = 0x7ff &^ (1 << 10) // XEN_X86_EMU_ALL without VPCI: what libxl gives an HVM guest
	if got := domainInfo(r, "hvm"); !got.DeviceModel {
		t.Errorf("domainInfo(emulation_flags %#x).DeviceModel = false, want true (HVM, not PVH)", r.EmuFlags)
	}
	r = rawDomainInfo{Domain: 8, MaxVCPUID: invalidMaxVCPUID}
	if got := domainInfo(r, ""); got.VCPUs != 0 || got.HVM || got.HAP {
		t.Errorf("domainInfo(no vcpus, PV) = %+v, want 0 vCPUs, PV, no HAP", got)
	}
}
