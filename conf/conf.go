// Package conf is xenmig's configuration: a TOML file whose settings overlay
// built-in defaults, with types for durations, sizes and rates, and
// validation whose every error names the file and the key.
//
// A file needs only the keys it changes:
//
//	[migration]
//	mode = "hybrid"
//	bandwidth = "1gbit"
//
// Unknown keys are rejected, so a misspelt key is an error rather than a
// setting silently ignored. conf/xenmig.example.toml lists every key with its
// default.
package conf

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Backend names the hypervisor backend the engine drives.
type Backend string

// Backends.
const (
	BackendXen Backend = "xen" // real Xen through libxenctrl (binary built with -tags xen)
	BackendSim Backend = "sim" // the simulated Xen host of xenctrl/sim
)

// Mode is a migration method.
type Mode string

// Migration modes.
const (
	ModePrecopy  Mode = "precopy"  // iterative pre-copy, as xl migrate does
	ModePostcopy Mode = "postcopy" // send vCPU state first, memory afterwards
	ModeHybrid   Mode = "hybrid"   // a few pre-copy rounds, then post-copy
)

// Push is the order in which the source pushes the pages the destination
// has not received yet during post-copy.
type Push string

// Push orders.
const (
	PushDemand     Push = "demand"     // no background push: pages move only on faults
	PushSequential Push = "sequential" // push in gfn order
	PushPrepaging  Push = "prepaging"  // bubble outward from recent faults (the paper's pre-paging)
	PushWorkingSet Push = "workingset" // pages dirtied in the pre-copy rounds first (hybrid only)
)

// PrivcmdPath is the device whose existence means this host runs on Xen.
const PrivcmdPath = "/dev/xen/privcmd"

// Accepted values of the enumerated settings, in the order error messages
// list them.
var (
	Backends   = []Backend{BackendXen, BackendSim}
	LogLevels  = []string{"debug", "info", "warn", "error"}
	LogFormats = []string{"text", "json"}
	Modes      = []Mode{ModePrecopy, ModePostcopy, ModeHybrid}
	Pushes     = []Push{PushDemand, PushSequential, PushPrepaging, PushWorkingSet}
	// Workloads are the guest workload models of xenctrl/sim (its Kind
	// constants, less the test-only "probe").
	Workloads = []string{"idle", "stress", "kcompile", "web", "qsort"}
	// SimCosts are the simulator's cost models (sim.costs).
	SimCosts = []string{"none", "xen", "lab"}
)

// Config is the whole configuration. The zero value is not useful: start
// from Default, Load or Parse.
type Config struct {
	// Source is the file the configuration was read from; empty for
	// Default. It prefixes every validation error. Not a TOML key.
	Source string `toml:"-"`
	// Backend is the hypervisor backend: "xen" or "sim" (default: "xen"
	// when /dev/xen/privcmd exists, else "sim"; see DefaultBackend).
	Backend Backend `toml:"backend"`
	// Log configures logging.
	Log LogConfig `toml:"log"`
	// Migration configures the migration engine (both ends).
	Migration MigrationConfig `toml:"migration"`
	// TLS configures the mutual TLS of the migration connections.
	TLS TLSConfig `toml:"tls"`
	// Receiver configures `xenmig receive`.
	Receiver ReceiverConfig `toml:"receiver"`
	// Sim configures the simulated Xen hosts (backend "sim", demo, tests).
	Sim SimConfig `toml:"sim"`
	// Bench configures `xenmig bench`.
	Bench BenchConfig `toml:"bench"`
}

// LogConfig is the [log] table.
type LogConfig struct {
	// Level is the least severe level logged: debug, info, warn or error
	// (info).
	Level string `toml:"level"`
	// Format is "text" (human, logfmt-like) or "json" (one object a line)
	// (text).
	Format string `toml:"format"`
}

// MigrationConfig is the [migration] table.
type MigrationConfig struct {
	// Mode is the migration method: precopy, postcopy or hybrid (postcopy).
	Mode Mode `toml:"mode"`
	// Push is the background push order in post-copy: demand, sequential,
	// prepaging or workingset (prepaging). workingset needs mode hybrid.
	Push Push `toml:"push"`
	// Pivots is how many recent fault addresses pre-paging bubbles outward
	// from, in both directions (7; 1 to 64).
	Pivots int `toml:"pivots"`
	// BatchPages is the number of pages in one batch record of the bulk
	// stream (256; 1 to 4096).
	BatchPages int `toml:"batch_pages"`
	// Streams is how many TCP connections carry pages in parallel (main
	// and bulk ones, as QEMU's multifd; 1 to 16). 0 chooses: one per CPU
	// up to four, one when bandwidth caps the rate below 2.4 Gbit/s.
	Streams int `toml:"streams"`
	// Bandwidth caps the sending rate of the migration (0 = unlimited).
	Bandwidth Rate `toml:"bandwidth"`
	// PrecopyMaxRounds is the most pre-copy rounds before the source is
	// paused in mode precopy (5; 1 to 1000).
	PrecopyMaxRounds int `toml:"precopy_max_rounds"`
	// PrecopyDirtyThreshold ends pre-copy when a round leaves fewer dirty
	// pages than this (50 pages).
	PrecopyDirtyThreshold int `toml:"precopy_dirty_threshold"`
	// PrecopyMaxFactor stops pre-copy once the data sent exceeds this many
	// times the guest's memory (3.0; at least 1).
	PrecopyMaxFactor float64 `toml:"precopy_max_factor"`
	// HybridRounds is the number of pre-copy rounds in mode hybrid before
	// switching to post-copy (2; 1 to 1000).
	HybridRounds int `toml:"hybrid_rounds"`
	// Balloon asks the guest's self-ballooning agent to release its free
	// memory before migrating, so free pages are never sent (false).
	Balloon bool `toml:"balloon"`
	// BalloonWait is how long to wait for the guest to reach its balloon
	// target before migrating anyway ("10s").
	BalloonWait Duration `toml:"balloon_wait"`
	// ConnectTimeout bounds connecting to the receiver and the handshake
	// ("10s").
	ConnectTimeout Duration `toml:"connect_timeout"`
	// ReconnectTimeout is how long both ends of a post-copy migration wait
	// for a broken connection to come back, paused, before giving up and
	// reporting it ("60s").
	ReconnectTimeout Duration `toml:"reconnect_timeout"`
	// Port is the receiver's TCP port used when the destination is given
	// without one (8002).
	Port int `toml:"port"`
}

// TLSConfig is the [tls] table: mutual TLS between sender and receiver.
type TLSConfig struct {
	// Cert is the PEM certificate this end presents ("").
	Cert string `toml:"cert"`
	// Key is the PEM private key of Cert ("").
	Key string `toml:"key"`
	// CA is the PEM bundle the peer's certificate must chain to ("").
	CA string `toml:"ca"`
	// InsecurePlaintext uses plain TCP without authentication or
	// encryption; for loopback tests only (false).
	InsecurePlaintext bool `toml:"insecure_plaintext"`
}

// ReceiverConfig is the [receiver] table.
type ReceiverConfig struct {
	// Listen is the address `xenmig receive` listens on (":8002").
	Listen string `toml:"listen"`
	// Serve keeps the receiver running to accept migrations one after
	// another instead of exiting after the first (false).
	Serve bool `toml:"serve"`
	// MetricsListen is the address on which `xenmig receive` and `xenmig
	// plugin` serve Prometheus metrics at /metrics ("": none, the
	// default).
	MetricsListen string `toml:"metrics_listen"`
}

// SimConfig is the [sim] table: the simulated Xen hosts.
type SimConfig struct {
	// NotifyLatency is the delay of a simulated event-channel notification
	// of the paging ring with Costs "none"; the cost models have their own
	// ("5us").
	NotifyLatency Duration `toml:"notify_latency"`
	// Costs is the simulated hosts' cost model, what each call into the
	// hypervisor takes: "xen" (an estimate of a real Xen host, measured in
	// the lab and scaled; docs/XEN.md), "lab" (the lab's own figures,
	// under QEMU TCG) or "none" (the machine's speed, with notify_latency)
	// ("xen").
	Costs string `toml:"costs"`
	// ResidentMemory is memory a simulated host faults in when it starts
	// and gives its domains, as a Xen host's RAM is resident before any
	// page arrives; without it every page a destination installs is first
	// faulted in by the kernel, a cost of this machine, not of Xen (0,
	// none: for a receiver that benchmarks, the largest guest's size).
	ResidentMemory Size `toml:"resident_memory"`
	// Guest is the domain a simulated host starts with ([sim.guest]).
	Guest GuestConfig `toml:"guest"`
}

// GuestConfig is the [sim.guest] table: the default simulated guest.
type GuestConfig struct {
	// Memory is the guest's memory size, a multiple of 4KiB ("1GiB").
	Memory Size `toml:"memory"`
	// VCPUs is the number of virtual CPUs (2; 1 to 128).
	VCPUs int `toml:"vcpus"`
	// Used is how much of Memory the guest has in use; the rest is free
	// memory a balloon can release ("256MiB"; at most Memory).
	Used Size `toml:"used"`
	// Workload is the workload model the vCPUs run: idle, stress, kcompile
	// (kernel-compile-like), web (web-server-like) or qsort (quicksort-like)
	// ("stress").
	Workload string `toml:"workload"`
	// Seed makes the workload deterministic (1).
	Seed uint64 `toml:"seed"`
}

// BenchConfig is the [bench] table: `xenmig bench`.
type BenchConfig struct {
	// Rate is the link rate between the two network namespaces, shaped with
	// tc tbf ("1gbit"; 0 = not shaped).
	Rate Rate `toml:"rate"`
	// Delay is the one-way delay added to the link with netem ("0ms").
	Delay Duration `toml:"delay"`
	// MTU is the link's MTU in bytes (0: the kernel's, 1500). A migration
	// network often runs jumbo frames (9000): TCP's headers then cost 0.7%
	// of the link where they cost 4.6% at 1500.
	MTU int `toml:"mtu"`
	// Repetitions is how many times each case runs (3; 1 to 1000).
	Repetitions int `toml:"repetitions"`
	// Out is the directory for the CSV files and plots ("out/bench").
	Out string `toml:"out"`
}

// DefaultBackend returns the backend used when the configuration names
// none: "xen" when the Xen privcmd device (PrivcmdPath) exists, "sim"
// otherwise.
func DefaultBackend(privcmdExists bool) Backend {
	if privcmdExists {
		return BackendXen
	}
	return BackendSim
}

// Default returns the built-in configuration. Its backend depends on
// whether PrivcmdPath exists on this machine.
func Default() Config {
	_, err := os.Stat(PrivcmdPath)
	return Config{
		Backend: DefaultBackend(err == nil),
		Log:     LogConfig{Level: "info", Format: "text"},
		Migration: MigrationConfig{
			Mode:                  ModePostcopy,
			Push:                  PushPrepaging,
			Pivots:                7,
			BatchPages:            64,
			Bandwidth:             0,
			PrecopyMaxRounds:      5,
			PrecopyDirtyThreshold: 50,
			PrecopyMaxFactor:      3.0,
			HybridRounds:          2,
			Balloon:               false,
			BalloonWait:           Duration(10 * time.Second),
			ConnectTimeout:        Duration(10 * time.Second),
			ReconnectTimeout:      Duration(60 * time.Second),
			Port:                  8002,
		},
		Receiver: ReceiverConfig{Listen: ":8002"},
		Sim: SimConfig{
			NotifyLatency: Duration(5 * time.Microsecond),
			Costs:         "xen",
			Guest: GuestConfig{
				Memory:   1 * GiB,
				VCPUs:    2,
				Used:     256 * MiB,
				Workload: "stress",
				Seed:     1,
			},
		},
		Bench: BenchConfig{
			Rate:        1 * Gbit,
			Delay:       0,
			Repetitions: 3,
			Out:         "out/bench",
		},
	}
}

// Load reads the TOML file at path, overlays it on Default and validates
// the result. Errors name path, the key and, for syntax and type errors,
// the line.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("load config: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load for data already in memory; name is used in errors (and
// kept as Config.Source).
func Parse(name string, data []byte) (Config, error) {
	c := Default()
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		return Config{}, decodeError(name, err)
	}
	if err := unknownKeys(name, md.Undecoded()); err != nil {
		return Config{}, err
	}
	if err := negativeUnsigned(name, data); err != nil {
		return Config{}, err
	}
	c.Source = name
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// WriteTOML writes c as a complete TOML document that Parse reads back to
// the same configuration.
func (c Config) WriteTOML(w io.Writer) error {
	if err := toml.NewEncoder(w).Encode(c); err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	return nil
}

// unknownKeys reports the keys toml did not decode into Config. A key
// under an unknown table is not reported again.
func unknownKeys(file string, keys []toml.Key) error {
	var errs []error
	var reported []string
	known := knownKeys()
	for _, k := range keys {
		s := k.String()
		if slices.ContainsFunc(reported, func(p string) bool { return strings.HasPrefix(s, p+".") }) {
			continue
		}
		reported = append(reported, s)
		msg := fmt.Errorf("%w %q", ErrUnknownKey, s)
		if best := closest(s, known); best != "" {
			msg = fmt.Errorf("%w %q (did you mean %q?)", ErrUnknownKey, s, best)
		}
		errs = append(errs, &Error{File: file, Err: msg})
	}
	return errors.Join(errs...)
}

// negativeUnsigned reports the keys whose value is a negative integer but
// whose setting is unsigned: toml wraps those (seed = -1 would become
// 2^64-1) instead of refusing them.
func negativeUnsigned(file string, data []byte) error {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		return decodeError(file, err)
	}
	var errs []error
	var walk func(t reflect.Type, raw map[string]any, prefix string)
	walk = func(t reflect.Type, raw map[string]any, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			v, ok := raw[name]
			if name == "" || name == "-" || !ok {
				continue
			}
			switch f.Type.Kind() {
			case reflect.Struct:
				if sub, ok := v.(map[string]any); ok {
					walk(f.Type, sub, prefix+name+".")
				}
			case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
				if n, ok := v.(int64); ok && n < 0 {
					errs = append(errs, &Error{File: file, Key: prefix + name, Err: fmt.Errorf("must not be negative, got %d", n)})
				}
			}
		}
	}
	walk(reflect.TypeFor[Config](), raw, "")
	return errors.Join(errs...)
}

// knownKeys lists every dotted key of the schema, tables included.
func knownKeys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			keys = append(keys, prefix+name)
			ft := f.Type
			if ft.Kind() == reflect.Struct {
				walk(ft, prefix+name+".")
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	sort.Strings(keys)
	return keys
}

// closest returns the known key nearest to key by edit distance, or "" if
// none is near enough to be a likely typo.
func closest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein (optimal string alignment)
// distance between a and b.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// validator collects the errors of Validate.
type validator struct {
	file string
	errs []error
}

func (v *validator) errorf(key, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.file, Key: key, Err: fmt.Errorf(format, args...)})
}

func (v *validator) between(key string, got, lo, hi int) {
	if got < lo || got > hi {
		v.errorf(key, "must be between %d and %d, got %d", lo, hi, got)
	}
}

func (v *validator) atLeast(key string, got, lo int) {
	if got < lo {
		v.errorf(key, "must be at least %d, got %d", lo, got)
	}
}

func (v *validator) nonNegative(key string, d Duration) {
	if d < 0 {
		v.errorf(key, "must not be negative, got %s", d)
	}
}

func (v *validator) positive(key string, d Duration) {
	if d <= 0 {
		v.errorf(key, "must be positive, got %s", d)
	}
}

func oneOf[T ~string](v *validator, key string, got T, allowed []T) {
	if slices.Contains(allowed, got) {
		return
	}
	q := make([]string, len(allowed))
	for i, a := range allowed {
		q[i] = strconv.Quote(string(a))
	}
	v.errorf(key, "must be one of %s, got %q", strings.Join(q, ", "), string(got))
}

// Validate checks every setting and returns all problems found, each an
// *Error naming c.Source and the key, joined with errors.Join; nil if c is
// valid. TLS paths that are set must exist unless tls.insecure_plaintext is
// true; that they are set at all is checked by RequireTLS, since only the
// commands that open a migration connection need them.
func (c Config) Validate() error {
	v := &validator{file: c.Source}

	oneOf(v, "backend", c.Backend, Backends)
	oneOf(v, "log.level", c.Log.Level, LogLevels)
	oneOf(v, "log.format", c.Log.Format, LogFormats)

	m := c.Migration
	oneOf(v, "migration.mode", m.Mode, Modes)
	oneOf(v, "migration.push", m.Push, Pushes)
	if m.Push == PushWorkingSet && m.Mode != ModeHybrid {
		v.errorf("migration.push", `"workingset" needs migration.mode = "hybrid" (the working set is learnt in its pre-copy rounds), got mode %q`, m.Mode)
	}
	v.between("migration.pivots", m.Pivots, 1, 64)
	v.between("migration.batch_pages", m.BatchPages, 1, 4096)
	v.between("migration.streams", m.Streams, 0, 16)
	v.between("migration.precopy_max_rounds", m.PrecopyMaxRounds, 1, 1000)
	v.atLeast("migration.precopy_dirty_threshold", m.PrecopyDirtyThreshold, 0)
	if !(m.PrecopyMaxFactor >= 1) || math.IsInf(m.PrecopyMaxFactor, 0) {
		v.errorf("migration.precopy_max_factor", "must be a finite number of at least 1, got %g", m.PrecopyMaxFactor)
	}
	v.between("migration.hybrid_rounds", m.HybridRounds, 1, 1000)
	v.nonNegative("migration.balloon_wait", m.BalloonWait)
	v.positive("migration.connect_timeout", m.ConnectTimeout)
	v.positive("migration.reconnect_timeout", m.ReconnectTimeout)
	v.between("migration.port", m.Port, 1, 65535)

	if !c.TLS.InsecurePlaintext {
		for _, f := range []struct{ key, path string }{
			{"tls.cert", c.TLS.Cert}, {"tls.key", c.TLS.Key}, {"tls.ca", c.TLS.CA},
		} {
			if f.path == "" {
				continue
			}
			if _, err := os.Stat(f.path); err != nil {
				v.errorf(f.key, "%v", err)
			}
		}
		if c.TLS.Cert != "" && c.TLS.Key == "" {
			v.errorf("tls.key", "must be set when tls.cert is")
		}
		if c.TLS.Key != "" && c.TLS.Cert == "" {
			v.errorf("tls.cert", "must be set when tls.key is")
		}
	}

	if err := checkListen(c.Receiver.Listen); err != nil {
		v.errorf("receiver.listen", "%v", err)
	}
	if c.Receiver.MetricsListen != "" {
		if err := checkListen(c.Receiver.MetricsListen); err != nil {
			v.errorf("receiver.metrics_listen", "%v (e.g. \"127.0.0.1:9102\", or \"\" for no metrics)", err)
		}
	}

	v.nonNegative("sim.notify_latency", c.Sim.NotifyLatency)
	oneOf(v, "sim.costs", c.Sim.Costs, SimCosts)
	g := c.Sim.Guest
	switch {
	case g.Memory == 0:
		v.errorf("sim.guest.memory", "must be positive")
	case g.Memory%(4*KiB) != 0:
		v.errorf("sim.guest.memory", "must be a multiple of 4KiB (the page size), got %s", g.Memory)
	}
	v.between("sim.guest.vcpus", g.VCPUs, 1, 128)
	if g.Used > g.Memory {
		v.errorf("sim.guest.used", "must not exceed sim.guest.memory (%s), got %s", g.Memory, g.Used)
	}
	oneOf(v, "sim.guest.workload", g.Workload, Workloads)

	v.nonNegative("bench.delay", c.Bench.Delay)
	if c.Bench.MTU != 0 {
		v.between("bench.mtu", c.Bench.MTU, 68, 65535) // IPv4's minimum, a veth's maximum
	}
	v.between("bench.repetitions", c.Bench.Repetitions, 1, 1000)
	if c.Bench.Out == "" {
		v.errorf("bench.out", "must not be empty")
	}
	return errors.Join(v.errs...)
}

// checkListen checks a listen address: HOST:PORT or :PORT, with a numeric
// port (0 picks a free one).
func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("must be HOST:PORT or :PORT, got %q", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port must be a number from 0 to 65535, got %q", port)
	}
	return nil
}

// RequireTLS checks that c can authenticate a migration connection: unless
// tls.insecure_plaintext is true, tls.cert, tls.key and tls.ca must all be
// set (Validate has checked that set paths exist). Commands that open a
// migration connection (migrate, receive) call it; the others do not need
// certificates.
func (c Config) RequireTLS() error {
	if c.TLS.InsecurePlaintext {
		return nil
	}
	var errs []error
	for _, f := range []struct{ key, path string }{
		{"tls.cert", c.TLS.Cert}, {"tls.key", c.TLS.Key}, {"tls.ca", c.TLS.CA},
	} {
		if f.path == "" {
			errs = append(errs, &Error{File: c.Source, Key: f.key,
				Err: errors.New("must be set for mutual TLS (or set tls.insecure_plaintext = true, for loopback tests only)")})
		}
	}
	return errors.Join(errs...)
}
