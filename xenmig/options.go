package xenmig

import (
	"io"
	"time"

	"github.com/sirupsen/logrus"
)

// Progress is a snapshot of a running migration, for progress bars.
type Progress struct {
	Phase   string        // "connect", "prepare", "precopy", "stop-and-copy", "switchover", "postcopy", "complete"
	Round   int           // pre-copy round, from 1
	Done    uint64        // pages handled in this phase
	Total   uint64        // pages this phase must handle (0: unknown)
	Bytes   uint64        // bytes sent so far, all phases
	Elapsed time.Duration // since the migration started
}

// Option configures a sender or receiver.
type Option func(*options)

type options struct {
	log       *logrus.Entry
	progress  func(Progress)
	transport Transport
	interval  time.Duration
	reconnect time.Duration
	events    func(Event)
}

func buildOptions(opts []Option) options {
	l := logrus.New()
	l.SetOutput(io.Discard)
	o := options{log: logrus.NewEntry(l), interval: 100 * time.Millisecond, reconnect: time.Minute}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// WithLogger sends the engine's structured log to l.
func WithLogger(l *logrus.Entry) Option { return func(o *options) { o.log = l } }

// WithProgress calls f with a snapshot every interval while the migration runs
// (from one goroutine), and once at the end.
func WithProgress(f func(Progress), interval time.Duration) Option {
	return func(o *options) {
		o.progress = f
		if interval > 0 {
			o.interval = interval
		}
	}
}

// WithTransport sets how the two ends connect (TLS, timeouts).
func WithTransport(t Transport) Option { return func(o *options) { o.transport = t } }

// WithReconnectTimeout sets how long a receiver whose connections broke after
// the switchover waits, the domain paused, for the source to reopen the
// session (default one minute; 0: it does not wait). Senders take it from
// Plan.ReconnectTimeout.
func WithReconnectTimeout(d time.Duration) Option { return func(o *options) { o.reconnect = d } }
