package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/xenmig/xenmig/xenmig"
)

// TestProgressComplete: once the destination has every page, the log says so
// once and says what it waits for, however many snapshots follow.
func TestProgressComplete(t *testing.T) {
	var buf bytes.Buffer
	log := logrus.New()
	log.SetOutput(&buf)
	show, done := progressReporter(&buf, log, "waiting for the guest")
	show(xenmig.Progress{Phase: "postcopy", Done: 10, Total: 100})
	for i := range 5 {
		show(xenmig.Progress{Phase: phaseComplete, Elapsed: time.Duration(i) * time.Second})
	}
	done()
	out := buf.String()
	for _, want := range []string{"phase=postcopy", "memory moved: the destination has every page", "waiting for the guest"} {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("progress output has %q %d times, want once:\n%s", want, n, out)
		}
	}
	if strings.Contains(out, "phase=complete") {
		t.Errorf("progress output repeats phase=complete:\n%s", out)
	}
}
