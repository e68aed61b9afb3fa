package sim

import (
	"context"
	"runtime"
	"time"
)

// spinBelow is the remaining wait under which waitUntil spins instead of
// sleeping: Go's timers cannot sleep accurately for less.
const spinBelow = 50 * time.Microsecond

// waitUntil returns once t has passed, or with ctx's error when ctx is done.
// Long waits sleep until spinBelow before t, then spin, so short event-channel
// latencies are met accurately.
func waitUntil(ctx context.Context, t time.Time) error {
	for {
		left := time.Until(t)
		if left <= 0 {
			return nil
		}
		if left > spinBelow {
			timer := time.NewTimer(left - spinBelow)
			select {
			case <-ctx.Done():
				timer.Stop()
				return ctx.Err()
			case <-timer.C:
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		runtime.Gosched()
	}
}
