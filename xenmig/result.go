package xenmig

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is the measure of one migration (DESIGN section 6). Its JSON form is
// a stable interface for scripts: keys are only ever added.
type Result struct {
	Mode   Mode   `json:"mode"`
	Push   Push   `json:"push,omitempty"`
	Domain string `json:"domain"`

	TotalMS       float64 `json:"total_ms"`       // connect .. receiver confirms every page
	DowntimeMS    float64 `json:"downtime_ms"`    // source paused .. destination running
	PreparationMS float64 `json:"preparation_ms"` // connect .. destination ready to receive
	ResumeMS      float64 `json:"resume_ms"`      // destination: go .. guest unpaused
	PrecopyRounds int     `json:"precopy_rounds"`
	// EarlyPages were sent in post-copy while the destination prepared,
	// installed there instead of paged out; EarlyStale of them were written
	// again before the switchover and owed once more; EarlyLate came after
	// the destination had paged their gfn out, and it installed them after
	// the switchover (its report).
	EarlyPages uint64 `json:"early_pages,omitempty"`
	EarlyStale uint64 `json:"early_stale,omitempty"`
	EarlyLate  uint64 `json:"early_late,omitempty"`
	// ResumePages were sent in the downtime and installed before the guest
	// resumed: the pages its suspend wrote, among them those it registers
	// with Xen again as it resumes (DomainInfo.PagedResumeFails).
	ResumePages uint64 `json:"resume_pages,omitempty"`
	Reconnects  int64  `json:"reconnects"` // sessions reopened after a break at or after the switchover

	GuestPages            uint64 `json:"guest_pages"`             // populated gfns when the copy began
	PagesOwned            uint64 `json:"pages_owned"`             // populated non-zero pages: what must move at least once
	PagesSent             uint64 `json:"pages_sent"`              // pages with data, all phases and channels
	BytesSent             uint64 `json:"bytes_sent"`              // every byte the sender wrote, headers included
	ZeroPagesSkipped      uint64 `json:"zero_pages_skipped"`      // zero pages announced without data
	BalloonedPagesSkipped uint64 `json:"ballooned_pages_skipped"` // gfns the guest's balloon gave back before the copy

	// Per phase: "precopy" (rounds while running), "stop" (while paused),
	// "push" (post-copy background push), "demand" (urgent channel).
	PhasePages map[string]uint64 `json:"phase_pages"`
	PhaseBytes map[string]uint64 `json:"phase_bytes"`

	NetworkFaults uint64    `json:"network_faults"` // guest faults that needed a page from the source
	LocalFaults   uint64    `json:"local_faults"`   // faults served from pages already on the destination
	ForeignFaults uint64    `json:"foreign_faults"` // of all faults, those raised by foreign mappings (backends, device model)
	FaultP50US    float64   `json:"fault_p50_us"`
	FaultP99US    float64   `json:"fault_p99_us"`
	VCPUBlockedMS []float64 `json:"vcpu_blocked_ms,omitempty"`

	// Workload throughput in operations per second, where the backend can
	// see it (the simulator): before the migration (a short sample), while
	// memory was moving with the guest running (pre-copy rounds on the
	// source, post-copy on the destination; downtime excluded), and after.
	OpsBefore float64 `json:"ops_before,omitempty"`
	OpsDuring float64 `json:"ops_during,omitempty"`
	OpsAfter  float64 `json:"ops_after,omitempty"`

	// DigestMatch is present for simulated guests: the destination's final
	// memory digest equals the unmigrated reference run's.
	DigestMatch *bool  `json:"digest_match,omitempty"`
	Digest      string `json:"digest,omitempty"`
}

// receiverReport is what the destination measured, sent to the source in a
// Stats record so one side can report the whole migration.
type receiverReport struct {
	PreparationMS float64   `json:"preparation_ms"`
	ResumeMS      float64   `json:"resume_ms"`
	EarlyLate     uint64    `json:"early_late,omitempty"`
	NetworkFaults uint64    `json:"network_faults"`
	LocalFaults   uint64    `json:"local_faults"`
	ForeignFaults uint64    `json:"foreign_faults"`
	FaultP50US    float64   `json:"fault_p50_us"`
	FaultP99US    float64   `json:"fault_p99_us"`
	VCPUBlockedMS []float64 `json:"vcpu_blocked_ms,omitempty"`
	DuringOps     uint64    `json:"during_ops,omitempty"` // guest operations between go and complete
	DuringMS      float64   `json:"during_ms,omitempty"`
	OpsAfter      float64   `json:"ops_after,omitempty"`
}

// guestReport is the destination's word on a simulated guest's end state.
type guestReport struct {
	Digest string `json:"digest"`
	Err    string `json:"error,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// percentile returns the p-th percentile (0..100) of ds in microseconds.
func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return float64(s[i].Nanoseconds()) / 1000
}

// WriteTable prints r for a person.
func (r *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) {
		fmt.Fprintf(tw, "  %s\t"+format+"\n", append([]any{k}, args...)...)
	}
	fmt.Fprintf(tw, "migration of %s (%s", r.Domain, r.Mode)
	if r.Mode != PreCopy {
		fmt.Fprintf(tw, ", push %s", r.Push)
	}
	fmt.Fprintln(tw, ")")
	row("total time", "%.1f ms", r.TotalMS)
	row("downtime", "%.2f ms", r.DowntimeMS)
	row("preparation", "%.1f ms", r.PreparationMS)
	row("resume on destination", "%.2f ms", r.ResumeMS)
	if r.ResumePages > 0 {
		row("resume set", "%d pages, in the downtime", r.ResumePages)
	}
	if r.EarlyPages > 0 {
		row("sent while preparing", "%d pages (%d written again, %d installed after the switchover)", r.EarlyPages, r.EarlyStale, r.EarlyLate)
	}
	if r.PrecopyRounds > 0 {
		row("pre-copy rounds", "%d", r.PrecopyRounds)
	}
	if r.Reconnects > 0 {
		row("reconnections", "%d (pages in flight at a break were sent again)", r.Reconnects)
	}
	row("guest pages", "%d (%s)", r.GuestPages, bytesHuman(r.GuestPages*4096))
	row("pages owned (non-zero)", "%d", r.PagesOwned)
	row("pages sent", "%d (%.3f x owned)", r.PagesSent, ratio(r.PagesSent, r.PagesOwned))
	row("bytes sent", "%s", bytesHuman(r.BytesSent))
	row("zero pages skipped", "%d", r.ZeroPagesSkipped)
	row("ballooned pages skipped", "%d", r.BalloonedPagesSkipped)
	var phases []string
	for _, p := range []string{"precopy", "stop", "push", "demand"} {
		if n := r.PhasePages[p]; n > 0 {
			phases = append(phases, fmt.Sprintf("%s %d", p, n))
		}
	}
	if len(phases) > 0 {
		row("pages by phase", "%s", strings.Join(phases, ", "))
	}
	if r.Mode != PreCopy {
		row("network faults", "%d (local %d, foreign mappings %d)", r.NetworkFaults, r.LocalFaults, r.ForeignFaults)
		row("fault latency p50 / p99", "%.0f / %.0f us", r.FaultP50US, r.FaultP99US)
	}
	if len(r.VCPUBlockedMS) > 0 {
		parts := make([]string, len(r.VCPUBlockedMS))
		for i, b := range r.VCPUBlockedMS {
			parts[i] = fmt.Sprintf("%.1f", b)
		}
		row("vCPU blocked (ms)", "%s", strings.Join(parts, " / "))
	}
	if r.OpsBefore > 0 {
		row("throughput before/during/after", "%.0f / %.0f / %.0f ops/s", r.OpsBefore, r.OpsDuring, r.OpsAfter)
	}
	if r.DigestMatch != nil {
		verdict := "MISMATCH: memory differs from the unmigrated run"
		if *r.DigestMatch {
			verdict = "match: memory identical to the unmigrated run"
		}
		row("memory digest", "%s (%s)", verdict, r.Digest)
	}
	return tw.Flush()
}

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func bytesHuman(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
