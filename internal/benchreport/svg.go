package benchreport

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
)

// Chart is a grouped bar chart: one group of bars per category along the x
// axis, one bar per series (one colour, named in the legend) in each group.
type Chart struct {
	Name        string // short and file-name safe, e.g. "total-time-512mib"
	Title       string
	Subtitle    string // how to read the chart, under the title
	YLabel      string
	Groups      []string
	Series      []Series
	MarkerLabel string // legend entry for the bars' markers; empty when none
}

// Series is one colour of bars.
type Series struct {
	Name   string
	Colour string         // CSS colour; empty picks the palette's colour for the series' index
	Bars   map[string]Bar // by group; a group without a bar keeps a gap
}

// colour returns the colour of the i-th series s.
func (s Series) colour(i int) string {
	if s.Colour != "" {
		return s.Colour
	}
	return palette(i)
}

// Bar is one bar: its value, an optional whisker from Low to High (drawn
// when High > Low) and an optional marker, a dashed line across the bar at
// Marker (drawn when Marker > 0), e.g. the physical floor.
type Bar struct {
	Value, Low, High float64
	Marker           float64
}

// Charts returns the standard charts of a benchmark, for each guest size in
// the order cells first show it: total time against the physical floor,
// downtime, pages sent, and network faults of the modes that fault, each
// grouped by workload with one colour per method, the same in every chart.
func Charts(cells []Cell) []Chart {
	colours := map[string]string{}
	for _, c := range cells {
		if _, ok := colours[c.Label()]; !ok {
			colours[c.Label()] = palette(len(colours))
		}
	}
	var sizes []uint64
	bySize := map[uint64][]Cell{}
	for _, c := range cells {
		if _, ok := bySize[c.GuestBytes]; !ok {
			sizes = append(sizes, c.GuestBytes)
		}
		bySize[c.GuestBytes] = append(bySize[c.GuestBytes], c)
	}
	var charts []Chart
	for _, size := range sizes {
		cs := bySize[size]
		chartOf := func(bar func(Cell) Bar, keep func(Cell) bool) Chart { return chartOf(cs, colours, bar, keep) }
		guest := sizeHuman(size)
		slug := strings.ToLower(strings.ReplaceAll(guest, " ", ""))
		reps := fmt.Sprintf("mean of %d run(s), whiskers min to max", cs[0].Reps)
		total := chartOf(func(c Cell) Bar {
			return Bar{c.TotalMS.Mean / 1000, c.TotalMS.Min / 1000, c.TotalMS.Max / 1000, c.FloorMS / 1000}
		}, func(Cell) bool { return true })
		total.Name, total.Title, total.YLabel = "total-time-"+slug, "Total migration time, "+guest+" guest", "seconds"
		total.Subtitle = reps
		if cs[0].RateBPS > 0 {
			total.MarkerLabel = fmt.Sprintf("physical floor: non-zero pages / %s", rateHuman(cs[0].RateBPS))
		}
		charts = append(charts, total)

		down := chartOf(func(c Cell) Bar { return statBar(c.DowntimeMS) }, func(Cell) bool { return true })
		down.Name, down.Title, down.YLabel, down.Subtitle = "downtime-"+slug, "Downtime, "+guest+" guest", "milliseconds", reps
		charts = append(charts, down)

		pages := chartOf(func(c Cell) Bar { return statBar(c.PagesSent) }, func(Cell) bool { return true })
		pages.Name, pages.Title, pages.YLabel, pages.Subtitle = "pages-sent-"+slug, "Pages sent, "+guest+" guest", "pages", reps
		charts = append(charts, pages)

		faults := chartOf(func(c Cell) Bar { return statBar(c.NetworkFaults) }, func(c Cell) bool { return c.Mode != "precopy" })
		if len(faults.Series) > 0 {
			faults.Name, faults.Title, faults.YLabel = "network-faults-"+slug, "Network faults by push order, "+guest+" guest", "faults"
			faults.Subtitle = reps + "; pre-copy never faults"
			charts = append(charts, faults)
		}
	}
	return charts
}

func statBar(s Stat) Bar { return Bar{Value: s.Mean, Low: s.Min, High: s.Max} }

// chartOf groups the cells keep selects by workload, one series per method
// in the method's colour.
func chartOf(cells []Cell, colours map[string]string, bar func(Cell) Bar, keep func(Cell) bool) Chart {
	var ch Chart
	series := map[string]int{}
	groups := map[string]bool{}
	for _, c := range cells {
		if !keep(c) {
			continue
		}
		if !groups[c.Workload] {
			groups[c.Workload] = true
			ch.Groups = append(ch.Groups, c.Workload)
		}
		i, ok := series[c.Label()]
		if !ok {
			i = len(ch.Series)
			series[c.Label()] = i
			ch.Series = append(ch.Series, Series{Name: c.Label(), Colour: colours[c.Label()], Bars: map[string]Bar{}})
		}
		ch.Series[i].Bars[c.Workload] = bar(c)
	}
	return ch
}

// palette is Okabe and Ito's, safe for colour-blind readers.
func palette(i int) string {
	p := []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"}
	return p[i%len(p)]
}

// Layout of a chart, in pixels.
const (
	svgLeft     = 80  // y axis labels
	svgRight    = 30  //
	svgTop      = 78  // title and subtitle
	svgPlotH    = 320 // plot area height
	svgBarW     = 22  // one bar
	svgGroupGap = 34  // between groups
	svgMinW     = 640
	svgFont     = "DejaVu Sans, Helvetica, Arial, sans-serif"
)

// WriteSVG draws c as a standalone SVG image.
func WriteSVG(w io.Writer, c Chart) error {
	ns := len(c.Series)
	groupW := max(ns, 1) * svgBarW
	plotW := len(c.Groups)*groupW + (len(c.Groups)+1)*svgGroupGap
	width := max(svgMinW, svgLeft+plotW+svgRight)
	plotW = width - svgLeft - svgRight // spread the groups over the width
	gap := float64(plotW-len(c.Groups)*groupW) / float64(len(c.Groups)+1)

	// Legend entries, wrapped into rows under the x labels.
	type entry struct {
		name, colour string
		marker       bool
	}
	var entries []entry
	for i, s := range c.Series {
		entries = append(entries, entry{s.Name, s.colour(i), false})
	}
	if c.MarkerLabel != "" {
		entries = append(entries, entry{c.MarkerLabel, "#000", true})
	}
	type placed struct {
		entry
		x, y float64
	}
	var legend []placed
	legendTop := float64(svgTop + svgPlotH + 52)
	x, y := float64(svgLeft), legendTop
	for _, e := range entries {
		ew := 30 + 7.2*float64(len(e.name))
		if x+ew > float64(width-svgRight) && x > svgLeft {
			x, y = svgLeft, y+22
		}
		legend = append(legend, placed{e, x, y})
		x += ew + 18
	}
	height := int(y) + 24

	top := 0.0
	for _, s := range c.Series {
		for _, b := range s.Bars {
			top = max(top, b.Value, b.High, b.Marker)
		}
	}
	yMax, step := niceScale(top * 1.18) // headroom for the value labels
	yOf := func(v float64) float64 { return svgTop + svgPlotH - v/yMax*svgPlotH }

	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="%s">`, width, height, width, height, svgFont)
	p(`<rect width="100%%" height="100%%" fill="#fff"/>`)
	p(`<text x="%d" y="30" font-size="19" font-weight="bold" fill="#222">%s</text>`, svgLeft, esc(c.Title))
	if c.Subtitle != "" {
		p(`<text x="%d" y="52" font-size="13" fill="#555">%s</text>`, svgLeft, esc(c.Subtitle))
	}
	// Grid and y axis.
	for v := 0.0; v <= yMax+step/2; v += step {
		yy := yOf(v)
		p(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e3e3e3"/>`, svgLeft, yy, width-svgRight, yy)
		p(`<text x="%d" y="%.1f" font-size="12" fill="#444" text-anchor="end">%s</text>`, svgLeft-8, yy+4, num(v))
	}
	p(`<text transform="translate(22 %d) rotate(-90)" font-size="13" fill="#333" text-anchor="middle">%s</text>`, svgTop+svgPlotH/2, esc(c.YLabel))
	p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`, svgLeft, svgTop, svgLeft, svgTop+svgPlotH)
	p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`, svgLeft, svgTop+svgPlotH, width-svgRight, svgTop+svgPlotH)

	for gi, g := range c.Groups {
		gx := svgLeft + gap + float64(gi)*(float64(groupW)+gap)
		p(`<text x="%.1f" y="%d" font-size="13" fill="#222" text-anchor="middle">%s</text>`, gx+float64(groupW)/2, svgTop+svgPlotH+22, esc(g))
		for si, s := range c.Series {
			bar, ok := s.Bars[g]
			if !ok {
				continue
			}
			bx := gx + float64(si*svgBarW) + 1
			bw := float64(svgBarW - 2)
			cx := bx + bw/2
			yv := yOf(bar.Value)
			p(`<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s, %s: %s</title></rect>`,
				bx, yv, bw, yOf(0)-yv, s.colour(si), esc(s.Name), esc(g), num(bar.Value))
			labelY := yv
			if bar.High > bar.Low {
				lo, hi := yOf(bar.Low), yOf(bar.High)
				p(`<path d="M%.1f %.1fV%.1fM%.1f %.1fh8M%.1f %.1fh8" stroke="#222" stroke-width="1.2"/>`, cx, lo, hi, cx-4, lo, cx-4, hi)
				labelY = min(labelY, hi)
			}
			if bar.Marker > 0 {
				my := yOf(bar.Marker)
				p(`<line class="marker" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000" stroke-width="2.5" stroke-dasharray="4 2"/>`, bx-2, my, bx+bw+2, my)
				labelY = min(labelY, my)
			}
			p(`<text transform="translate(%.1f %.1f) rotate(-90)" font-size="11" fill="#222" dominant-baseline="central">%s</text>`, cx, labelY-5, num(bar.Value))
		}
	}
	for _, l := range legend {
		if l.marker {
			p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000" stroke-width="2.5" stroke-dasharray="4 2"/>`, l.x, l.y, l.x+20, l.y)
		} else {
			p(`<rect x="%.1f" y="%.1f" width="20" height="12" fill="%s"/>`, l.x, l.y-6, l.colour)
		}
		p(`<text x="%.1f" y="%.1f" font-size="13" fill="#222">%s</text>`, l.x+26, l.y+4.5, esc(l.name))
	}
	p(`</svg>`)
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("benchreport: writing chart %q: %w", c.Name, err)
	}
	return nil
}

// niceScale returns an axis top at or above v and a tick step of 1, 2 or 5
// times a power of ten, giving about five ticks.
func niceScale(v float64) (top, step float64) {
	if v <= 0 {
		return 1, 0.2
	}
	raw := v / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step = 10 * mag
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	return math.Ceil(v/step-1e-9) * step, step
}

// num formats an axis or bar value compactly: 0.25, 12.5, 480, 12k, 1.5M.
func num(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e9:
		return trim(fmt.Sprintf("%.1f", v/1e9)) + "G"
	case a >= 1e6:
		return trim(fmt.Sprintf("%.1f", v/1e6)) + "M"
	case a >= 1e4:
		return trim(fmt.Sprintf("%.1f", v/1e3)) + "k"
	case a >= 100 || a == 0:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return trim(fmt.Sprintf("%.1f", v))
	default:
		return trim(fmt.Sprintf("%.2f", v))
	}
}

func trim(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// rateHuman formats a link rate: "1 Gbit/s", "200 Mbit/s".
func rateHuman(bps uint64) string {
	if bps >= 1e9 {
		return trim(fmt.Sprintf("%.2f", float64(bps)/1e9)) + " Gbit/s"
	}
	return trim(fmt.Sprintf("%.2f", float64(bps)/1e6)) + " Mbit/s"
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
