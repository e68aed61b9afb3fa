package benchreport

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// WriteTable prints cells as an aligned table for a person: per cell the
// mean total time beside the physical floor and their ratio, downtime,
// pages sent, network faults, fault latency p50/p99 and the workload's
// throughput degradation. Times carry ± the standard deviation when a cell
// has several repetitions.
func WriteTable(w io.Writer, cells []Cell) error {
	rows := [][]string{{"workload", "guest", "link", "method", "reps", "total ms", "floor ms", "x floor", "GB/s",
		"downtime ms", "pages sent", "faults", "p50/p99 us", "degradation"}}
	for _, c := range cells {
		floor, ratio := "-", "-"
		if c.FloorMS > 0 {
			floor = fmt.Sprintf("%.0f", c.FloorMS)
			ratio = fmt.Sprintf("%.2f", c.OverFloor())
		}
		latency := "-"
		if c.NetworkFaults.Mean > 0 {
			latency = fmt.Sprintf("%.0f/%.0f", c.FaultP50US.Mean, c.FaultP99US.Mean)
		}
		degr := "-"
		if c.Degradation != nil {
			degr = fmt.Sprintf("%.1f%%", 100*c.Degradation.Mean)
		}
		rows = append(rows, []string{
			c.Workload, sizeHuman(c.GuestBytes), LinkHuman(c.RateBPS), c.Label(), strconv.Itoa(c.Reps),
			spread(c.TotalMS, c.Reps, "%.0f"), floor, ratio, fmt.Sprintf("%.2f", c.GBps()),
			spread(c.DowntimeMS, c.Reps, "%.1f"),
			fmt.Sprintf("%.0f", c.PagesSent.Mean),
			fmt.Sprintf("%.0f", c.NetworkFaults.Mean),
			latency, degr,
		})
	}
	// Text columns align left, numbers right.
	left := map[int]bool{0: true, 1: true, 2: true, 3: true}
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, f := range r {
			widths[i] = max(widths[i], len(f))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, f := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			pad := strings.Repeat(" ", widths[i]-len(f))
			if left[i] {
				if i == len(r)-1 {
					pad = ""
				}
				b.WriteString(f + pad)
			} else {
				b.WriteString(pad + f)
			}
		}
		b.WriteByte('\n')
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("benchreport: writing table: %w", err)
	}
	return nil
}

// spread formats a mean, with ± the standard deviation over several reps.
func spread(s Stat, reps int, format string) string {
	v := fmt.Sprintf(format, s.Mean)
	if reps > 1 {
		v += " ±" + fmt.Sprintf(format, s.Stddev)
	}
	return v
}

// csvMeasure is a summarized measure and its CSV column prefix.
type csvMeasure struct {
	name string
	get  func(Cell) Stat
}

// csvMeasures returns the summarized measures in CSV column order.
func csvMeasures() []csvMeasure {
	return []csvMeasure{
		{"total_ms", func(c Cell) Stat { return c.TotalMS }},
		{"downtime_ms", func(c Cell) Stat { return c.DowntimeMS }},
		{"pages_sent", func(c Cell) Stat { return c.PagesSent }},
		{"bytes_sent", func(c Cell) Stat { return c.BytesSent }},
		{"network_faults", func(c Cell) Stat { return c.NetworkFaults }},
		{"fault_p50_us", func(c Cell) Stat { return c.FaultP50US }},
		{"fault_p99_us", func(c Cell) Stat { return c.FaultP99US }},
	}
}

// CSVHeader returns the columns WriteCSV writes: the cell's key, reps,
// rate_bps, floor_ms, total_over_floor, gb_per_s, then mean, min, max and stddev of
// each measure (<measure>_mean ...), degradation last (empty when not
// measured).
func CSVHeader() []string {
	h := []string{"mode", "push", "balloon", "workload", "guest_bytes", "reps", "rate_bps", "floor_ms", "total_over_floor", "gb_per_s"}
	for _, m := range csvMeasures() {
		h = append(h, m.name+"_mean", m.name+"_min", m.name+"_max", m.name+"_stddev")
	}
	return append(h, "degradation_mean", "degradation_min", "degradation_max", "degradation_stddev")
}

// WriteCSV writes cells as CSV with the header CSVHeader, one row per cell.
func WriteCSV(w io.Writer, cells []Cell) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader()); err != nil {
		return fmt.Errorf("benchreport: writing CSV header: %w", err)
	}
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	stat := func(s Stat) []string { return []string{num(s.Mean), num(s.Min), num(s.Max), num(s.Stddev)} }
	for _, c := range cells {
		row := []string{c.Mode, c.Push, strconv.FormatBool(c.Balloon), c.Workload, strconv.FormatUint(c.GuestBytes, 10), strconv.Itoa(c.Reps),
			strconv.FormatUint(c.RateBPS, 10), num(c.FloorMS), num(c.OverFloor()), num(c.GBps())}
		for _, m := range csvMeasures() {
			row = append(row, stat(m.get(c))...)
		}
		if c.Degradation != nil {
			row = append(row, stat(*c.Degradation)...)
		} else {
			row = append(row, "", "", "", "")
		}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("benchreport: writing CSV row %s: %w", c.Label(), err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("benchreport: writing CSV: %w", err)
	}
	return nil
}

// sizeHuman formats a guest size: "512 MiB", "2 GiB".
func sizeHuman(b uint64) string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", b>>30)
	case b >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
	default:
		return fmt.Sprintf("%d B", b)
	}
}
