package xenmig

import "time"

// EventKind says what a receiver's Event reports.
type EventKind int

// The events of an incoming migration, in the order they happen.
const (
	// EventStarted: a sender connected. Mode is not known yet.
	EventStarted EventKind = iota + 1
	// EventPages: a batch of pages arrived. Phase ("precopy", "stop",
	// "push" or "demand", as in Result.PhasePages), Pages and Bytes (the
	// batch record's size) are set.
	EventPages
	// EventResumed: the domain runs here. Latency is the downtime as the
	// destination sees it: from the layout the source sends once it has
	// paused the domain until the domain was unpaused here. The source's
	// downtime_ms adds the layout's one-way trip.
	EventResumed
	// EventFault: a vCPU waiting on a missing page was resumed. Latency is
	// the time from its request being read off the ring to its resume.
	EventFault
	// EventRing: the paging ring was drained; Pages is how many requests
	// it held (at most hypervisor.RingSlots).
	EventRing
	// EventReconnected: the source reopened the session after the
	// connections broke in post-copy.
	EventReconnected
	// EventEnded: the migration ended; Err is nil on success and wraps
	// ErrCommitted when it failed after the switchover.
	EventEnded
)

// Event is one observation of an incoming migration, for metrics. Mode is
// set from the domain's configuration on, in every later event.
type Event struct {
	Kind    EventKind
	Mode    Mode
	Phase   string
	Pages   uint64
	Bytes   uint64
	Latency time.Duration
	Err     error
}

// WithEvents calls f with each event of an incoming migration. f is called
// from the receiver's goroutines, concurrently: it must be safe for that and
// quick (counting, not I/O).
func WithEvents(f func(Event)) Option { return func(o *options) { o.events = f } }

// emit sends e to the events callback, if any, with the migration's mode.
func (r *receiver) emit(e Event) {
	if r.options.events != nil {
		e.Mode = Mode(r.cfg.Mode)
		r.options.events(e)
	}
}
