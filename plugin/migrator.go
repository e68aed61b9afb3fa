package plugin

import (
	"context"
	"encoding/json"
	"time"

	"github.com/xenmig/xenmig/xenmig"
)

// Migrator is what the plugin offers a toolstack. The client returned by Open
// implements it over gRPC; `xenmig plugin` implements it with the engine.
type Migrator interface {
	// Migrate moves a domain of the plugin's host to the xenmig receiver at
	// req.Destination and returns the migration's measures. Until the
	// switchover a failure leaves the domain running on the source; after
	// it the error wraps xenmig.ErrCommitted.
	Migrate(ctx context.Context, req MigrateRequest) (*xenmig.Result, error)
	// Receive accepts one incoming migration on req.Listen and carries it
	// out on the plugin's host. It reports Listening through req.OnEvent
	// first, so a caller that listens on port 0 learns the port.
	Receive(ctx context.Context, req ReceiveRequest) (*xenmig.Incoming, error)
	// Serve accepts incoming migrations one after another, reporting each
	// event through req.OnEvent, until ctx is done; then it returns
	// ctx.Err(). It returns earlier only if it cannot listen.
	Serve(ctx context.Context, req ReceiveRequest) error
	// Doctor reports whether the plugin's host, and the domain if one is
	// named, can do post-copy migration.
	Doctor(ctx context.Context, domain string) (*DoctorReport, error)
}

// MigrateRequest is one migration. Zero fields keep what the plugin's
// configuration says ([migration] in xenmig's TOML file).
type MigrateRequest struct {
	// Domain is the name of the domain to move.
	Domain string
	// Destination is the receiver's "HOST[:PORT]" (port migration.port,
	// 8002, by default).
	Destination string
	// Mode and Push override the migration mode and the post-copy push
	// order. Choosing Hybrid without a push order pushes the working set
	// first, as `xenmig migrate --mode hybrid` does.
	Mode xenmig.Mode
	Push xenmig.Push
	// Pivots is the number of pre-paging pivots.
	Pivots int
	// Bandwidth limits the migration's rate, in bytes per second.
	Bandwidth int64
	// Balloon asks the guest's self-ballooning agent to give back free
	// memory before the copy.
	Balloon bool
	// SimGuest, with the simulated backend, boots the domain as a simulated
	// guest before it moves (a simulated host lives inside the plugin's
	// process). Nil migrates a domain the host already has.
	SimGuest *SimGuest
	// OnProgress, if set, is called with progress snapshots, in order and
	// one at a time; the client from Open calls it from the goroutine that
	// called Migrate. The plugin drops snapshots rather than slow the
	// migration down for a slow OnProgress.
	OnProgress func(xenmig.Progress)
	// ProgressInterval is how often a snapshot is taken (0: 100ms).
	ProgressInterval time.Duration
}

// SimGuest describes the simulated guest a migration boots. Zero fields take
// [sim.guest] from the plugin's configuration, or the workload's own
// defaults.
type SimGuest struct {
	Memory     uint64  // bytes of guest memory
	Used       uint64  // bytes in use at boot
	Workload   string  // "idle", "stress", "kcompile", "web" or "qsort"
	VCPUs      int     // virtual CPUs
	Seed       uint64  // makes the workload deterministic
	WorkingSet uint64  // bytes the workload works on
	Rate       float64 // steps per second per vCPU
	// Run is how long the guest runs in all, at its pace. When set, the
	// destination runs it to its end and Result.DigestMatch says whether
	// its memory equals an unmigrated run's (0: it runs forever, no check).
	Run time.Duration
	// Warmup is how long the guest runs before the migration starts.
	Warmup time.Duration
}

// ReceiveRequest says where to listen for incoming migrations.
type ReceiveRequest struct {
	// Listen is the address to listen on ("" : receiver.listen from the
	// configuration). Port 0 picks a free port; the Listening event says
	// which.
	Listen string
	// OnEvent, if set, is called with each event, in order and one at a
	// time; the client from Open calls it from the goroutine that called
	// Receive or Serve.
	OnEvent func(ReceiveEvent)
}

// EventKind tells receive events apart.
type EventKind string

// Receive events.
const (
	// Listening: the receiver listens on Addr.
	Listening EventKind = "listening"
	// Received: a migration was carried out; Incoming describes it.
	Received EventKind = "received"
	// Failed: an incoming migration failed; Err says why (Serve only:
	// Receive returns the error).
	Failed EventKind = "failed"
)

// ReceiveEvent is something that happened while receiving.
type ReceiveEvent struct {
	Kind     EventKind
	Addr     string           // Listening
	Incoming *xenmig.Incoming // Received
	Err      error            // Failed
}

// DoctorReport is what `xenmig doctor` finds out on the plugin's host.
type DoctorReport struct {
	// PostCopy: post-copy and hybrid migration can run there (for the
	// domain, if one was named); pre-copy needs only a reachable Xen.
	PostCopy bool
	// Text is the report for people, as `xenmig doctor` prints it.
	Text string
	// JSON is the full report as `xenmig doctor --json` prints it; it
	// decodes into xenctrl.Report.
	JSON json.RawMessage
}
