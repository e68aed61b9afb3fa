package plugin

import (
	"sync"

	"github.com/xenmig/xenmig/plugin/pluginpb"
	"github.com/xenmig/xenmig/xenmig"
)

// progressBacklog is how many snapshots may wait for a slow client before
// the plugin drops new ones.
const progressBacklog = 16

// progressStream forwards a migration's progress snapshots to the client
// from a goroutine of its own, so a slow client costs snapshots, never
// migration time.
type progressStream struct {
	mu     sync.Mutex
	closed bool
	queue  chan *pluginpb.Progress
	done   chan error
}

func newProgressStream(stream pluginpb.Migrator_MigrateServer) *progressStream {
	p := &progressStream{queue: make(chan *pluginpb.Progress, progressBacklog), done: make(chan error, 1)}
	go p.forward(stream)
	return p
}

// offer queues a snapshot, or drops it if the backlog is full or the
// migration has returned.
func (p *progressStream) offer(snap xenmig.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	select {
	case p.queue <- progressToPB(snap):
	default:
	}
}

// close sends what is queued and returns the first send error.
func (p *progressStream) close() error {
	p.mu.Lock()
	p.closed = true
	close(p.queue)
	p.mu.Unlock()
	return <-p.done
}

func (p *progressStream) forward(stream pluginpb.Migrator_MigrateServer) {
	var err error
	for snap := range p.queue {
		if err == nil {
			err = stream.Send(&pluginpb.MigrateEvent{Event: &pluginpb.MigrateEvent_Progress{Progress: snap}})
		}
	}
	p.done <- err
}
