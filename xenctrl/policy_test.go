package xenctrl

import (
	"bytes"
	"errors"
	"testing"

	"github.com/xenmig/xenmig/hypervisor"
)

func TestCPUPolicyRoundTrip(t *testing.T) {
	p := cpuPolicy{nrLeaves: 2, nrMSRs: 1, leaves: bytes.Repeat([]byte{1}, 2*cpuidLeafSize), msrs: bytes.Repeat([]byte{2}, msrEntrySize)}
	got, err := unmarshalCPUPolicy(p.marshal())
	if err != nil || got.nrLeaves != 2 || got.nrMSRs != 1 || !bytes.Equal(got.leaves, p.leaves) || !bytes.Equal(got.msrs, p.msrs) {
		t.Errorf("unmarshalCPUPolicy(marshal(%+v)) = %+v, %v", p, got, err)
	}
	// Growing the leaves must leave the MSRs alone (they share the buffer).
	_ = append(got.leaves, make([]byte, cpuidLeafSize)...)
	if !bytes.Equal(got.msrs, p.msrs) {
		t.Errorf("appending to the leaves changed the MSRs: %x, want %x", got.msrs, p.msrs)
	}
	for _, b := range [][]byte{nil, {1, 0, 0, 0, 0, 0, 0, 0}, append(p.marshal(), 0)} {
		if _, err := unmarshalCPUPolicy(b); !errors.Is(err, hypervisor.ErrInvalid) {
			t.Errorf("unmarshalCPUPolicy(%d bytes) = %v, want %v", len(b), err, hypervisor.ErrInvalid)
		}
	}
}

func TestIsJSONConfig(t *testing.T) {
	for _, tt := range []struct {
		raw  string
		want bool
	}{
		{"{\n  \"c_info\": {}\n}", true},
		{"  {}", true},
		{"name = \"hb\"\ntype = \"pvh\"\n", false},
		{"# {comment}\nname=\"x\"", false},
		{"", false},
	} {
		if got := isJSONConfig([]byte(tt.raw)); got != tt.want {
			t.Errorf("isJSONConfig(%q) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}
