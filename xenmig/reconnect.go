package xenmig

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenmig/internal/wire"
)

// reconnect reopens the session after a break, learns from the destination
// which gfns it still lacks, and makes them pushable again: pages that were
// in flight when the connection broke are sent again.
func (s *sender) reconnect(ctx context.Context, claims *claimSet, order *pushOrder) error {
	missing, err := s.redial(ctx)
	if err != nil {
		return err
	}
	claims.release(missing)
	order.restart()
	s.log.WithField("missing", missing.Count()).Info("reconnected; resuming the post-copy")
	return nil
}

// use makes l the session's connections, counting what they send.
func (s *sender) use(l *links) {
	s.links = l
	l.urgent.countWrites(&s.counter.bytes)
	for _, c := range l.streams() {
		c.countWrites(&s.counter.bytes)
	}
}

// redial reopens the session, with backoff, until the destination answers
// with the gfns it lacks, says how the session ended (errNotSwitched,
// errDestinationComplete), or Plan.ReconnectTimeout passes.
func (s *sender) redial(ctx context.Context) (*hypervisor.Bitmap, error) {
	ctx, cancel := context.WithTimeout(ctx, s.plan.ReconnectTimeout)
	defer cancel()
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		l, err := s.transport.dial(ctx, s.addr, s.session, true, s.streams)
		if errors.Is(err, errNotSwitched) || errors.Is(err, errDestinationComplete) {
			return nil, err
		}
		if err == nil {
			// The destination answers at once; one that does not is
			// waited for only as long as the reconnection may take.
			deadline, _ := ctx.Deadline()
			l.main.SetReadDeadline(deadline)
			var body []byte
			body, err = l.main.expect(wire.TypeResume)
			l.main.SetReadDeadline(time.Time{})
			var missing *hypervisor.Bitmap
			if err == nil {
				missing, err = wire.UnmarshalBitmap(body, s.populated.Len())
			}
			if err == nil {
				s.links.close()
				s.use(l)
				s.reconnects.Add(1)
				return missing, nil
			}
			l.close()
		}
		s.log.WithError(err).Debug("reconnect attempt failed")
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no reconnection within %v: %w", s.plan.ReconnectTimeout, err)
		case <-time.After(wait):
		}
	}
}
