package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/xenmig/xenmig/plugin/pluginpb"
)

// grpcServer serves a Migrator to the toolstack: each call runs the
// Migrator under the call's context and streams back what it reports.
type grpcServer struct {
	pluginpb.UnimplementedMigratorServer
	impl Migrator
}

// Migrate runs a migration, streaming progress and then the result.
func (s *grpcServer) Migrate(in *pluginpb.MigrateRequest, stream pluginpb.Migrator_MigrateServer) error {
	req := migrateRequestFromPB(in)
	var progress *progressStream
	if req.ProgressInterval > 0 {
		progress = newProgressStream(stream)
		req.OnProgress = progress.offer
	}
	res, err := s.impl.Migrate(stream.Context(), req)
	if progress != nil {
		if perr := progress.close(); perr != nil && err == nil {
			return perr
		}
	}
	if err != nil {
		return toStatus(err)
	}
	body, err := json.Marshal(res)
	if err != nil {
		return toStatus(fmt.Errorf("encode the result: %w", err))
	}
	return stream.Send(&pluginpb.MigrateEvent{Event: &pluginpb.MigrateEvent_ResultJson{ResultJson: body}})
}

// Receive accepts one migration: a listening event, then a received event.
func (s *grpcServer) Receive(in *pluginpb.ReceiveRequest, stream pluginpb.Migrator_ReceiveServer) error {
	events := &eventStream{stream: stream}
	inc, err := s.impl.Receive(stream.Context(), ReceiveRequest{Listen: in.GetListen(), OnEvent: events.send})
	if err != nil {
		return toStatus(err)
	}
	events.send(ReceiveEvent{Kind: Received, Incoming: inc})
	return events.err
}

// Serve accepts migrations until the call is cancelled, streaming each
// event.
func (s *grpcServer) Serve(in *pluginpb.ReceiveRequest, stream pluginpb.Migrator_ServeServer) error {
	events := &eventStream{stream: stream}
	err := s.impl.Serve(stream.Context(), ReceiveRequest{Listen: in.GetListen(), OnEvent: events.send})
	if events.err != nil {
		return events.err
	}
	return toStatus(err)
}

// Doctor checks the host.
func (s *grpcServer) Doctor(ctx context.Context, in *pluginpb.DoctorRequest) (*pluginpb.DoctorReport, error) {
	r, err := s.impl.Doctor(ctx, in.GetDomain())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pluginpb.DoctorReport{PostCopy: r.PostCopy, Text: r.Text, Json: r.JSON}, nil
}

// eventStream sends receive events to the client, one at a time, and keeps
// the first send error (the client has gone; the call's context ends too).
type eventStream struct {
	mu     sync.Mutex
	stream interface {
		Send(*pluginpb.ReceiveEvent) error
	}
	err error
}

func (e *eventStream) send(ev ReceiveEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err == nil {
		e.err = e.stream.Send(receiveEventToPB(ev))
	}
}
