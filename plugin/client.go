package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/xenmig/xenmig/plugin/pluginpb"
	"github.com/xenmig/xenmig/xenmig"
)

// errNoOutcome is returned when the plugin ends a stream without the
// message that should end it.
var errNoOutcome = errors.New("the plugin ended the call without its outcome")

// grpcClient is the Migrator a toolstack gets: every call runs in the plugin
// process.
type grpcClient struct {
	rpc pluginpb.MigratorClient
}

// Migrate runs the migration in the plugin, reporting its progress.
func (c *grpcClient) Migrate(ctx context.Context, req MigrateRequest) (*xenmig.Result, error) {
	fail := func(err error) error {
		return fmt.Errorf("xenmig plugin: migrate %s to %s: %w", req.Domain, req.Destination, callError(ctx, err))
	}
	call, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Migrate(call, migrateRequestToPB(req))
	if err != nil {
		return nil, fail(err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			return nil, fail(err)
		}
		switch e := ev.GetEvent().(type) {
		case *pluginpb.MigrateEvent_Progress:
			if req.OnProgress != nil {
				req.OnProgress(progressFromPB(e.Progress))
			}
		case *pluginpb.MigrateEvent_ResultJson:
			var res xenmig.Result
			if err := json.Unmarshal(e.ResultJson, &res); err != nil {
				return nil, fail(fmt.Errorf("decode the result: %w", err))
			}
			return &res, nil
		}
	}
}

// Receive accepts one migration in the plugin.
func (c *grpcClient) Receive(ctx context.Context, req ReceiveRequest) (*xenmig.Incoming, error) {
	var inc *xenmig.Incoming
	open := func(ctx context.Context, in *pluginpb.ReceiveRequest) (receiveStream, error) {
		return c.rpc.Receive(ctx, in)
	}
	err := c.receive(ctx, req, open, func(e ReceiveEvent) bool {
		if e.Kind == Received {
			inc = e.Incoming
			return false
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("xenmig plugin: receive on %q: %w", req.Listen, err)
	}
	return inc, nil
}

// Serve accepts migrations in the plugin until ctx is done.
func (c *grpcClient) Serve(ctx context.Context, req ReceiveRequest) error {
	open := func(ctx context.Context, in *pluginpb.ReceiveRequest) (receiveStream, error) {
		return c.rpc.Serve(ctx, in)
	}
	err := c.receive(ctx, req, open, func(ReceiveEvent) bool { return true })
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("xenmig plugin: serve on %q: %w", req.Listen, err)
}

// receiveStream is the client end of a Receive or Serve call.
type receiveStream interface {
	Recv() (*pluginpb.ReceiveEvent, error)
}

// receive runs a Receive or Serve call that open starts: it reports every
// event to req.OnEvent and asks more whether to read on. It returns nil once
// more says stop.
func (c *grpcClient) receive(ctx context.Context, req ReceiveRequest,
	open func(context.Context, *pluginpb.ReceiveRequest) (receiveStream, error), more func(ReceiveEvent) bool) error {
	call, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := open(call, &pluginpb.ReceiveRequest{Listen: req.Listen})
	if err != nil {
		return callError(ctx, err)
	}
	for {
		pe, err := stream.Recv()
		if err != nil {
			return callError(ctx, err)
		}
		e, ok := receiveEventFromPB(pe)
		if !ok {
			continue
		}
		if req.OnEvent != nil {
			req.OnEvent(e)
		}
		if !more(e) {
			return nil
		}
	}
}

// Doctor checks the plugin's host.
func (c *grpcClient) Doctor(ctx context.Context, domain string) (*DoctorReport, error) {
	r, err := c.rpc.Doctor(ctx, &pluginpb.DoctorRequest{Domain: domain})
	if err != nil {
		return nil, fmt.Errorf("xenmig plugin: doctor %s: %w", domain, callError(ctx, err))
	}
	return &DoctorReport{PostCopy: r.GetPostCopy(), Text: r.GetText(), JSON: r.GetJson()}, nil
}

// callError is the error a call ended with: the caller's own cancellation
// as such, a stream that ended early as errNoOutcome, and otherwise the
// plugin's error with its sentinels.
func callError(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, io.EOF):
		return errNoOutcome
	}
	return fromStatus(err)
}
