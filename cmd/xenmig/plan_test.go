package main

import (
	"errors"
	"testing"

	"github.com/xenmig/xenmig/xenmig"
)

// TestPlanChoices: the flags and a plugin request override the configured
// plan the same way.
func TestPlanChoices(t *testing.T) {
	base := xenmig.DefaultPlan() // post-copy, pre-paging, 7 pivots, unlimited
	for _, tc := range []struct {
		name    string
		c       planChoices
		mode    xenmig.Mode
		push    xenmig.Push
		pivots  int
		bw      int64
		balloon bool
		err     error
	}{
		{"none", planChoices{}, xenmig.PostCopy, xenmig.PushPrepaging, 7, 0, false, nil},
		{"hybrid pushes the working set", planChoices{mode: xenmig.Hybrid}, xenmig.Hybrid, xenmig.PushWorkingSet, 7, 0, false, nil},
		{"hybrid keeps a chosen push", planChoices{mode: xenmig.Hybrid, push: xenmig.PushSequential}, xenmig.Hybrid, xenmig.PushSequential, 7, 0, false, nil},
		{"all set", planChoices{mode: xenmig.PreCopy, push: xenmig.PushDemand, pivots: 3, bandwidth: 1 << 20, balloon: true},
			xenmig.PreCopy, xenmig.PushDemand, 3, 1 << 20, true, nil},
		{"bad mode", planChoices{mode: "teleport"}, "", "", 0, 0, false, xenmig.ErrBadPlan},
		{"workingset needs hybrid", planChoices{push: xenmig.PushWorkingSet}, "", "", 0, 0, false, xenmig.ErrBadPlan},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tc.c.over(base)
			if !errors.Is(err, tc.err) {
				t.Fatalf("over() error = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if p.Mode != tc.mode || p.Push != tc.push || p.Pivots != tc.pivots || p.Bandwidth != tc.bw || p.Balloon != tc.balloon {
				t.Errorf("over() = mode %s push %s pivots %d bandwidth %d balloon %v, want %s %s %d %d %v",
					p.Mode, p.Push, p.Pivots, p.Bandwidth, p.Balloon, tc.mode, tc.push, tc.pivots, tc.bw, tc.balloon)
			}
		})
	}
}
