package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"

	"github.com/spf13/cobra"

	"github.com/xenmig/xenmig/xenmig"
)

// receiveEvent is one line of `receive --json` output.
type receiveEvent struct {
	Event   string `json:"event"` // "listening", "received", "failed"
	Addr    string `json:"addr,omitempty"`
	Metrics string `json:"metrics,omitempty"` // listening: the metrics' address, if served
	Domain  string `json:"domain,omitempty"`
	DomID   uint32 `json:"domid,omitempty"`
	Mode    string `json:"mode,omitempty"`
	Pages   uint64 `json:"pages,omitempty"`
	Digest  string `json:"digest,omitempty"`
	Error   string `json:"error,omitempty"`
	// Fingerprint is a one-time TLS key's, exchanged over ssh (--ssh-session).
	Fingerprint string `json:"fingerprint,omitempty"`
}

func newReceiveCommand(a *app) *cobra.Command {
	var listen, metricsListen string
	var serve, asJSON, discard, paused, sshSession bool
	cmd := &cobra.Command{
		Use:   "receive",
		Short: "Accept incoming migrations onto this host",
		Long: `Listen for a migration from another host's ` + "`xenmig migrate`" + ` and carry it out
here: build the domain shell, page its memory out, take over its vCPU state,
resume it and install its memory as it arrives. By default it serves one
migration and exits; --serve accepts one after another.

A receiver killed before the switchover cannot destroy the paused shell it
built (NAME--incoming); the source keeps the guest. The next receive on this
host destroys such shells, once their receiver is gone, and logs each one.

With --json, each event (listening, received, failed) is one JSON line on
standard output; the first line carries the address, so a script can listen
on port 0 and learn the port (and, with --metrics-listen, the metrics' one).

With --metrics-listen (receiver.metrics_listen) it serves Prometheus metrics
over HTTP at /metrics: migrations by mode and outcome, bytes and pages
received by phase, fault latency, downtime, reconnects, migrations in
progress and paging ring occupancy (README.md lists them).`,
		Example: `  xenmig receive --listen :8002
  xenmig receive --listen 127.0.0.1:0 --json --serve
  xenmig receive --serve --metrics-listen 127.0.0.1:9102`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if sshSession {
				return a.serveSSHSession(cmd.Context(), listen, paused)
			}
			if listen == "" {
				listen = a.cfg.Receiver.Listen
			}
			if !cmd.Flags().Changed("serve") {
				serve = a.cfg.Receiver.Serve
			}
			t, err := a.transport(true)
			if err != nil {
				return err
			}
			hv, closeHV, err := a.openBackend()
			if err != nil {
				return err
			}
			defer closeHV()
			// Shells left by receivers killed before their switchover
			// hold memory and block their domain's next migration here.
			if _, err := xenmig.ReapStaleShells(hv, a.log); err != nil {
				a.log.WithError(err).Warn("could not remove every domain shell left by a killed receiver")
			}
			maddr, err := a.serveMetrics(cmd.Context(), metricsListen)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return withCode(exitFailure, fmt.Errorf("listen on %s: %w", listen, err))
			}
			l := xenmig.Listen(ln, t, a.receiveOptions()...)
			defer l.Close()
			emit := func(e receiveEvent) {
				if asJSON {
					json.NewEncoder(os.Stdout).Encode(e)
				}
			}
			emit(receiveEvent{Event: "listening", Addr: l.Addr().String(), Metrics: maddr})
			a.log.WithField("addr", l.Addr().String()).Info("waiting for migrations")
			for {
				inc, err := xenmig.Receive(cmd.Context(), hv, l, a.receiveOptions()...)
				if err != nil {
					if cmd.Context().Err() != nil {
						return nil
					}
					emit(receiveEvent{Event: "failed", Error: err.Error()})
					if !serve {
						return migrationExit(err)
					}
					a.log.WithError(err).Error("incoming migration failed; still listening")
					continue
				}
				if discard {
					if err := hv.Destroy(inc.Domain); err != nil {
						a.log.WithError(err).Warn("could not destroy the received domain")
					}
				} else if paused {
					if err := hv.Pause(inc.Domain); err != nil {
						a.log.WithError(err).Warn("could not leave the received domain paused")
					}
				}
				emit(receiveEvent{Event: "received", Domain: inc.Name, DomID: uint32(inc.Domain), Mode: string(inc.Mode), Pages: inc.Pages, Digest: inc.Digest})
				a.log.WithFields(map[string]any{"domain": inc.Name, "domid": inc.Domain}).Info("domain received")
				if !serve {
					return nil
				}
			}
		},
	}
	cmd.Flags().StringVarP(&listen, "listen", "l", "", "address to listen on (default: receiver.listen, :8002)")
	cmd.Flags().BoolVar(&serve, "serve", false, "accept migrations one after another (default: receiver.serve)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print events as JSON lines on standard output")
	cmd.Flags().BoolVar(&discard, "discard", false, "destroy each domain once received (benchmarks)")
	cmd.Flags().BoolVarP(&paused, "paused", "p", false, "leave each received domain paused once all its memory is here (as xl migrate -p)")
	cmd.Flags().BoolVar(&sshSession, "ssh-session", false, "serve one migration for a sender that started this over ssh (xenmig migrate does)")
	cmd.Flags().MarkHidden("ssh-session")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "", `serve Prometheus metrics at http://ADDR/metrics, e.g. "127.0.0.1:9102" (default: receiver.metrics_listen, none)`)
	return cmd
}
