package conf

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/xenmig/xenmig/internal/logging"
)

func TestDefaultBackend(t *testing.T) {
	for _, tt := range []struct {
		exists bool
		want   Backend
	}{
		{true, BackendXen},
		{false, BackendSim},
	} {
		if got := DefaultBackend(tt.exists); got != tt.want {
			t.Errorf("DefaultBackend(%v) = %q, want %q", tt.exists, got, tt.want)
		}
	}
	_, err := os.Stat(PrivcmdPath)
	if got, want := Default().Backend, DefaultBackend(err == nil); got != want {
		t.Errorf("Default().Backend = %q, want %q", got, want)
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v, want nil", err)
	}
	for _, tt := range []struct {
		name string
		got  any
		want any
	}{
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
		{"migration.mode", c.Migration.Mode, ModePostcopy},
		{"migration.push", c.Migration.Push, PushPrepaging},
		{"migration.pivots", c.Migration.Pivots, 7},
		{"migration.batch_pages", c.Migration.BatchPages, 64},
		{"migration.bandwidth", c.Migration.Bandwidth, Rate(0)},
		{"migration.precopy_max_rounds", c.Migration.PrecopyMaxRounds, 5},
		{"migration.precopy_dirty_threshold", c.Migration.PrecopyDirtyThreshold, 50},
		{"migration.precopy_max_factor", c.Migration.PrecopyMaxFactor, 3.0},
		{"migration.hybrid_rounds", c.Migration.HybridRounds, 2},
		{"migration.balloon", c.Migration.Balloon, false},
		{"migration.balloon_wait", c.Migration.BalloonWait.Duration(), 10 * time.Second},
		{"migration.connect_timeout", c.Migration.ConnectTimeout.Duration(), 10 * time.Second},
		{"migration.reconnect_timeout", c.Migration.ReconnectTimeout.Duration(), 60 * time.Second},
		{"migration.port", c.Migration.Port, 8002},
		{"tls.cert", c.TLS.Cert, ""},
		{"tls.insecure_plaintext", c.TLS.InsecurePlaintext, false},
		{"receiver.listen", c.Receiver.Listen, ":8002"},
		{"receiver.metrics_listen", c.Receiver.MetricsListen, ""},
		{"receiver.serve", c.Receiver.Serve, false},
		{"sim.notify_latency", c.Sim.NotifyLatency.Duration(), 5 * time.Microsecond},
		{"sim.costs", c.Sim.Costs, "xen"},
		{"sim.guest.memory", c.Sim.Guest.Memory.Bytes(), uint64(1 << 30)},
		{"sim.guest.vcpus", c.Sim.Guest.VCPUs, 2},
		{"sim.guest.used", c.Sim.Guest.Used.Bytes(), uint64(256 << 20)},
		{"sim.guest.workload", c.Sim.Guest.Workload, "stress"},
		{"sim.guest.seed", c.Sim.Guest.Seed, uint64(1)},
		{"bench.rate", c.Bench.Rate.BitsPerSecond(), uint64(1e9)},
		{"bench.delay", c.Bench.Delay.Duration(), time.Duration(0)},
		{"bench.repetitions", c.Bench.Repetitions, 3},
		{"bench.mtu", c.Bench.MTU, 0},
		{"bench.out", c.Bench.Out, "out/bench"},
	} {
		if tt.got != tt.want {
			t.Errorf("Default() %s = %v (%T), want %v (%T)", tt.name, tt.got, tt.got, tt.want, tt.want)
		}
	}
}

func TestParseOverrides(t *testing.T) {
	for _, tt := range []struct {
		toml string
		want func(*Config)
	}{
		{``, func(*Config) {}},
		{`backend = "sim"`, func(c *Config) { c.Backend = BackendSim }},
		{`backend = "xen"`, func(c *Config) { c.Backend = BackendXen }},
		{"[log]\nlevel = \"debug\"\nformat = \"json\"", func(c *Config) { c.Log = LogConfig{"debug", "json"} }},
		{"[migration]\nmode = \"hybrid\"\npush = \"workingset\"", func(c *Config) {
			c.Migration.Mode, c.Migration.Push = ModeHybrid, PushWorkingSet
		}},
		{"[migration]\nmode = \"precopy\"\nprecopy_max_rounds = 30\nprecopy_max_factor = 2", func(c *Config) {
			c.Migration.Mode, c.Migration.PrecopyMaxRounds, c.Migration.PrecopyMaxFactor = ModePrecopy, 30, 2
		}},
		{"[migration]\npivots = 64\nbatch_pages = 4096\nprecopy_dirty_threshold = 0", func(c *Config) {
			c.Migration.Pivots, c.Migration.BatchPages, c.Migration.PrecopyDirtyThreshold = 64, 4096, 0
		}},
		{"[migration]\nbandwidth = \"125MB/s\"", func(c *Config) { c.Migration.Bandwidth = Gbit }},
		{"[migration]\nbandwidth = \"100mbit\"", func(c *Config) { c.Migration.Bandwidth = 100 * Mbit }},
		{"[migration]\nballoon = true\nballoon_wait = \"1m30s\"\nconnect_timeout = \"500ms\"\nreconnect_timeout = \"5m\"\nport = 9000", func(c *Config) {
			c.Migration.Balloon = true
			c.Migration.BalloonWait = Duration(90 * time.Second)
			c.Migration.ConnectTimeout = Duration(500 * time.Millisecond)
			c.Migration.ReconnectTimeout = Duration(5 * time.Minute)
			c.Migration.Port = 9000
		}},
		{"[tls]\ninsecure_plaintext = true\ncert = \"/nonexistent/cert.pem\"", func(c *Config) {
			c.TLS = TLSConfig{Cert: "/nonexistent/cert.pem", InsecurePlaintext: true}
		}},
		{"[receiver]\nlisten = \"127.0.0.1:0\"\nserve = true\nmetrics_listen = \"127.0.0.1:9102\"", func(c *Config) {
			c.Receiver = ReceiverConfig{Listen: "127.0.0.1:0", Serve: true, MetricsListen: "127.0.0.1:9102"}
		}},
		{"[receiver]\nlisten = \"[::1]:8002\"", func(c *Config) { c.Receiver.Listen = "[::1]:8002" }},
		{"[sim.guest]\nmemory = \"256M\"\nused = \"64m\"", func(c *Config) { c.Sim.Guest.Memory, c.Sim.Guest.Used = 256*MiB, 64*MiB }},
		{"[sim.guest]\nmemory = \"2048MB\"\nused = \"4096kB\"", func(c *Config) { c.Sim.Guest.Memory, c.Sim.Guest.Used = 2048e6, 4096e3 }},
		{"[sim]\nnotify_latency = \"0\"\n[sim.guest]\nmemory = \"512MiB\"\nused = 4096\nvcpus = 4\nworkload = \"web\"\nseed = 42", func(c *Config) {
			c.Sim.NotifyLatency = 0
			c.Sim.Guest = GuestConfig{Memory: 512 * MiB, VCPUs: 4, Used: 4 * KiB, Workload: "web", Seed: 42}
		}},
		{"sim.guest.memory = \"2GiB\"", func(c *Config) { c.Sim.Guest.Memory = 2 * GiB }},
		{"[sim]\ncosts = \"none\"", func(c *Config) { c.Sim.Costs = "none" }},
		{"[bench]\nrate = \"10gbit\"\ndelay = \"2ms\"\nrepetitions = 1\nout = \"/tmp/b\"", func(c *Config) {
			c.Bench = BenchConfig{Rate: 10 * Gbit, Delay: Duration(2 * time.Millisecond), Repetitions: 1, Out: "/tmp/b"}
		}},
	} {
		want := Default()
		tt.want(&want)
		want.Source = "xenmig.toml"
		got, err := Parse("xenmig.toml", []byte(tt.toml))
		if err != nil {
			t.Errorf("Parse(%q) = %v, want nil error", tt.toml, err)
			continue
		}
		if got != want {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.toml, got, want)
		}
	}
}

func TestValidateErrors(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(cert, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tt := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.Backend = "kvm" }, `xenmig.toml: backend: must be one of "xen", "sim", got "kvm"`},
		{func(c *Config) { c.Log.Level = "trace" }, `xenmig.toml: log.level: must be one of "debug", "info", "warn", "error", got "trace"`},
		{func(c *Config) { c.Log.Format = "xml" }, `xenmig.toml: log.format: must be one of "text", "json", got "xml"`},
		{func(c *Config) { c.Migration.Mode = "live" }, `xenmig.toml: migration.mode: must be one of "precopy", "postcopy", "hybrid", got "live"`},
		{func(c *Config) { c.Migration.Push = "random" }, `xenmig.toml: migration.push: must be one of "demand", "sequential", "prepaging", "workingset", got "random"`},
		{func(c *Config) { c.Migration.Push = PushWorkingSet }, `xenmig.toml: migration.push: "workingset" needs migration.mode = "hybrid" (the working set is learnt in its pre-copy rounds), got mode "postcopy"`},
		{func(c *Config) { c.Migration.Pivots = 0 }, `xenmig.toml: migration.pivots: must be between 1 and 64, got 0`},
		{func(c *Config) { c.Migration.Pivots = 65 }, `xenmig.toml: migration.pivots: must be between 1 and 64, got 65`},
		{func(c *Config) { c.Migration.BatchPages = 0 }, `xenmig.toml: migration.batch_pages: must be between 1 and 4096, got 0`},
		{func(c *Config) { c.Migration.BatchPages = 4097 }, `xenmig.toml: migration.batch_pages: must be between 1 and 4096, got 4097`},
		{func(c *Config) { c.Migration.PrecopyMaxRounds = 0 }, `xenmig.toml: migration.precopy_max_rounds: must be between 1 and 1000, got 0`},
		{func(c *Config) { c.Migration.PrecopyDirtyThreshold = -1 }, `xenmig.toml: migration.precopy_dirty_threshold: must be at least 0, got -1`},
		{func(c *Config) { c.Migration.PrecopyMaxFactor = 0.5 }, `xenmig.toml: migration.precopy_max_factor: must be a finite number of at least 1, got 0.5`},
		{func(c *Config) { c.Migration.HybridRounds = 0 }, `xenmig.toml: migration.hybrid_rounds: must be between 1 and 1000, got 0`},
		{func(c *Config) { c.Migration.BalloonWait = Duration(-time.Second) }, `xenmig.toml: migration.balloon_wait: must not be negative, got -1s`},
		{func(c *Config) { c.Migration.ConnectTimeout = 0 }, `xenmig.toml: migration.connect_timeout: must be positive, got 0s`},
		{func(c *Config) { c.Migration.ReconnectTimeout = 0 }, `xenmig.toml: migration.reconnect_timeout: must be positive, got 0s`},
		{func(c *Config) { c.Migration.Port = 0 }, `xenmig.toml: migration.port: must be between 1 and 65535, got 0`},
		{func(c *Config) { c.Migration.Port = 70000 }, `xenmig.toml: migration.port: must be between 1 and 65535, got 70000`},
		{func(c *Config) { c.TLS = TLSConfig{Cert: cert, Key: missing} }, `xenmig.toml: tls.key: stat ` + missing + `: no such file or directory`},
		{func(c *Config) { c.TLS = TLSConfig{Cert: cert, Key: cert, CA: missing} }, `xenmig.toml: tls.ca: stat ` + missing + `: no such file or directory`},
		{func(c *Config) { c.TLS = TLSConfig{Cert: cert} }, `xenmig.toml: tls.key: must be set when tls.cert is`},
		{func(c *Config) { c.TLS = TLSConfig{Key: cert} }, `xenmig.toml: tls.cert: must be set when tls.key is`},
		{func(c *Config) { c.Receiver.Listen = "8002" }, `xenmig.toml: receiver.listen: must be HOST:PORT or :PORT, got "8002"`},
		{func(c *Config) { c.Receiver.Listen = ":http" }, `xenmig.toml: receiver.listen: port must be a number from 0 to 65535, got "http"`},
		{func(c *Config) { c.Receiver.MetricsListen = "9102" }, `xenmig.toml: receiver.metrics_listen: must be HOST:PORT or :PORT, got "9102" (e.g. "127.0.0.1:9102", or "" for no metrics)`},
		{func(c *Config) { c.Sim.NotifyLatency = -1 }, `xenmig.toml: sim.notify_latency: must not be negative, got -1ns`},
		{func(c *Config) { c.Sim.Costs = "fast" }, `xenmig.toml: sim.costs: must be one of "none", "xen", "lab", got "fast"`},
		{func(c *Config) { c.Sim.Guest.Memory, c.Sim.Guest.Used = 0, 0 }, `xenmig.toml: sim.guest.memory: must be positive`},
		{func(c *Config) { c.Sim.Guest.Memory = GiB + 1 }, `xenmig.toml: sim.guest.memory: must be a multiple of 4KiB (the page size), got 1073741825B`},
		{func(c *Config) { c.Sim.Guest.VCPUs = 0 }, `xenmig.toml: sim.guest.vcpus: must be between 1 and 128, got 0`},
		{func(c *Config) { c.Sim.Guest.Used = 2 * GiB }, `xenmig.toml: sim.guest.used: must not exceed sim.guest.memory (1GiB), got 2GiB`},
		{func(c *Config) { c.Sim.Guest.Workload = "bittorrent" }, `xenmig.toml: sim.guest.workload: must be one of "idle", "stress", "kcompile", "web", "qsort", got "bittorrent"`},
		{func(c *Config) { c.Bench.Delay = Duration(-time.Millisecond) }, `xenmig.toml: bench.delay: must not be negative, got -1ms`},
		{func(c *Config) { c.Bench.Repetitions = 0 }, `xenmig.toml: bench.repetitions: must be between 1 and 1000, got 0`},
		{func(c *Config) { c.Bench.MTU = 65536 }, `xenmig.toml: bench.mtu: must be between 68 and 65535, got 65536`},
		{func(c *Config) { c.Bench.Out = "" }, `xenmig.toml: bench.out: must not be empty`},
		// Several problems are all reported.
		{func(c *Config) { c.Migration.Pivots, c.Bench.Repetitions = 0, 0 },
			"xenmig.toml: migration.pivots: must be between 1 and 64, got 0\nxenmig.toml: bench.repetitions: must be between 1 and 1000, got 0"},
		// Without a source file the errors still name the key.
		{func(c *Config) { c.Source = ""; c.Migration.Pivots = 0 }, `config: migration.pivots: must be between 1 and 64, got 0`},
	} {
		c := Default()
		c.Source = "xenmig.toml"
		tt.set(&c)
		err := c.Validate()
		if err == nil || err.Error() != tt.want {
			t.Errorf("Validate() = %v, want %q", err, tt.want)
			continue
		}
		var ce *Error
		if !errors.As(err, &ce) || ce.Key == "" {
			t.Errorf("Validate() = %#v, want an *Error with a key", err)
		}
	}
}

func TestValidateTLSInsecureSkipsPaths(t *testing.T) {
	c := Default()
	c.TLS = TLSConfig{Cert: "/nonexistent/c", Key: "/nonexistent/k", CA: "/nonexistent/ca", InsecurePlaintext: true}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() with insecure_plaintext = %v, want nil", err)
	}
}

func TestRequireTLS(t *testing.T) {
	dir := t.TempDir()
	var paths [3]string
	for i, n := range []string{"cert.pem", "key.pem", "ca.pem"} {
		paths[i] = filepath.Join(dir, n)
		if err := os.WriteFile(paths[i], []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const need = "must be set for mutual TLS (or set tls.insecure_plaintext = true, for loopback tests only)"
	for _, tt := range []struct {
		tls  TLSConfig
		want string
	}{
		{TLSConfig{InsecurePlaintext: true}, ""},
		{TLSConfig{Cert: paths[0], Key: paths[1], CA: paths[2]}, ""},
		{TLSConfig{Cert: paths[0], Key: paths[1]}, "x.toml: tls.ca: " + need},
		{TLSConfig{}, "x.toml: tls.cert: " + need + "\nx.toml: tls.key: " + need + "\nx.toml: tls.ca: " + need},
	} {
		c := Default()
		c.Source = "x.toml"
		c.TLS = tt.tls
		err := c.RequireTLS()
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("RequireTLS() with %+v = %q, want %q", tt.tls, got, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct {
		toml string
		want string
	}{
		// Unknown keys, with a suggestion when one is close.
		{"[migration]\npivtos = 3", `xenmig.toml: unknown key "migration.pivtos" (did you mean "migration.pivots"?)`},
		{"bakend = \"sim\"", `xenmig.toml: unknown key "bakend" (did you mean "backend"?)`},
		{"[migration]\nturbo = true", `xenmig.toml: unknown key "migration.turbo"`},
		{"[migraton]\npivots = 3\nmode = \"hybrid\"", `xenmig.toml: unknown key "migraton" (did you mean "migration"?)`},
		{"[log]\nlevel = \"info\"\ncolour = true\n[bench]\nrepetition = 2",
			"xenmig.toml: unknown key \"log.colour\"\nxenmig.toml: unknown key \"bench.repetition\" (did you mean \"bench.repetitions\"?)"},
		{"Source = \"x\"", `xenmig.toml: unknown key "Source"`},
		// Bad types keep the line.
		{"[migration]\n\npivots = \"seven\"", `xenmig.toml:3: migration.pivots: incompatible types: TOML value has type string; destination has type integer`},
		{"[migration]\nballoon = 1", `xenmig.toml:2: migration.balloon: incompatible types: TOML value has type int64; destination has type boolean`},
		{"[log]\nlevel = 3", `xenmig.toml:2: log.level: incompatible types: TOML value has type int64; destination has type string`},
		{"[migration]\nconnect_timeout = 10", `xenmig.toml:2: migration.connect_timeout: duration "10" has no unit (want e.g. "10s" or "10ms")`},
		{"# c\n[migration]\nreconnect_timeout = \"soon\"", `xenmig.toml:3: migration.reconnect_timeout: invalid duration "soon" (want e.g. "10s", "250ms" or "5us")`},
		{"[migration]\nbandwidth = \"fast\"", `xenmig.toml:2: migration.bandwidth: invalid rate "fast" (want e.g. "1gbit", "100mbit", "125MB/s" or 0 for unlimited)`},
		{"[migration]\nbandwidth = \"1gbps\"", `xenmig.toml:2: migration.bandwidth: invalid rate "1gbps": unknown unit "gbps" (want e.g. "1gbit", "100mbit", "125MB/s" or 0 for unlimited)`},
		{"[sim.guest]\nmemory = \"1 GB and a bit\"", `xenmig.toml:2: sim.guest.memory: invalid size "1 GB and a bit": unknown unit "GB and a bit" (want e.g. "256M" or "256MiB" (binary), "1GB" (10^9 bytes) or a number of bytes)`},
		{"[sim.guest]\nmemory = -4096", `xenmig.toml:2: sim.guest.memory: size "-4096" is negative`},
		{"[sim.guest]\nseed = -1", `xenmig.toml: sim.guest.seed: must not be negative, got -1`},
		{"[migration]\nbandwidth = \"1bit\"", `xenmig.toml:2: migration.bandwidth: rate "1bit" is under one byte a second (8bit): give at least 8bit, or 0 for unlimited`},
		{"[sim.guest]\nmemory = true", `xenmig.toml:2: sim.guest.memory: invalid size "true" (want e.g. "256M" or "256MiB" (binary), "1GB" (10^9 bytes) or a number of bytes)`},
		{"[migration]\nprecopy_max_factor = \"x\"", `xenmig.toml:2: migration.precopy_max_factor: incompatible types: TOML value has type string; destination has type float`},
		{"log = 3", `xenmig.toml:1: log: type mismatch for conf.LogConfig: expected table but found int64`},
		// Syntax errors keep the line.
		{"[log]\nlevel = \"info\"\nformat = \"text\" json", `xenmig.toml:3: log: expected a top-level item to end with a newline, comment, or EOF, but got 'j' instead`},
		{"[migration]\npivots = \n", `xenmig.toml:2: migration.pivots: expected value but found '\n' instead`},
		{"[migration]\npivots = ", `xenmig.toml:2: migration.pivots: unexpected EOF; expected value`},
		{"[migration]\npivots = 3\npivots = 4", `xenmig.toml:3: migration.pivots: Key 'migration.pivots' has already been defined.`},
		// Values that decode but do not validate.
		{"[migration]\npivots = 0", `xenmig.toml: migration.pivots: must be between 1 and 64, got 0`},
		{"[migration]\npush = \"workingset\"", `xenmig.toml: migration.push: "workingset" needs migration.mode = "hybrid" (the working set is learnt in its pre-copy rounds), got mode "postcopy"`},
	} {
		_, err := Parse("xenmig.toml", []byte(tt.toml))
		if err == nil || err.Error() != tt.want {
			t.Errorf("Parse(%q) = %v, want %q", tt.toml, err, tt.want)
		}
	}
}

func TestUnknownKeyIs(t *testing.T) {
	_, err := Parse("x.toml", []byte("nope = 1"))
	if !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Parse(nope = 1) = %v, want an error wrapping ErrUnknownKey", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "xenmig.toml")
	if err := os.WriteFile(path, []byte("[migration]\nmode = \"hybrid\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	want := Default()
	want.Source = path
	want.Migration.Mode = ModeHybrid
	if err != nil || got != want {
		t.Errorf("Load(%q) = %+v, %v, want %+v, nil", path, got, err, want)
	}

	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[migration]\npivots = 100\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || err.Error() != bad+": migration.pivots: must be between 1 and 64, got 100" {
		t.Errorf("Load(%q) = %v, want an error naming the file and the key", bad, err)
	}

	missing := filepath.Join(dir, "missing.toml")
	if _, err := Load(missing); err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load(%q) = %v, want a not-exist error naming the file", missing, err)
	}
}

// TestExample keeps conf/xenmig.example.toml in step with the schema: it
// parses, it states the defaults, and it sets every key but backend.
func TestExample(t *testing.T) {
	const path = "xenmig.example.toml"
	got, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%q) = %v", path, err)
	}
	want := Default()
	want.Source = path
	if got != want {
		t.Errorf("Load(%q) = %+v, want the defaults %+v", path, got, want)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c Config
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		t.Fatal(err)
	}
	var set []string
	for _, k := range md.Keys() {
		set = append(set, k.String())
	}
	for _, k := range knownKeys() {
		if k != "backend" && !slices.Contains(set, k) {
			t.Errorf("%s does not set %q", path, k)
		}
	}
	if !strings.Contains(string(data), "#backend = ") {
		t.Errorf("%s does not mention backend", path)
	}
}

func TestWriteTOMLRoundTrip(t *testing.T) {
	c := Default()
	c.Migration.Bandwidth = 125 * Mbit
	c.Migration.Mode, c.Migration.Push = ModeHybrid, PushWorkingSet
	c.Sim.Guest.Memory = 3 * GiB / 2
	c.Bench.Delay = Duration(1500 * time.Microsecond)
	var buf bytes.Buffer
	if err := c.WriteTOML(&buf); err != nil {
		t.Fatalf("WriteTOML() = %v", err)
	}
	got, err := Parse("written.toml", buf.Bytes())
	if err != nil {
		t.Fatalf("Parse(WriteTOML()) = %v\n%s", err, buf.String())
	}
	c.Source = "written.toml"
	if got != c {
		t.Errorf("Parse(WriteTOML(c)) = %+v, want %+v", got, c)
	}
}

// TestLogSettingsAccepted checks that every level and format conf accepts
// is one internal/logging can build.
func TestLogSettingsAccepted(t *testing.T) {
	for _, l := range LogLevels {
		for _, f := range LogFormats {
			if _, err := logging.New(l, f, &bytes.Buffer{}); err != nil {
				t.Errorf("logging.New(%q, %q) = %v, want nil", l, f, err)
			}
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"pivots", "pivots", 0},
		{"pivtos", "pivots", 1},
		{"pivot", "pivots", 1},
		{"kitten", "sitting", 3},
	} {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
