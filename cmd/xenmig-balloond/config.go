package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/sirupsen/logrus"

	"github.com/xenmig/xenmig/pvdriver"
)

// DefaultConfigPath is read when -config is not given; it may be absent.
const DefaultConfigPath = "/etc/xenmig/balloond.toml"

// Config is the TOML configuration of xenmig-balloond. Durations are
// strings such as "5s"; sizes are KiB.
type Config struct {
	// Interval between two policy ticks.
	Interval time.Duration `toml:"interval"`
	// Root prefixes /sys and /proc (for tests and chroots).
	Root string `toml:"root"`
	// Xenstore is the xenstore device or socket; "" finds /dev/xen/xenbus
	// or /proc/xen/xenbus, "none" runs without xenstore (no reporting, no
	// squeeze protocol).
	Xenstore string `toml:"xenstore"`
	// MaxKiB is a fixed ceiling; 0 follows memory/target.
	MaxKiB uint64 `toml:"max_kb"`
	// SqueezeTimeout bounds the wait for the balloon to reach a squeeze.
	SqueezeTimeout time.Duration `toml:"squeeze_timeout"`
	// SqueezeHoldMax returns to normal if dom0 never ends a squeeze.
	SqueezeHoldMax time.Duration `toml:"squeeze_hold_max"`
	// RestoreOnExit gives the guest its ceiling back when the agent stops.
	RestoreOnExit bool `toml:"restore_on_exit"`
	// DryRun computes and reports but never writes the balloon target.
	DryRun bool `toml:"dry_run"`
	// LogLevel is a logrus level: debug, info, warn, error.
	LogLevel string `toml:"log_level"`
	// LogFormat is "text" or "json".
	LogFormat string `toml:"log_format"`
	// Policy are the ballooning policy's parameters.
	Policy pvdriver.Params `toml:"policy"`
}

// DefaultConfig returns the built-in defaults.
func DefaultConfig() Config {
	a := pvdriver.DefaultConfig()
	return Config{
		Interval:       a.Interval,
		Root:           "/",
		SqueezeTimeout: a.SqueezeTimeout,
		SqueezeHoldMax: a.SqueezeHoldMax,
		RestoreOnExit:  a.RestoreOnExit,
		LogLevel:       "info",
		LogFormat:      "text",
		Policy:         a.Params,
	}
}

// LoadConfig reads path over the defaults. A missing file is an error only
// if must is set (the path was given explicitly). Unknown keys are errors,
// so a typo does not silently keep a default.
func LoadConfig(path string, must bool) (Config, error) {
	c := DefaultConfig()
	md, err := toml.DecodeFile(path, &c)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !must {
			return DefaultConfig(), nil
		}
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		keys := make([]string, len(u))
		for i, k := range u {
			keys[i] = k.String()
		}
		return Config{}, fmt.Errorf("config %s: unknown keys %s", path, strings.Join(keys, ", "))
	}
	return c, c.Validate()
}

// Validate checks values the agent cannot work with.
func (c Config) Validate() error {
	var errs []error
	if c.Interval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("interval %v: want at least 100ms", c.Interval))
	}
	if c.SqueezeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("squeeze_timeout %v: want > 0", c.SqueezeTimeout))
	}
	if _, err := logrus.ParseLevel(c.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("log_level: %w", err))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log_format %q: want text or json", c.LogFormat))
	}
	if err := c.Policy.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("policy: %w", err))
	}
	return errors.Join(errs...)
}

// AgentConfig converts to the library's configuration.
func (c Config) AgentConfig() pvdriver.Config {
	return pvdriver.Config{
		Interval:       c.Interval,
		Params:         c.Policy,
		MaxKiB:         c.MaxKiB,
		SqueezeTimeout: c.SqueezeTimeout,
		SqueezeHoldMax: c.SqueezeHoldMax,
		PollInterval:   pvdriver.DefaultPollInterval,
		RestoreOnExit:  c.RestoreOnExit,
		DryRun:         c.DryRun,
	}
}
