// Package benchreport turns the runs of the migration benchmark into cells
// (one per mode, push order, workload and guest size, averaged over the
// repetitions) and writes them as an aligned table, CSV and SVG bar charts.
//
// Build a cell from each repetition's measures with Aggregate; a Run decodes
// from the JSON of a migration result, whose keys it shares.
package benchreport

import (
	"fmt"
	"math"
)

// PageSize is the guest page size the physical floor is computed with.
const PageSize = 4096

// Run is the measure of one migration, one repetition of a cell. Its JSON
// keys are those of the migration result (xenmig.Result).
type Run struct {
	TotalMS       float64 `json:"total_ms"`
	DowntimeMS    float64 `json:"downtime_ms"`
	PagesOwned    uint64  `json:"pages_owned"` // non-zero pages: what must move at least once
	PagesSent     uint64  `json:"pages_sent"`
	BytesSent     uint64  `json:"bytes_sent"`
	NetworkFaults uint64  `json:"network_faults"`
	FaultP50US    float64 `json:"fault_p50_us"`
	FaultP99US    float64 `json:"fault_p99_us"`
	OpsBefore     float64 `json:"ops_before,omitempty"` // workload throughput before the migration, ops/s
	OpsDuring     float64 `json:"ops_during,omitempty"` // while memory was still moving
}

// Key names a cell of the benchmark matrix.
type Key struct {
	Mode       string `json:"mode"`              // precopy, postcopy, hybrid
	Push       string `json:"push,omitempty"`    // demand, sequential, prepaging, workingset; ignored for precopy
	Balloon    bool   `json:"balloon,omitempty"` // the guest's agent ballooned down before the copy
	Workload   string `json:"workload"`
	GuestBytes uint64 `json:"guest_bytes"`
}

// Label names the cell's migration method: the mode, the push order for the
// modes that push, and "+balloon" when the guest ballooned down first.
func (k Key) Label() string {
	l := k.Mode
	if k.Push != "" && k.Mode != "precopy" {
		l += " " + k.Push
	}
	if k.Balloon {
		l += " +balloon"
	}
	return l
}

// Stat summarizes one measure over the repetitions of a cell.
type Stat struct {
	Mean   float64 `json:"mean"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Stddev float64 `json:"stddev"` // sample standard deviation; 0 for one repetition
}

// Summarize returns the mean, extremes and sample standard deviation of xs,
// the zero Stat when xs is empty.
func Summarize(xs []float64) Stat {
	if len(xs) == 0 {
		return Stat{}
	}
	s := Stat{Min: xs[0], Max: xs[0]}
	var sum float64
	for _, x := range xs {
		sum += x
		s.Min = min(s.Min, x)
		s.Max = max(s.Max, x)
	}
	s.Mean = sum / float64(len(xs))
	if len(xs) > 1 {
		var sq float64
		for _, x := range xs {
			sq += (x - s.Mean) * (x - s.Mean)
		}
		s.Stddev = math.Sqrt(sq / float64(len(xs)-1))
	}
	return s
}

// Cell is one cell of the benchmark matrix: the measures of its
// repetitions, summarized.
type Cell struct {
	Key
	Reps    int     `json:"reps"`
	RateBPS uint64  `json:"rate_bps"` // link rate, bits per second; 0 when unshaped
	FloorMS float64 `json:"floor_ms"` // pages owned x PageSize / link rate (mean over runs); 0 when unshaped

	TotalMS       Stat `json:"total_ms"`
	DowntimeMS    Stat `json:"downtime_ms"`
	PagesSent     Stat `json:"pages_sent"`
	BytesSent     Stat `json:"bytes_sent"`
	NetworkFaults Stat `json:"network_faults"`
	FaultP50US    Stat `json:"fault_p50_us"`
	FaultP99US    Stat `json:"fault_p99_us"`
	// Degradation is the share of the workload's throughput lost while
	// memory moved, 1 - ops_during/ops_before (0: none, 1: stopped). Nil
	// when no run measured throughput (an idle guest).
	Degradation *Stat `json:"degradation,omitempty"`
}

// OverFloor returns total time / physical floor, 0 without a floor.
func (c Cell) OverFloor() float64 {
	if c.FloorMS == 0 {
		return 0
	}
	return c.TotalMS.Mean / c.FloorMS
}

// GBps returns the bytes sent per second of total time, in GB/s.
func (c Cell) GBps() float64 {
	if c.TotalMS.Mean == 0 {
		return 0
	}
	return c.BytesSent.Mean / c.TotalMS.Mean / 1e6
}

// LinkHuman names a link rate: "1 Gbit/s", "10 Gbit/s", "unshaped".
func LinkHuman(rateBPS uint64) string {
	switch {
	case rateBPS == 0:
		return "unshaped"
	case rateBPS%1e9 == 0:
		return fmt.Sprintf("%d Gbit/s", rateBPS/1e9)
	default:
		return fmt.Sprintf("%g Mbit/s", float64(rateBPS)/1e6)
	}
}

// Aggregate summarizes the repetitions of the cell k measured on a link of
// rateBPS bits per second (0: unshaped, no floor).
func Aggregate(k Key, rateBPS uint64, runs []Run) (Cell, error) {
	if len(runs) == 0 {
		return Cell{}, fmt.Errorf("benchreport: aggregating %s, %s, %s guest: no runs", k.Label(), k.Workload, sizeHuman(k.GuestBytes))
	}
	measure := func(f func(Run) float64) Stat {
		xs := make([]float64, len(runs))
		for i, r := range runs {
			xs[i] = f(r)
		}
		return Summarize(xs)
	}
	c := Cell{
		Key:           k,
		Reps:          len(runs),
		RateBPS:       rateBPS,
		TotalMS:       measure(func(r Run) float64 { return r.TotalMS }),
		DowntimeMS:    measure(func(r Run) float64 { return r.DowntimeMS }),
		PagesSent:     measure(func(r Run) float64 { return float64(r.PagesSent) }),
		BytesSent:     measure(func(r Run) float64 { return float64(r.BytesSent) }),
		NetworkFaults: measure(func(r Run) float64 { return float64(r.NetworkFaults) }),
		FaultP50US:    measure(func(r Run) float64 { return r.FaultP50US }),
		FaultP99US:    measure(func(r Run) float64 { return r.FaultP99US }),
	}
	if rateBPS > 0 {
		owned := measure(func(r Run) float64 { return float64(r.PagesOwned) })
		c.FloorMS = owned.Mean * PageSize * 8 / float64(rateBPS) * 1000
	}
	var degr []float64
	for _, r := range runs {
		if r.OpsBefore > 0 {
			degr = append(degr, 1-r.OpsDuring/r.OpsBefore)
		}
	}
	if len(degr) > 0 {
		s := Summarize(degr)
		c.Degradation = &s
	}
	return c, nil
}
