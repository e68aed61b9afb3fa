package xenctrl

import (
	"fmt"
	"strings"

	"github.com/xenmig/xenmig/hypervisor"
)

// PagingProbe explains how Doctor decides whether the hypervisor has
// mem_paging without touching a guest: it issues XENMEM_paging_op (a
// nominate of an impossible gfn) for a domain id that does not exist. A Xen
// built without CONFIG_MEM_PAGING rejects the operation itself (ENOSYS)
// before looking for the domain; one built with it looks the domain up first
// and fails with ESRCH. No domain exists to be changed either way.
const PagingProbe = "XENMEM_paging_op nominate on an unused domain id: ENOSYS = no CONFIG_MEM_PAGING, ESRCH = present"

// Report is what Doctor finds out about this host: whether the real backend
// is built in, whether a hypervisor is reachable, its version, whether it has
// mem_paging, and, for a named domain, whether that guest can be paged. Its
// JSON form is stable for `xenmig doctor --json`; String renders it for
// people.
type Report struct {
	// BackendBuilt: this binary has the real Xen backend (build tag xen).
	BackendBuilt bool `json:"backend_built"`
	// Reachable: a Xen hypervisor answered (xc_interface_open and friends).
	Reachable bool `json:"reachable"`
	// Version is Xen's version, e.g. "4.17.5-pre" (xc_version).
	Version string `json:"version,omitempty"`
	// Capabilities is XENVER_capabilities, e.g. "xen-3.0-x86_64 hvm-3.0-x86_64".
	Capabilities string `json:"capabilities,omitempty"`
	// VMEventVersion is the hypervisor's VM_EVENT_INTERFACE_VERSION
	// (xc_vm_event_get_version); this backend speaks 7.
	VMEventVersion int `json:"vm_event_version,omitempty"`
	// Paging: the hypervisor has mem_paging (see PagingProbe).
	Paging bool `json:"paging"`
	// PagingProbe says how Paging was found out.
	PagingProbe string `json:"paging_probe,omitempty"`
	// Dom0PV: dom0 is a PV domain, as a paging agent needs.
	Dom0PV bool `json:"dom0_pv"`
	// PostCopy: post-copy and hybrid migration can run on this host (for
	// the named guest, if any); pre-copy needs only Reachable.
	PostCopy bool `json:"post_copy"`
	// Guest is the check of the named domain, if one was asked for.
	Guest *GuestReport `json:"guest,omitempty"`
	// Problems are the reasons something above is false, in plain words.
	Problems []string `json:"problems,omitempty"`
	// Warnings are doubts that do not stop a migration.
	Warnings []string `json:"warnings,omitempty"`
}

// GuestReport is Doctor's check of one domain's preconditions.
type GuestReport struct {
	// Name is the domain name asked about.
	Name string `json:"name"`
	// Found: a domain of that name exists.
	Found bool `json:"found"`
	// Info is what xc_domain_getinfolist says about it.
	Info *hypervisor.DomainInfo `json:"info,omitempty"`
	// Pageable: CheckGuest found nothing that stops post-copy.
	Pageable bool `json:"pageable"`
	// Problems are CheckGuest's findings, one a line.
	Problems []string `json:"problems,omitempty"`
	// Warnings are GuestWarnings' doubts.
	Warnings []string `json:"warnings,omitempty"`
}

// checkGuestReport fills a GuestReport from a domain's info (the pure part
// of Doctor's guest check).
func checkGuestReport(name string, info hypervisor.DomainInfo) *GuestReport {
	g := &GuestReport{Name: name, Found: true, Info: &info, Pageable: true}
	if err := CheckGuest(info); err != nil {
		g.Pageable = false
		g.Problems = append(g.Problems, strings.Split(err.Error(), "\n")...)
	}
	g.Warnings = GuestWarnings(info)
	return g
}

// finish derives PostCopy from the other findings.
func (r *Report) finish() {
	r.PostCopy = r.BackendBuilt && r.Reachable && r.Paging && r.Dom0PV
	if r.Guest != nil && !r.Guest.Pageable {
		r.PostCopy = false
	}
}

// String renders the report for a terminal, one finding a line.
func (r *Report) String() string {
	var b strings.Builder
	yes := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "NO"
	}
	fmt.Fprintf(&b, "real Xen backend built:   %s\n", yes(r.BackendBuilt))
	fmt.Fprintf(&b, "hypervisor reachable:     %s\n", yes(r.Reachable))
	if r.Version != "" {
		fmt.Fprintf(&b, "Xen version:              %s\n", r.Version)
	}
	if r.Capabilities != "" {
		fmt.Fprintf(&b, "capabilities:             %s\n", r.Capabilities)
	}
	if r.VMEventVersion != 0 {
		fmt.Fprintf(&b, "vm_event interface:       %d (xenmig speaks %d)\n", r.VMEventVersion, vmEventInterfaceVersion)
	}
	if r.Reachable {
		fmt.Fprintf(&b, "memory paging:            %s\n", yes(r.Paging))
		fmt.Fprintf(&b, "dom0 is PV:               %s\n", yes(r.Dom0PV))
	}
	if g := r.Guest; g != nil {
		switch {
		case !r.Reachable:
			fmt.Fprintf(&b, "guest %q: not checked (no hypervisor)\n", g.Name)
		case !g.Found:
			fmt.Fprintf(&b, "guest %q: not found\n", g.Name)
			for _, p := range g.Problems {
				fmt.Fprintf(&b, "  - %s\n", p)
			}
		default:
			fmt.Fprintf(&b, "guest %q (dom %d) pageable: %s\n", g.Name, g.Info.ID, yes(g.Pageable))
			for _, p := range g.Problems {
				fmt.Fprintf(&b, "  - %s\n", p)
			}
			for _, w := range g.Warnings {
				fmt.Fprintf(&b, "  ~ %s\n", w)
			}
		}
	}
	pre := "NO"
	if r.BackendBuilt && r.Reachable {
		pre = "yes"
	}
	fmt.Fprintf(&b, "pre-copy migration:       %s\n", pre)
	fmt.Fprintf(&b, "post-copy/hybrid:         %s\n", yes(r.PostCopy))
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "problem: %s\n", p)
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	return b.String()
}
