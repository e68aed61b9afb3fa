package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/sirupsen/logrus"
	"golang.org/x/term"

	"github.com/xenmig/xenmig/xenmig"
)

// progressReporter shows a migration's progress: a bar on a terminal, a log
// line a second otherwise. It returns the callback and a function that ends
// the display.
func progressReporter(w io.Writer, log *logrus.Logger) (func(xenmig.Progress), func()) {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return progressBar(w)
	}
	var last time.Time
	var lastPhase string
	return func(p xenmig.Progress) {
		if p.Phase == lastPhase && time.Since(last) < time.Second {
			return
		}
		last, lastPhase = time.Now(), p.Phase
		log.WithFields(logrus.Fields{"phase": phaseName(p), "pages": p.Done, "of": p.Total,
			"bytes": p.Bytes, "elapsed_ms": p.Elapsed.Milliseconds()}).Info("migration progress")
	}, func() {}
}

func progressBar(w io.Writer) (func(xenmig.Progress), func()) {
	bar := progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionSetItsString("pages"),
		progressbar.OptionShowIts(),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionFullWidth(),
	)
	var phase string
	return func(p xenmig.Progress) {
			if name := phaseName(p); name != phase {
				phase = name
				bar.Reset()
				if p.Total > 0 {
					bar.ChangeMax64(int64(p.Total))
				} else {
					bar.ChangeMax64(-1)
				}
			}
			rate := 0.0
			if s := p.Elapsed.Seconds(); s > 0 {
				rate = float64(p.Bytes) * 8 / s / 1e6
			}
			bar.Describe(fmt.Sprintf("%-16s %8.1f MiB sent %7.0f Mbit/s", phase, float64(p.Bytes)/(1<<20), rate))
			bar.Set64(int64(p.Done))
		}, func() {
			bar.Finish()
			fmt.Fprintln(w)
		}
}

func phaseName(p xenmig.Progress) string {
	if p.Round > 0 {
		return fmt.Sprintf("%s %d", p.Phase, p.Round)
	}
	return p.Phase
}
