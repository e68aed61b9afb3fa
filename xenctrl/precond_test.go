package xenctrl

import (
	"errors"
	"strings"
	"testing"

	"github.com/xenmig/xenmig/hypervisor"
)

func TestCheckGuest(t *testing.T) {
	good := hypervisor.DomainInfo{ID: 3, Name: "vm", State: hypervisor.StateRunning, VCPUs: 2, MaxPages: 1000, TotPages: 1000, HVM: true, HAP: true}
	for _, tt := range []struct {
		name  string
		edit  func(*hypervisor.DomainInfo)
		wants []string // substrings, one per expected problem; none = pageable
	}{
		{"PVH with HAP", func(*hypervisor.DomainInfo) {}, nil},
		{"HVM with a device model", func(i *hypervisor.DomainInfo) { i.DeviceModel = true }, []string{"device model"}},
		{"paused is fine", func(i *hypervisor.DomainInfo) { i.State = hypervisor.StatePaused }, nil},
		{"PV guest", func(i *hypervisor.DomainInfo) { i.HVM, i.HAP = false, false }, []string{"PV guest"}},
		{"no HAP", func(i *hypervisor.DomainInfo) { i.HAP = false }, []string{"hardware-assisted paging"}},
		{"dom0", func(i *hypervisor.DomainInfo) { i.ID = 0 }, []string{"dom0 cannot be migrated"}},
		{"crashed", func(i *hypervisor.DomainInfo) { i.State = hypervisor.StateCrashed }, []string{"crashed"}},
		{"shut down", func(i *hypervisor.DomainInfo) { i.State = hypervisor.StateShutdown }, []string{"shut down"}},
		{"dying", func(i *hypervisor.DomainInfo) { i.State = hypervisor.StateDying }, []string{"destroyed"}},
		{"PV and crashed", func(i *hypervisor.DomainInfo) { i.HVM, i.State = false, hypervisor.StateCrashed }, []string{"PV guest", "crashed"}},
	} {
		info := good
		tt.edit(&info)
		err := CheckGuest(info)
		if len(tt.wants) == 0 {
			if err != nil {
				t.Errorf("%s: CheckGuest = %v, want nil", tt.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: CheckGuest = nil, want problems %q", tt.name, tt.wants)
			continue
		}
		if !errors.Is(err, hypervisor.ErrGuestUnsupported) {
			t.Errorf("%s: errors.Is(%v, ErrGuestUnsupported) = false, want true", tt.name, err)
		}
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != len(tt.wants) {
			t.Errorf("%s: CheckGuest = %d problems %q, want %d", tt.name, len(lines), lines, len(tt.wants))
			continue
		}
		for i, w := range tt.wants {
			if !strings.Contains(lines[i], w) {
				t.Errorf("%s: problem %d = %q, want it to mention %q", tt.name, i, lines[i], w)
			}
		}
	}
}

func TestGuestWarnings(t *testing.T) {
	info := hypervisor.DomainInfo{ID: 3, MaxPages: 1000, TotPages: 1000, HVM: true, HAP: true}
	if w := GuestWarnings(info); len(w) != 0 {
		t.Errorf("GuestWarnings(memory == maxmem) = %q, want none", w)
	}
	info.TotPages = 900
	if w := GuestWarnings(info); len(w) != 1 || !strings.Contains(w[0], "populate-on-demand") {
		t.Errorf("GuestWarnings(memory < maxmem) = %q, want one about populate-on-demand", w)
	}
	info.TotPages, info.PagedPages = 900, 100
	if w := GuestWarnings(info); len(w) != 1 || !strings.Contains(w[0], "paged out") {
		t.Errorf("GuestWarnings(100 paged) = %q, want one about another pager", w)
	}
}

func TestCheckDom0(t *testing.T) {
	if err := CheckDom0(hypervisor.DomainInfo{ID: 0}); err != nil {
		t.Errorf("CheckDom0(PV) = %v, want nil", err)
	}
	err := CheckDom0(hypervisor.DomainInfo{ID: 0, HVM: true})
	if !errors.Is(err, hypervisor.ErrGuestUnsupported) || !strings.Contains(err.Error(), "PV dom0") {
		t.Errorf("CheckDom0(HVM) = %v, want an ErrGuestUnsupported about a PV dom0", err)
	}
}
