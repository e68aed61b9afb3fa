package xenmig

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/xenmig/xenmig/pvdriver"
)

// squeeze asks the guest's self-ballooning agent (xenmig-balloond) to give
// its free memory back to Xen before the copy, as docs/BALLOON.md describes.
// A guest without the agent,
// or one that does not answer within the plan's BalloonWait, migrates as it
// is. The returned cancel tells the agent to grow back if the migration is
// abandoned.
func (s *sender) squeeze(ctx context.Context) (cancel func()) {
	cancel = func() {}
	log := s.log.WithField("phase", "balloon")
	home, err := s.hv.DomainPath(s.dom)
	if err != nil {
		log.WithError(err).Warn("no xenstore home for the domain; migrating without ballooning")
		return cancel
	}
	key := func(k string) string { return home + "/" + k }
	if _, err := s.hv.StoreRead(key(pvdriver.KeyVersion)); err != nil {
		log.Info("no self-ballooning agent in the guest; migrating without ballooning")
		return cancel
	}
	if st, _ := s.hv.StoreRead(key(pvdriver.KeyState)); st == pvdriver.StateStopped {
		log.Info("the guest's self-ballooning agent is stopped; migrating without ballooning")
		return cancel
	}
	var tok [8]byte
	rand.Read(tok[:])
	token := hex.EncodeToString(tok[:])
	want := pvdriver.CmdSqueeze + " " + token

	wctx, stop := context.WithTimeout(ctx, s.plan.BalloonWait)
	defer stop()
	events, err := s.hv.StoreWatch(wctx, key(pvdriver.KeyAck))
	if err != nil {
		log.WithError(err).Warn("cannot watch the agent's answer; migrating without ballooning")
		return cancel
	}
	before, err := s.hv.Info(s.dom)
	if err != nil {
		log.WithError(err).Warn("migrating without ballooning")
		return cancel
	}
	start := time.Now()
	if err := s.hv.StoreWrite(key(pvdriver.ControlKey), want); err != nil {
		log.WithError(err).Warn("cannot ask the agent to squeeze; migrating without ballooning")
		return cancel
	}
	cancel = func() {
		if err := s.hv.StoreWrite(key(pvdriver.ControlKey), pvdriver.CmdCancel+" "+token); err != nil {
			log.WithError(err).Warn("could not tell the agent the migration was abandoned")
		}
	}
	for range events {
		if ack, _ := s.hv.StoreRead(key(pvdriver.KeyAck)); ack == want {
			break
		}
	}
	if errors.Is(wctx.Err(), context.DeadlineExceeded) {
		log.WithField("wait", s.plan.BalloonWait).Warn("the guest's agent did not answer in time; migrating with what it released so far")
	}
	if after, err := s.hv.Info(s.dom); err == nil && after.TotPages < before.TotPages {
		result, _ := s.hv.StoreRead(key(pvdriver.KeyResult))
		log.WithFields(logrus.Fields{"released_pages": before.TotPages - after.TotPages, "result": result,
			"ms": time.Since(start).Milliseconds()}).Info("guest ballooned down for the migration")
	}
	return cancel
}
