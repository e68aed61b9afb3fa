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

// phaseComplete is the engine's progress phase once the destination holds
// every page; the migration then only waits for the destination's report.
const phaseComplete = "complete"

// progressReporter shows a migration's progress: a bar on a terminal, a log
// line a second otherwise. Once the migration is complete it says so once
// and then, if waiting is not empty, what the command still waits for,
// instead of repeating the last snapshot. It returns the callback and a
// function that ends the display.
func progressReporter(w io.Writer, log *logrus.Logger, waiting string) (func(xenmig.Progress), func()) {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return progressBar(w, waiting)
	}
	var last time.Time
	var lastPhase string
	return func(p xenmig.Progress) {
		if p.Phase == lastPhase && (p.Phase == phaseComplete || time.Since(last) < time.Second) {
			return
		}
		last, lastPhase = time.Now(), p.Phase
		if p.Phase == phaseComplete {
			log.WithFields(logrus.Fields{"bytes": p.Bytes, "elapsed_ms": p.Elapsed.Milliseconds()}).
				Info("memory moved: the destination has every page")
			if waiting != "" {
				log.Info(waiting)
			}
			return
		}
		log.WithFields(logrus.Fields{"phase": phaseName(p), "pages": p.Done, "of": p.Total,
			"bytes": p.Bytes, "elapsed_ms": p.Elapsed.Milliseconds()}).Info("migration progress")
	}, func() {}
}

func progressBar(w io.Writer, waiting string) (func(xenmig.Progress), func()) {
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
	finished := false
	finish := func() {
		if !finished {
			finished = true
			bar.Finish()
			fmt.Fprintln(w)
		}
	}
	return func(p xenmig.Progress) {
		if finished {
			return
		}
		if p.Phase == phaseComplete {
			finish()
			fmt.Fprintf(w, "memory moved: the destination has every page (%.1f MiB sent in %v)\n",
				float64(p.Bytes)/(1<<20), p.Elapsed.Round(time.Millisecond))
			if waiting != "" {
				fmt.Fprintln(w, waiting+" ...")
			}
			return
		}
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
	}, finish
}

func phaseName(p xenmig.Progress) string {
	if p.Round > 0 {
		return fmt.Sprintf("%s %d", p.Phase, p.Round)
	}
	return p.Phase
}
