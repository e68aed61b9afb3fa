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

// use makes main and urgent the session's connections, counting what they
// send.
func (s *sender) use(main, urgent *conn) {
	s.main, s.urgent = main, urgent
	s.main.countWrites(&s.counter.bytes)
	s.urgent.countWrites(&s.counter.bytes)
}

// redial reopens the session, with backoff, until the destination answers
// with the gfns it lacks, says how the session ended (errNotSwitched,
// errDestinationComplete), or Plan.ReconnectTimeout passes.
func (s *sender) redial(ctx context.Context) (*hypervisor.Bitmap, error) {
	ctx, cancel := context.WithTimeout(ctx, s.plan.ReconnectTimeout)
	defer cancel()
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		main, urgent, err := s.transport.dial(ctx, s.addr, s.session, true)
		if errors.Is(err, errNotSwitched) || errors.Is(err, errDestinationComplete) {
			return nil, err
		}
		if err == nil {
			body, err := main.expect(wire.TypeResume)
			var missing *hypervisor.Bitmap
			if err == nil {
				missing, err = wire.UnmarshalBitmap(body, s.populated.Len())
			}
			if err == nil {
				s.main.Close()
				s.urgent.Close()
				s.use(main, urgent)
				s.reconnects.Add(1)
				return missing, nil
			}
			main.Close()
			urgent.Close()
		}
		s.log.WithError(err).Debug("reconnect attempt failed")
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no reconnection within %v: %w", s.plan.ReconnectTimeout, err)
		case <-time.After(wait):
		}
	}
}
