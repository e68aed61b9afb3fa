package xenctrl

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/xenmig/xenmig/hypervisor"
)

func TestReportFinish(t *testing.T) {
	full := Report{BackendBuilt: true, Reachable: true, Paging: true, Dom0PV: true}
	for _, tt := range []struct {
		name string
		edit func(*Report)
		want bool
	}{
		{"everything", func(*Report) {}, true},
		{"not built", func(r *Report) { r.BackendBuilt = false }, false},
		{"unreachable", func(r *Report) { r.Reachable = false }, false},
		{"no paging", func(r *Report) { r.Paging = false }, false},
		{"HVM dom0", func(r *Report) { r.Dom0PV = false }, false},
		{"pageable guest", func(r *Report) { r.Guest = &GuestReport{Found: true, Pageable: true} }, true},
		{"unpageable guest", func(r *Report) { r.Guest = &GuestReport{Found: true} }, false},
	} {
		r := full
		tt.edit(&r)
		r.finish()
		if r.PostCopy != tt.want {
			t.Errorf("%s: PostCopy = %v, want %v", tt.name, r.PostCopy, tt.want)
		}
	}
}

func TestReportJSONAndString(t *testing.T) {
	r := &Report{BackendBuilt: true, Reachable: true, Version: "4.17.6", Paging: false, Dom0PV: true,
		PagingProbe: PagingProbe, Problems: []string{MsgPagingUnsupported}}
	r.Guest = checkGuestReport("pv", hypervisor.DomainInfo{ID: 4, Name: "pv", MaxPages: 10, TotPages: 10})
	r.finish()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("json.Marshal(report) = %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("json.Unmarshal = %v", err)
	}
	for _, k := range []string{"backend_built", "reachable", "version", "paging", "dom0_pv", "post_copy", "guest", "problems"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report JSON %s lacks key %q", b, k)
		}
	}
	if g := m["guest"].(map[string]any); g["pageable"] != false {
		t.Errorf("guest.pageable = %v, want false for a PV guest", g["pageable"])
	}
	s := r.String()
	for _, want := range []string{"hypervisor reachable:     yes", "Xen version:              4.17.6", "memory paging:            NO",
		`guest "pv" (dom 4) pageable: NO`, "PV guest", "pre-copy migration:       yes", "post-copy/hybrid:         NO", "CONFIG_MEM_PAGING"} {
		if !strings.Contains(s, want) {
			t.Errorf("String() lacks %q:\n%s", want, s)
		}
	}
}
