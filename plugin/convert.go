package plugin

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/plugin/pluginpb"
	"github.com/xenmig/xenmig/xenmig"
)

// defaultProgressInterval is how often the client asks for progress when
// the request has an OnProgress but no interval.
const defaultProgressInterval = 100 * time.Millisecond

// migrateRequestToPB is the wire form of req; an interval is sent only when
// the caller wants progress.
func migrateRequestToPB(req MigrateRequest) *pluginpb.MigrateRequest {
	m := &pluginpb.MigrateRequest{
		Domain:      req.Domain,
		Destination: req.Destination,
		Mode:        string(req.Mode),
		Push:        string(req.Push),
		Pivots:      int32(req.Pivots),
		Bandwidth:   req.Bandwidth,
		Balloon:     req.Balloon,
		SimGuest:    simGuestToPB(req.SimGuest),
	}
	if req.OnProgress != nil {
		interval := req.ProgressInterval
		if interval <= 0 {
			interval = defaultProgressInterval
		}
		m.ProgressInterval = durationpb.New(interval)
	}
	return m
}

// migrateRequestFromPB is the request the server hands its Migrator,
// without the progress callback.
func migrateRequestFromPB(m *pluginpb.MigrateRequest) MigrateRequest {
	return MigrateRequest{
		Domain:           m.GetDomain(),
		Destination:      m.GetDestination(),
		Mode:             xenmig.Mode(m.GetMode()),
		Push:             xenmig.Push(m.GetPush()),
		Pivots:           int(m.GetPivots()),
		Bandwidth:        m.GetBandwidth(),
		Balloon:          m.GetBalloon(),
		SimGuest:         simGuestFromPB(m.GetSimGuest()),
		ProgressInterval: m.GetProgressInterval().AsDuration(),
	}
}

func simGuestToPB(g *SimGuest) *pluginpb.SimGuest {
	if g == nil {
		return nil
	}
	return &pluginpb.SimGuest{
		Memory:     g.Memory,
		Used:       g.Used,
		Workload:   g.Workload,
		Vcpus:      int32(g.VCPUs),
		Seed:       g.Seed,
		WorkingSet: g.WorkingSet,
		Rate:       g.Rate,
		Run:        durationpb.New(g.Run),
		Warmup:     durationpb.New(g.Warmup),
	}
}

func simGuestFromPB(g *pluginpb.SimGuest) *SimGuest {
	if g == nil {
		return nil
	}
	return &SimGuest{
		Memory:     g.GetMemory(),
		Used:       g.GetUsed(),
		Workload:   g.GetWorkload(),
		VCPUs:      int(g.GetVcpus()),
		Seed:       g.GetSeed(),
		WorkingSet: g.GetWorkingSet(),
		Rate:       g.GetRate(),
		Run:        g.GetRun().AsDuration(),
		Warmup:     g.GetWarmup().AsDuration(),
	}
}

func progressToPB(p xenmig.Progress) *pluginpb.Progress {
	return &pluginpb.Progress{
		Phase:   p.Phase,
		Round:   int32(p.Round),
		Done:    p.Done,
		Total:   p.Total,
		Bytes:   p.Bytes,
		Elapsed: durationpb.New(p.Elapsed),
	}
}

func progressFromPB(p *pluginpb.Progress) xenmig.Progress {
	return xenmig.Progress{
		Phase:   p.GetPhase(),
		Round:   int(p.GetRound()),
		Done:    p.GetDone(),
		Total:   p.GetTotal(),
		Bytes:   p.GetBytes(),
		Elapsed: p.GetElapsed().AsDuration(),
	}
}

func incomingToPB(in *xenmig.Incoming) *pluginpb.Incoming {
	return &pluginpb.Incoming{
		Domid:  uint32(in.Domain),
		Name:   in.Name,
		Mode:   string(in.Mode),
		Pages:  in.Pages,
		Digest: in.Digest,
	}
}

func incomingFromPB(in *pluginpb.Incoming) *xenmig.Incoming {
	return &xenmig.Incoming{
		Domain: hypervisor.DomID(in.GetDomid()),
		Name:   in.GetName(),
		Mode:   xenmig.Mode(in.GetMode()),
		Pages:  in.GetPages(),
		Digest: in.GetDigest(),
	}
}

// receiveEventToPB is the wire form of e.
func receiveEventToPB(e ReceiveEvent) *pluginpb.ReceiveEvent {
	switch e.Kind {
	case Listening:
		return &pluginpb.ReceiveEvent{Event: &pluginpb.ReceiveEvent_Listening{Listening: e.Addr}}
	case Received:
		return &pluginpb.ReceiveEvent{Event: &pluginpb.ReceiveEvent_Received{Received: incomingToPB(e.Incoming)}}
	}
	return &pluginpb.ReceiveEvent{Event: &pluginpb.ReceiveEvent_Failed{Failed: errorDetail(e.Err)}}
}

// receiveEventFromPB is the event the client reports; false for an event
// kind it does not know (from a newer plugin).
func receiveEventFromPB(e *pluginpb.ReceiveEvent) (ReceiveEvent, bool) {
	switch ev := e.GetEvent().(type) {
	case *pluginpb.ReceiveEvent_Listening:
		return ReceiveEvent{Kind: Listening, Addr: ev.Listening}, true
	case *pluginpb.ReceiveEvent_Received:
		return ReceiveEvent{Kind: Received, Incoming: incomingFromPB(ev.Received)}, true
	case *pluginpb.ReceiveEvent_Failed:
		return ReceiveEvent{Kind: Failed, Err: fromDetail(ev.Failed)}, true
	}
	return ReceiveEvent{}, false
}
