package pvdriver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Config tunes the Agent. Zero durations take the defaults.
type Config struct {
	// Interval between two policy ticks (default 5 s, as in the paper).
	Interval time.Duration
	// Params of the policy.
	Params Params
	// MaxKiB is a fixed ceiling. 0: the toolstack's memory/target, read at
	// every tick, or, without xenstore, the balloon target found at start.
	MaxKiB uint64
	// SqueezeTimeout bounds the wait for current_kb to reach the squeeze
	// target before acknowledging anyway (default 10 s).
	SqueezeTimeout time.Duration
	// SqueezeHoldMax returns the guest to the normal policy if dom0 never
	// says done or cancel (default 10 min; negative: hold forever).
	SqueezeHoldMax time.Duration
	// PollInterval is how often current_kb is checked while squeezing
	// (default 100 ms).
	PollInterval time.Duration
	// RestoreOnExit sets the target to the ceiling when Run returns, so a
	// stopped agent does not leave the guest starved.
	RestoreOnExit bool
	// DryRun computes and reports targets but never writes the balloon.
	DryRun bool
}

// Defaults of Config.
const (
	DefaultInterval       = 5 * time.Second
	DefaultSqueezeTimeout = 10 * time.Second
	DefaultSqueezeHoldMax = 10 * time.Minute
	DefaultPollInterval   = 100 * time.Millisecond
)

// DefaultConfig returns the defaults of xenmig-balloond.
func DefaultConfig() Config {
	return Config{
		Interval:       DefaultInterval,
		Params:         DefaultParams(),
		SqueezeTimeout: DefaultSqueezeTimeout,
		SqueezeHoldMax: DefaultSqueezeHoldMax,
		PollInterval:   DefaultPollInterval,
		RestoreOnExit:  true,
	}
}

type mode int

const (
	modeNormal mode = iota
	modeSqueezing
	modeSqueezed
)

// Agent is the self-ballooning agent: every Interval it applies Target to
// what the guest measures, writes the balloon target and reports in
// xenstore, and it serves dom0's squeeze requests on ControlKey.
type Agent struct {
	cfg     Config
	balloon Balloon
	mem     MemSource
	store   Store // nil: no xenstore, self-ballooning only
	log     logrus.FieldLogger

	ceiling    uint64
	mode       mode
	squeezeV   string    // the ControlKey value being served
	deadline   time.Time // end of the bounded wait for the squeeze
	lowest     uint64    // smallest current_kb seen while squeezing
	progressAt time.Time // when current_kb last went down
	heldSince  time.Time // when the squeeze was acknowledged
	poll       *time.Ticker
	target     uint64            // last target set or found
	written    map[string]string // xenstore values last written
}

// NewAgent checks cfg and returns an agent over the given balloon, meminfo
// source and xenstore (nil store: no reporting and no squeeze protocol).
func NewAgent(cfg Config, b Balloon, m MemSource, s Store, log logrus.FieldLogger) (*Agent, error) {
	if b == nil || m == nil {
		return nil, errors.New("agent: balloon and meminfo source are required")
	}
	if err := cfg.Params.Validate(); err != nil {
		return nil, fmt.Errorf("agent policy: %w", err)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.SqueezeTimeout <= 0 {
		cfg.SqueezeTimeout = DefaultSqueezeTimeout
	}
	if cfg.SqueezeHoldMax == 0 {
		cfg.SqueezeHoldMax = DefaultSqueezeHoldMax
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if log == nil {
		l := logrus.New()
		l.Out = io.Discard
		log = l
	}
	return &Agent{cfg: cfg, balloon: b, mem: m, store: s, log: log, written: map[string]string{}}, nil
}

// Run ticks until ctx is done, then reports StateStopped (and, with
// RestoreOnExit, gives the guest its ceiling back) and returns nil. It
// returns an error if the balloon cannot be read at start or the xenstore
// watch cannot be set up or goes away. Errors of single ticks are logged and
// reported in KeyError, not fatal.
func (a *Agent) Run(ctx context.Context) error {
	t, err := a.balloon.TargetKiB()
	if err != nil {
		return fmt.Errorf("agent start: %w", err)
	}
	a.target = t
	a.ceiling = a.cfg.MaxKiB
	if a.ceiling == 0 {
		a.ceiling = t // until memory/target says otherwise
	}
	var events <-chan string
	if a.store != nil {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		if events, err = a.store.Watch(wctx, ControlKey); err != nil {
			return fmt.Errorf("agent start: %w", err)
		}
		a.report(KeyVersion, ProtocolVersion)
		a.report(KeyError, "")
	}
	a.log.WithFields(logrus.Fields{"interval": a.cfg.Interval, "target_kb": t, "xenstore": a.store != nil, "dry_run": a.cfg.DryRun}).Info("self-ballooning agent started")
	a.report(KeyState, StateRunning)
	a.tick()

	ticker := time.NewTicker(a.cfg.Interval)
	defer ticker.Stop()
	defer a.stopPoll()
	for {
		var poll <-chan time.Time
		if a.poll != nil {
			poll = a.poll.C
		}
		select {
		case <-ctx.Done():
			a.stop()
			return nil
		case <-ticker.C:
			a.tick()
		case <-poll:
			a.checkSqueeze()
		case _, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					a.stop()
					return nil
				}
				return fmt.Errorf("agent: xenstore watch on %s closed", ControlKey)
			}
			a.control()
		}
	}
}

// tick applies the policy once.
func (a *Agent) tick() {
	if a.mode == modeSqueezed && a.cfg.SqueezeHoldMax > 0 && time.Since(a.heldSince) > a.cfg.SqueezeHoldMax {
		msg := fmt.Sprintf("squeezed for over %v without done or cancel from dom0: back to normal", a.cfg.SqueezeHoldMax)
		a.log.WithField("control", a.squeezeV).Warn(msg)
		a.report(KeyError, msg)
		a.unsqueeze("")
		return
	}
	mi, err := a.mem.MemInfo()
	if err != nil {
		a.fail("tick", err)
		return
	}
	cur, err := a.balloon.TargetKiB()
	if err != nil {
		a.fail("tick", err)
		return
	}
	a.refreshCeiling()
	size, sizeErr := a.balloon.CurrentKiB()
	in := Inputs{CommittedKiB: mi.CommittedKiB, CurrentKiB: cur, MaxKiB: a.ceiling, Squeeze: a.mode != modeNormal}
	if sizeErr == nil {
		in.UsedKiB = mi.UsedKiB(size)
	}
	d := Target(in, a.cfg.Params)
	fields := logrus.Fields{
		"committed_kb": in.CommittedKiB, "used_kb": in.UsedKiB, "available_kb": mi.MemAvailableKiB,
		"target_kb": cur, "max_kb": a.ceiling,
		"new_target_kb": d.TargetKiB, "squeeze": in.Squeeze, "reason": d.Reason,
	}
	if d.Change {
		if a.cfg.DryRun {
			a.log.WithFields(fields).Info("dry run: would set balloon target")
		} else if err := a.balloon.SetTargetKiB(d.TargetKiB); err != nil {
			a.fail("tick", err)
			return
		} else {
			a.log.WithFields(fields).Info("balloon target set")
		}
	} else {
		a.log.WithFields(fields).Debug("balloon target kept")
	}
	a.target = d.TargetKiB
	a.report(KeyTarget, strconv.FormatUint(d.TargetKiB, 10))
	a.report(KeyCommitted, strconv.FormatUint(mi.CommittedKiB, 10))
	a.report(KeyMax, strconv.FormatUint(a.ceiling, 10))
	if sizeErr == nil {
		a.report(KeyCurrent, strconv.FormatUint(size, 10))
	}
}

// refreshCeiling follows the toolstack's memory/target unless MaxKiB is
// fixed.
func (a *Agent) refreshCeiling() {
	if a.cfg.MaxKiB != 0 || a.store == nil {
		return
	}
	v, err := a.store.Read(MemoryTargetKey)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			a.log.WithError(err).Warn("cannot read memory/target; keeping the ceiling")
		}
		return
	}
	m, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	if err != nil || m == 0 {
		a.log.WithField("value", v).Warn("bad memory/target; keeping the ceiling")
		return
	}
	if m != a.ceiling {
		a.log.WithFields(logrus.Fields{"old_kb": a.ceiling, "new_kb": m}).Info("ceiling follows memory/target")
		a.ceiling = m
	}
}

// control acts on the current value of ControlKey.
func (a *Agent) control() {
	// The watch also fires when the guest lands on another host, whose
	// xenstore has none of our keys: write everything again.
	a.written = map[string]string{}
	if a.store == nil {
		return
	}
	a.report(KeyVersion, ProtocolVersion)
	v, err := a.store.Read(ControlKey)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.fail("control", err)
		return
	}
	cmd, token := ParseControl(v)
	log := a.log.WithFields(logrus.Fields{"control": v, "token": token})
	switch cmd {
	case "":
		// No migration (or a new host): be normal.
		if a.mode != modeNormal {
			log.Info("control key gone: back to normal policy")
			a.unsqueeze("")
		} else {
			a.report(KeyState, StateRunning)
			a.tick()
		}
	case CmdSqueeze:
		log.Info("squeeze requested")
		a.startSqueeze(v)
	case CmdDone, CmdCancel:
		log.Info("migration " + cmd + ": back to normal policy")
		a.unsqueeze(v)
	default:
		msg := fmt.Sprintf("unknown command %q in %s", cmd, ControlKey)
		log.Warn(msg)
		a.report(KeyError, msg)
		a.report(KeyAck, v)
	}
}

func (a *Agent) startSqueeze(v string) {
	a.mode = modeSqueezing
	a.squeezeV = v
	a.deadline = time.Now().Add(a.cfg.SqueezeTimeout)
	a.lowest, a.progressAt = 0, time.Now()
	a.report(KeyState, StateSqueezing)
	a.tick()
	a.stopPoll()
	a.poll = time.NewTicker(a.cfg.PollInterval)
	a.checkSqueeze()
}

// squeezeStall is how long current_kb may stop going down before a squeeze
// is acknowledged anyway: a busy guest allocates as fast as the balloon
// frees, and waiting longer only delays the migration.
const squeezeStall = 500 * time.Millisecond

// checkSqueeze acknowledges the squeeze once the balloon has reached its
// target, has stopped shrinking, or the bounded wait is over.
func (a *Agent) checkSqueeze() {
	if a.mode != modeSqueezing {
		a.stopPoll()
		return
	}
	cur, err := a.balloon.CurrentKiB()
	reached := err == nil && cur <= a.target
	now := time.Now()
	if err == nil && (a.lowest == 0 || cur < a.lowest) {
		a.lowest, a.progressAt = cur, now // still shrinking
	}
	stalled := now.Sub(a.progressAt) >= squeezeStall
	if !reached && !stalled && now.Before(a.deadline) {
		return
	}
	a.stopPoll()
	result := ResultReached
	switch {
	case reached:
	case now.Before(a.deadline):
		result = ResultStalled
	default:
		result = ResultTimeout
	}
	if err != nil {
		a.log.WithError(err).Warn("cannot read current_kb; acknowledging the squeeze anyway")
	}
	a.mode = modeSqueezed
	a.heldSince = time.Now()
	a.log.WithFields(logrus.Fields{"control": a.squeezeV, "current_kb": cur, "target_kb": a.target, "result": result}).Info("squeeze acknowledged")
	a.report(KeyCurrent, strconv.FormatUint(cur, 10))
	a.report(KeySqueezed, strconv.FormatUint(cur, 10))
	a.report(KeyResult, result)
	a.report(KeyState, StateSqueezed)
	a.report(KeyAck, a.squeezeV)
}

// unsqueeze returns to the normal policy and, if ack is set, acknowledges it.
func (a *Agent) unsqueeze(ack string) {
	a.stopPoll()
	a.mode = modeNormal
	a.squeezeV = ""
	a.report(KeyState, StateRunning)
	a.tick()
	if ack != "" {
		a.report(KeyAck, ack)
	}
}

func (a *Agent) stopPoll() {
	if a.poll != nil {
		a.poll.Stop()
		a.poll = nil
	}
}

// stop gives the guest its ceiling back if configured and reports it.
func (a *Agent) stop() {
	if a.cfg.RestoreOnExit && !a.cfg.DryRun && a.ceiling > 0 {
		if err := a.balloon.SetTargetKiB(a.ceiling); err != nil {
			a.log.WithError(err).Error("cannot restore the balloon target on exit")
		} else {
			a.report(KeyTarget, strconv.FormatUint(a.ceiling, 10))
		}
	}
	a.report(KeyState, StateStopped)
	a.log.WithField("target_kb", a.ceiling).Info("self-ballooning agent stopped")
}

// fail logs err and reports it in KeyError.
func (a *Agent) fail(op string, err error) {
	a.log.WithError(err).WithField("op", op).Error("self-ballooning step failed")
	a.report(KeyError, op+": "+err.Error())
}

// report writes key=value in xenstore unless it was written already.
func (a *Agent) report(key, value string) {
	if a.store == nil {
		return
	}
	if old, ok := a.written[key]; ok && old == value {
		return
	}
	if err := a.store.Write(key, value); err != nil {
		a.log.WithError(err).WithField("key", key).Warn("xenstore report failed")
		delete(a.written, key)
		return
	}
	a.written[key] = value
}
