package benchreport

import (
	"bytes"
	"encoding/csv"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	for _, tt := range []struct {
		xs   []float64
		want Stat
	}{
		{nil, Stat{}},
		{[]float64{5}, Stat{Mean: 5, Min: 5, Max: 5}},
		{[]float64{2, 4, 4, 4, 5, 5, 7, 9}, Stat{Mean: 5, Min: 2, Max: 9, Stddev: math.Sqrt(32.0 / 7)}},
		{[]float64{3, 1, 2}, Stat{Mean: 2, Min: 1, Max: 3, Stddev: 1}},
	} {
		got := Summarize(tt.xs)
		if math.Abs(got.Stddev-tt.want.Stddev) > 1e-12 {
			t.Errorf("Summarize(%v).Stddev = %v, want %v", tt.xs, got.Stddev, tt.want.Stddev)
		}
		got.Stddev = tt.want.Stddev
		if got != tt.want {
			t.Errorf("Summarize(%v) = %+v, want %+v", tt.xs, got, tt.want)
		}
	}
}

func TestAggregate(t *testing.T) {
	k := Key{Mode: "postcopy", Push: "prepaging", Workload: "write-stress", GuestBytes: 512 << 20}
	runs := []Run{
		{TotalMS: 1000, DowntimeMS: 10, PagesOwned: 100000, PagesSent: 100000, BytesSent: 4e8, NetworkFaults: 10,
			FaultP50US: 100, FaultP99US: 900, OpsBefore: 1000, OpsDuring: 800},
		{TotalMS: 2000, DowntimeMS: 20, PagesOwned: 100000, PagesSent: 110000, BytesSent: 5e8, NetworkFaults: 30,
			FaultP50US: 300, FaultP99US: 1100, OpsBefore: 1000, OpsDuring: 600},
	}
	got, err := Aggregate(k, 1e9, runs)
	if err != nil {
		t.Fatalf("Aggregate = %v", err)
	}
	s := math.Sqrt2
	want := Cell{
		Key: k, Reps: 2, RateBPS: 1e9,
		FloorMS:       100000 * 4096 * 8 / 1e9 * 1000,
		TotalMS:       Stat{1500, 1000, 2000, 500 * s},
		DowntimeMS:    Stat{15, 10, 20, 5 * s},
		PagesSent:     Stat{105000, 100000, 110000, 5000 * s},
		BytesSent:     Stat{4.5e8, 4e8, 5e8, 0.5e8 * s},
		NetworkFaults: Stat{20, 10, 30, 10 * s},
		FaultP50US:    Stat{200, 100, 300, 100 * s},
		FaultP99US:    Stat{1000, 900, 1100, 100 * s},
		Degradation:   &Stat{0.3, 0.2, 0.4, 0.1 * s},
	}
	if !cellsClose(got, want) {
		t.Errorf("Aggregate(%v) = %+v (degradation %+v), want %+v (degradation %+v)", runs, got, got.Degradation, want, want.Degradation)
	}
	if r := got.OverFloor(); math.Abs(r-1500/want.FloorMS) > 1e-9 {
		t.Errorf("OverFloor() = %v, want %v", r, 1500/want.FloorMS)
	}

	// No throughput measured, no link rate: no degradation, no floor.
	idle, err := Aggregate(k, 0, []Run{{TotalMS: 5, PagesOwned: 10}})
	if err != nil {
		t.Fatalf("Aggregate = %v", err)
	}
	if idle.Degradation != nil || idle.FloorMS != 0 || idle.OverFloor() != 0 {
		t.Errorf("Aggregate(unshaped, idle) = degradation %v, floor %v, ratio %v, want nil, 0, 0", idle.Degradation, idle.FloorMS, idle.OverFloor())
	}

	if _, err := Aggregate(k, 1e9, nil); err == nil {
		t.Errorf("Aggregate(no runs) = nil error, want one")
	}
}

func cellsClose(a, b Cell) bool {
	close := func(x, y Stat) bool {
		near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*max(1, math.Abs(b)) }
		return near(x.Mean, y.Mean) && near(x.Min, y.Min) && near(x.Max, y.Max) && near(x.Stddev, y.Stddev)
	}
	if (a.Degradation == nil) != (b.Degradation == nil) || (a.Degradation != nil && !close(*a.Degradation, *b.Degradation)) {
		return false
	}
	return a.Key == b.Key && a.Reps == b.Reps && a.RateBPS == b.RateBPS && math.Abs(a.FloorMS-b.FloorMS) < 1e-9 &&
		close(a.TotalMS, b.TotalMS) && close(a.DowntimeMS, b.DowntimeMS) && close(a.PagesSent, b.PagesSent) &&
		close(a.BytesSent, b.BytesSent) && close(a.NetworkFaults, b.NetworkFaults) &&
		close(a.FaultP50US, b.FaultP50US) && close(a.FaultP99US, b.FaultP99US)
}

func TestLabel(t *testing.T) {
	for _, tt := range []struct {
		k    Key
		want string
	}{
		{Key{Mode: "precopy", Push: "prepaging"}, "precopy"},
		{Key{Mode: "postcopy", Push: "prepaging"}, "postcopy prepaging"},
		{Key{Mode: "hybrid"}, "hybrid"},
		{Key{Mode: "postcopy", Push: "prepaging", Balloon: true}, "postcopy prepaging +balloon"},
	} {
		if got := tt.k.Label(); got != tt.want {
			t.Errorf("%+v.Label() = %q, want %q", tt.k, got, tt.want)
		}
	}
}

// matrix returns cells like a benchmark's: every method on every workload.
func matrix(t *testing.T, guest uint64) []Cell {
	t.Helper()
	methods := []Key{
		{Mode: "precopy"},
		{Mode: "postcopy", Push: "demand"},
		{Mode: "postcopy", Push: "sequential"},
		{Mode: "postcopy", Push: "prepaging"},
		{Mode: "hybrid", Push: "prepaging"},
		{Mode: "hybrid", Push: "workingset"},
	}
	var cells []Cell
	for wi, w := range []string{"idle", "kernel-compile", "web-server", "write-stress"} {
		for mi, m := range methods {
			m.Workload, m.GuestBytes = w, guest
			pages := uint64(guest / PageSize / uint64(2+wi))
			var runs []Run
			for rep := range 3 {
				r := Run{
					TotalMS:    float64(guest>>20)*(5+float64(wi*mi%5)) + 100*float64(rep),
					DowntimeMS: 5 + float64(mi*rep),
					PagesOwned: pages,
					PagesSent:  pages + pages*uint64(wi)/uint64(1+mi),
				}
				if m.Mode != "precopy" {
					r.NetworkFaults = uint64(2000 / (1 + mi*wi))
					r.FaultP50US, r.FaultP99US = 90+float64(mi), 800+float64(10*wi)
				}
				if w != "idle" {
					r.OpsBefore, r.OpsDuring = 1000, 1000-float64(50*mi+30*rep)
				}
				runs = append(runs, r)
			}
			c, err := Aggregate(m, 1e9, runs)
			if err != nil {
				t.Fatalf("Aggregate(%+v) = %v", m, err)
			}
			cells = append(cells, c)
		}
	}
	return cells
}

func TestWriteTable(t *testing.T) {
	cells := matrix(t, 512<<20)
	var b bytes.Buffer
	if err := WriteTable(&b, cells); err != nil {
		t.Fatalf("WriteTable = %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != len(cells)+1 {
		t.Fatalf("WriteTable wrote %d lines, want %d:\n%s", len(lines), len(cells)+1, b.String())
	}
	for _, want := range []string{"link", "total ms", "floor ms", "x floor", "GB/s", "downtime ms", "pages sent", "faults", "p50/p99 us", "degradation"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("table header %q lacks %q", lines[0], want)
		}
	}
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "idle ") && !strings.HasPrefix(l, "kernel-compile") && !strings.HasPrefix(l, "web-server") && !strings.HasPrefix(l, "write-stress") {
			t.Errorf("table row %q does not start with its workload", l)
		}
	}
	// The first cell: precopy, idle, 512 MiB: 2660 ms ±100, floor 2147 ms.
	for _, want := range []string{"512 MiB", "precopy", "2660 ±100", "2147", "1.24"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("table row %q lacks %q", lines[1], want)
		}
	}
	t.Logf("\n%s", b.String())
}

func TestWriteCSV(t *testing.T) {
	cells := matrix(t, 512<<20)
	var b bytes.Buffer
	if err := WriteCSV(&b, cells); err != nil {
		t.Fatalf("WriteCSV = %v", err)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatalf("reading WriteCSV's output: %v", err)
	}
	if len(recs) != len(cells)+1 {
		t.Fatalf("WriteCSV wrote %d records, want %d", len(recs), len(cells)+1)
	}
	if !slices.Equal(recs[0], CSVHeader()) {
		t.Errorf("CSV header = %q, want %q", recs[0], CSVHeader())
	}
	col := func(name string) int { return slices.Index(recs[0], name) }
	for _, name := range []string{"mode", "push", "workload", "guest_bytes", "reps", "rate_bps", "floor_ms",
		"total_ms_mean", "total_ms_min", "total_ms_max", "downtime_ms_mean", "pages_sent_mean", "bytes_sent_mean",
		"network_faults_mean", "fault_p50_us_mean", "fault_p99_us_mean", "degradation_mean"} {
		if col(name) < 0 {
			t.Errorf("CSV header %q lacks %q", recs[0], name)
		}
	}
	first, last := recs[1], recs[len(recs)-1]
	for _, tt := range []struct {
		row       []string
		name, val string
	}{
		{first, "mode", "precopy"},
		{first, "push", ""},
		{first, "workload", "idle"},
		{first, "guest_bytes", "536870912"},
		{first, "reps", "3"},
		{first, "rate_bps", "1000000000"},
		{first, "total_ms_min", "2560"},
		{first, "total_ms_max", "2760"},
		{first, "total_ms_stddev", "100"},
		{first, "degradation_mean", ""},
		{last, "mode", "hybrid"},
		{last, "push", "workingset"},
		{last, "degradation_min", "0.25"},
	} {
		if got := tt.row[col(tt.name)]; got != tt.val {
			t.Errorf("CSV %s of %s %s = %q, want %q", tt.name, tt.row[0], tt.row[2], got, tt.val)
		}
	}
}

// svgElements decodes an SVG document and counts its elements by name and
// class ("rect.bar").
func svgElements(t *testing.T, doc []byte) map[string]int {
	t.Helper()
	n := map[string]int{}
	d := xml.NewDecoder(bytes.NewReader(doc))
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, doc)
		}
		if se, ok := tok.(xml.StartElement); ok {
			n[se.Name.Local]++
			for _, a := range se.Attr {
				if a.Name.Local == "class" {
					n[se.Name.Local+"."+a.Value]++
				}
			}
		}
	}
}

func TestWriteSVG(t *testing.T) {
	cells := append(matrix(t, 512<<20), matrix(t, 2<<30)...)
	charts := Charts(cells)
	var names []string
	for _, c := range charts {
		names = append(names, c.Name)
	}
	want := []string{"total-time-512mib", "downtime-512mib", "pages-sent-512mib", "network-faults-512mib",
		"total-time-2gib", "downtime-2gib", "pages-sent-2gib", "network-faults-2gib"}
	if !slices.Equal(names, want) {
		t.Fatalf("Charts(...) names = %q, want %q", names, want)
	}
	perSize := len(cells) / 2
	for _, tt := range []struct {
		chart   Chart
		bars    int
		markers int
	}{
		{charts[0], perSize, perSize},       // total time, with the floor on every bar
		{charts[2], perSize, 0},             // pages sent
		{charts[3], perSize - perSize/6, 0}, // faults: no precopy bars
	} {
		var b bytes.Buffer
		if err := WriteSVG(&b, tt.chart); err != nil {
			t.Fatalf("WriteSVG(%s) = %v", tt.chart.Name, err)
		}
		n := svgElements(t, b.Bytes())
		if n["rect.bar"] != tt.bars || n["line.marker"] != tt.markers {
			t.Errorf("WriteSVG(%s): %d bars, %d markers, want %d, %d", tt.chart.Name, n["rect.bar"], n["line.marker"], tt.bars, tt.markers)
		}
	}

	// Text is escaped.
	var b bytes.Buffer
	c := Chart{Title: `a<b & "c"`, Groups: []string{"<g>"}, Series: []Series{{Name: "s&t", Bars: map[string]Bar{"<g>": {Value: 1}}}}}
	if err := WriteSVG(&b, c); err != nil {
		t.Fatalf("WriteSVG = %v", err)
	}
	if n := svgElements(t, b.Bytes()); n["rect.bar"] != 1 {
		t.Errorf("WriteSVG(%+v): %d bars, want 1", c, n["rect.bar"])
	}
}

func TestNiceScale(t *testing.T) {
	for _, tt := range []struct {
		v, top, step float64
	}{
		{0, 1, 0.2},
		{1, 1, 0.2},
		{7.3, 8, 2},
		{12, 15, 5},
		{95, 100, 20},
		{1e6, 1e6, 2e5},
		{1.1e6, 1.5e6, 5e5},
	} {
		top, step := niceScale(tt.v)
		if math.Abs(top-tt.top) > 1e-9*tt.top || math.Abs(step-tt.step) > 1e-9*tt.step {
			t.Errorf("niceScale(%v) = %v, %v, want %v, %v", tt.v, top, step, tt.top, tt.step)
		}
	}
}

func TestNum(t *testing.T) {
	for _, tt := range []struct {
		v    float64
		want string
	}{
		{0, "0"}, {0.25, "0.25"}, {2, "2"}, {12.5, "12.5"}, {480, "480"}, {12000, "12k"}, {1.5e6, "1.5M"}, {2e9, "2G"},
	} {
		if got := num(tt.v); got != tt.want {
			t.Errorf("num(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestGBpsAndLink(t *testing.T) {
	c := Cell{TotalMS: Stat{Mean: 500}, BytesSent: Stat{Mean: 1e9}}
	if got := c.GBps(); got != 2 {
		t.Errorf("GBps() of 1e9 bytes in 500 ms = %v, want 2", got)
	}
	if got := (Cell{}).GBps(); got != 0 {
		t.Errorf("GBps() of an empty cell = %v, want 0", got)
	}
	for _, tc := range []struct {
		rate uint64
		want string
	}{{0, "unshaped"}, {1e9, "1 Gbit/s"}, {10e9, "10 Gbit/s"}, {500e6, "500 Mbit/s"}} {
		if got := LinkHuman(tc.rate); got != tc.want {
			t.Errorf("LinkHuman(%d) = %q, want %q", tc.rate, got, tc.want)
		}
	}
}
