package pvdriver

import (
	"math"
	"math/rand"
	"testing"
)

const mib = 1024 // KiB per MiB

// testParams: 64 MiB or 10 % reserve, 16 MiB dead band, 256 MiB shrink
// step, 128 MiB floor, 16 MiB squeeze reserve (the defaults).
var testParams = DefaultParams()

func TestTarget(t *testing.T) {
	wideBand := testParams
	wideBand.HysteresisKiB = 100 * mib // invalid, but the policy must stay safe
	noStep := testParams
	noStep.MaxShrinkKiB = 0

	for _, tt := range []struct {
		name   string
		in     Inputs
		p      Params
		want   uint64
		change bool
	}{
		{"grow to committed+reserve", Inputs{CommittedKiB: 500 * mib, CurrentKiB: 300 * mib, MaxKiB: 2048 * mib}, testParams, 564 * mib, true},
		{"grow with fractional reserve", Inputs{CommittedKiB: 1000 * mib, CurrentKiB: 600 * mib, MaxKiB: 2048 * mib}, testParams, 1100 * mib, true},
		{"shrink", Inputs{CommittedKiB: 300 * mib, CurrentKiB: 420 * mib, MaxKiB: 2048 * mib}, testParams, 364 * mib, true},
		{"shrink is step-limited", Inputs{CommittedKiB: 300 * mib, CurrentKiB: 2048 * mib, MaxKiB: 2048 * mib}, testParams, 1792 * mib, true},
		{"shrink without step limit", Inputs{CommittedKiB: 300 * mib, CurrentKiB: 2048 * mib, MaxKiB: 2048 * mib}, noStep, 364 * mib, true},
		{"hysteresis holds small growth", Inputs{CommittedKiB: 300 * mib, CurrentKiB: 354 * mib, MaxKiB: 2048 * mib}, testParams, 354 * mib, false},
		{"hysteresis holds small shrink", Inputs{CommittedKiB: 300 * mib, CurrentKiB: 374 * mib, MaxKiB: 2048 * mib}, testParams, 374 * mib, false},
		{"hysteresis edge moves", Inputs{CommittedKiB: 300 * mib, CurrentKiB: 348 * mib, MaxKiB: 2048 * mib}, testParams, 364 * mib, true},
		{"below committed grows despite dead band", Inputs{CommittedKiB: 300 * mib, CurrentKiB: 295 * mib, MaxKiB: 2048 * mib}, wideBand, 364 * mib, true},
		{"at goal", Inputs{CommittedKiB: 300 * mib, CurrentKiB: 364 * mib, MaxKiB: 2048 * mib}, testParams, 364 * mib, false},
		{"floor", Inputs{CommittedKiB: 20 * mib, CurrentKiB: 200 * mib, MaxKiB: 2048 * mib}, testParams, 128 * mib, true},
		{"below floor rises despite dead band", Inputs{CommittedKiB: 20 * mib, CurrentKiB: 120 * mib, MaxKiB: 2048 * mib}, testParams, 128 * mib, true},
		{"max caps growth", Inputs{CommittedKiB: 1900 * mib, CurrentKiB: 1500 * mib, MaxKiB: 2048 * mib}, testParams, 2048 * mib, true},
		{"committed above max stays at max", Inputs{CommittedKiB: 3000 * mib, CurrentKiB: 2048 * mib, MaxKiB: 2048 * mib}, testParams, 2048 * mib, false},
		{"above max obeys the ceiling at once", Inputs{CommittedKiB: 1900 * mib, CurrentKiB: 4096 * mib, MaxKiB: 2048 * mib}, testParams, 2048 * mib, true},
		{"above max steps from the ceiling", Inputs{CommittedKiB: 300 * mib, CurrentKiB: 4096 * mib, MaxKiB: 2048 * mib}, testParams, 1792 * mib, true},
		{"max wins over floor", Inputs{CommittedKiB: 20 * mib, CurrentKiB: 0, MaxKiB: 100 * mib}, testParams, 100 * mib, true},
		{"unknown current", Inputs{CommittedKiB: 300 * mib, MaxKiB: 2048 * mib}, testParams, 364 * mib, true},
		{"no ceiling", Inputs{CommittedKiB: 5000 * mib, CurrentKiB: 0}, testParams, 5500 * mib, true},
		{"committed overflow saturates then caps", Inputs{CommittedKiB: math.MaxUint64, CurrentKiB: 1024 * mib, MaxKiB: 2048 * mib}, testParams, 2048 * mib, true},
		{"squeeze shrinks in one step", Inputs{CommittedKiB: 300 * mib, CurrentKiB: 2048 * mib, MaxKiB: 2048 * mib, Squeeze: true}, testParams, 316 * mib, true},
		{"squeeze ignores hysteresis", Inputs{CommittedKiB: 300 * mib, CurrentKiB: 320 * mib, MaxKiB: 2048 * mib, Squeeze: true}, testParams, 316 * mib, true},
		{"squeeze keeps the floor", Inputs{CommittedKiB: 50 * mib, CurrentKiB: 512 * mib, MaxKiB: 2048 * mib, Squeeze: true}, testParams, 128 * mib, true},
		{"squeeze grows when demand rises", Inputs{CommittedKiB: 500 * mib, CurrentKiB: 316 * mib, MaxKiB: 2048 * mib, Squeeze: true}, testParams, 516 * mib, true},
		{"squeeze at goal", Inputs{CommittedKiB: 300 * mib, CurrentKiB: 316 * mib, MaxKiB: 2048 * mib, Squeeze: true}, testParams, 316 * mib, false},
		{"squeeze capped at max", Inputs{CommittedKiB: 4000 * mib, CurrentKiB: 1024 * mib, MaxKiB: 2048 * mib, Squeeze: true}, testParams, 2048 * mib, true},
		{"squeeze keeps the reserve available", Inputs{CommittedKiB: 100 * mib, UsedKiB: 400 * mib, CurrentKiB: 2048 * mib, MaxKiB: 2048 * mib, Squeeze: true}, testParams, 416 * mib, true},
		{"squeeze counts committed when it is more", Inputs{CommittedKiB: 500 * mib, UsedKiB: 400 * mib, CurrentKiB: 2048 * mib, MaxKiB: 2048 * mib, Squeeze: true}, testParams, 516 * mib, true},
		{"in use above committed grows", Inputs{CommittedKiB: 100 * mib, UsedKiB: 700 * mib, CurrentKiB: 720 * mib, MaxKiB: 2048 * mib}, testParams, 770 * mib, true},
		{"in use shrinks with the reserve kept", Inputs{CommittedKiB: 100 * mib, UsedKiB: 300 * mib, CurrentKiB: 2048 * mib, MaxKiB: 2048 * mib}, noStep, 364 * mib, true},
	} {
		d := Target(tt.in, tt.p)
		if d.TargetKiB != tt.want || d.Change != tt.change {
			t.Errorf("%s: Target(%+v) = %d (change %v, %q), want %d (change %v)", tt.name, tt.in, d.TargetKiB, d.Change, d.Reason, tt.want, tt.change)
		}
		if d.Reason == "" {
			t.Errorf("%s: Target(%+v) gave no reason", tt.name, tt.in)
		}
	}
}

// TestTargetInvariants checks, over many random inputs, what must hold
// whatever the numbers: never above the ceiling, never below the floor,
// committed memory or memory in use (each as far as the ceiling allows), Change exactly when
// the target moves, and a squeeze never ends above normal operation.
func TestTargetInvariants(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 100000; i++ {
		in := Inputs{
			CommittedKiB: uint64(r.Int63n(8192 * mib)),
			UsedKiB:      uint64(r.Int63n(8192 * mib)),
			CurrentKiB:   uint64(r.Int63n(8192 * mib)),
			MaxKiB:       uint64(r.Int63n(8192 * mib)),
			Squeeze:      r.Intn(2) == 0,
		}
		if r.Intn(10) == 0 {
			in.MaxKiB = 0
		}
		d := Target(in, testParams)
		if in.MaxKiB > 0 && d.TargetKiB > in.MaxKiB {
			t.Fatalf("Target(%+v) = %d, above max", in, d.TargetKiB)
		}
		low := max(testParams.FloorKiB, in.CommittedKiB, in.UsedKiB)
		if in.MaxKiB > 0 {
			low = min(low, in.MaxKiB)
		}
		if d.TargetKiB < low {
			t.Fatalf("Target(%+v) = %d, below min(max(floor, committed, used), max) = %d", in, d.TargetKiB, low)
		}
		if d.Change != (d.TargetKiB != in.CurrentKiB) {
			t.Fatalf("Target(%+v) = %d, Change %v", in, d.TargetKiB, d.Change)
		}
		if in.Squeeze {
			normal := in
			normal.Squeeze, normal.CurrentKiB = false, 0
			if n := Target(normal, testParams); d.TargetKiB > n.TargetKiB {
				t.Fatalf("Target(%+v) = %d, above the normal goal %d", in, d.TargetKiB, n.TargetKiB)
			}
		}
	}
}

func TestParamsValidate(t *testing.T) {
	if err := DefaultParams().Validate(); err != nil {
		t.Errorf("DefaultParams().Validate() = %v", err)
	}
	for _, tt := range []struct {
		name string
		mod  func(*Params)
	}{
		{"negative fraction", func(p *Params) { p.ReserveFraction = -1 }},
		{"dead band above reserve", func(p *Params) { p.HysteresisKiB = p.ReserveKiB + 1 }},
		{"zero floor", func(p *Params) { p.FloorKiB = 0 }},
	} {
		p := DefaultParams()
		tt.mod(&p)
		if err := p.Validate(); err == nil {
			t.Errorf("%s: Validate(%+v) = nil, want an error", tt.name, p)
		}
	}
}
