package xenctrl

import (
	"encoding/binary"
	"fmt"

	"github.com/xenmig/xenmig/hypervisor"
)

// A CPU policy travels (DomainConfig.CPUPolicy) as Xen's own serialised
// form, the arrays xc_cpu_policy_serialise fills and xc_set_domain_cpu_policy
// takes: a u32 count of CPUID leaves, a u32 count of MSRs, then the leaves
// (xen_cpuid_leaf_t: leaf, subleaf, a, b, c, d; six u32) and the MSRs
// (xen_msr_entry_t: u32 idx, u32 flags, u64 val), little-endian.
const (
	cpuidLeafSize = 24
	msrEntrySize  = 16
)

// cpuPolicy is a policy split into its two arrays, each in C's layout.
type cpuPolicy struct {
	nrLeaves, nrMSRs uint32
	leaves, msrs     []byte
}

func (p cpuPolicy) marshal() []byte {
	b := make([]byte, 0, 8+len(p.leaves)+len(p.msrs))
	b = binary.LittleEndian.AppendUint32(b, p.nrLeaves)
	b = binary.LittleEndian.AppendUint32(b, p.nrMSRs)
	b = append(b, p.leaves...)
	return append(b, p.msrs...)
}

func unmarshalCPUPolicy(b []byte) (cpuPolicy, error) {
	var p cpuPolicy
	if len(b) < 8 {
		return p, fmt.Errorf("CPU policy of %d bytes: %w", len(b), hypervisor.ErrInvalid)
	}
	p.nrLeaves, p.nrMSRs = binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
	nl, nm := uint64(p.nrLeaves)*cpuidLeafSize, uint64(p.nrMSRs)*msrEntrySize
	if uint64(len(b)-8) != nl+nm {
		return p, fmt.Errorf("CPU policy: %d leaves and %d MSRs in %d bytes: %w", p.nrLeaves, p.nrMSRs, len(b)-8, hypervisor.ErrInvalid)
	}
	p.leaves, p.msrs = b[8:8+nl:8+nl], b[8+nl:] // capped: appending to leaves must not write over msrs
	return p, nil
}
