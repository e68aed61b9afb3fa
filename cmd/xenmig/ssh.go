package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/xenmig/xenmig/xenmig"
)

// sshStartTimeout bounds how long ssh may take to log in and start the
// receiver on the destination.
const sshStartTimeout = 30 * time.Second

// sshFlags are `xenmig migrate`'s flags named after `xl migrate`'s.
type sshFlags struct {
	command string // -s: the ssh command; "" runs HOST itself
	remote  string // the xenmig binary on HOST
	config  string // -C: the xl configuration the destination is built from
	paused  bool   // -p: leave the domain paused on the destination
	debug   bool   // --debug
}

// route says how a migration reaches HOST: a receive daemon already
// listening there, or a receiver started over ssh for this migration.
type route struct {
	ssh  bool
	why  string // for --debug
	addr string // the daemon's address
}

// chooseRoute picks the daemon when HOST names a port, or when [tls]
// certificates are configured and a daemon answers on HOST's migration
// port; ssh when -s is given or otherwise.
func (a *app) chooseRoute(ctx context.Context, host string, sshSet bool) route {
	if sshSet {
		return route{ssh: true, why: "-s given: start the receiver on HOST over ssh"}
	}
	if _, _, err := net.SplitHostPort(host); err == nil {
		return route{addr: host, why: "HOST names a port: migrate to the xenmig receive daemon there"}
	}
	if strings.Contains(host, "@") {
		return route{ssh: true, why: "HOST names an ssh user: start the receiver there over ssh"}
	}
	if err := a.cfg.RequireTLS(); err != nil {
		return route{ssh: true, why: "no [tls] certificates configured (tls.cert, tls.key, tls.ca) for a daemon: start the receiver on HOST over ssh"}
	}
	addr, _ := a.destination(host) // no port: never refused
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return route{ssh: true, why: fmt.Sprintf("[tls] is configured but no daemon answers on %s (%v): start the receiver on HOST over ssh", addr, err)}
	}
	c.Close()
	return route{addr: addr, why: fmt.Sprintf("[tls] is configured and a daemon answers on %s: migrate to it", addr)}
}

// sshReceiver is `xenmig receive --ssh-session` running on the destination
// through ssh, for one migration.
type sshReceiver struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan receiveEvent
	addr   string
	t      xenmig.Transport
	log    *logrus.Logger
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// sshCommandLine is what sh runs, as xl builds it: SSHCOMMAND HOST
// xenmig [global flags] receive --ssh-session ..., or HOST alone when
// SSHCOMMAND is empty. The remote words are quoted twice: once for sh
// here, once for the shell ssh starts on HOST.
func sshCommandLine(f sshFlags, host string, global []string) string {
	if f.command == "" {
		return host
	}
	remote := append(append([]string{f.remote}, global...), "receive", "--ssh-session")
	if f.paused {
		remote = append(remote, "--paused")
	}
	words := []string{f.command, shellQuote(host)}
	for _, w := range remote {
		words = append(words, shellQuote(shellQuote(w)))
	}
	return strings.Join(words, " ")
}

// startSSHReceiver starts the receiver on host over ssh, exchanges the
// one-time keys' fingerprints with it, and returns the address and the
// pinned mutual TLS the migration connects with. Nothing of the domain is
// sent before it returns.
func (a *app) startSSHReceiver(ctx context.Context, f sshFlags, host string) (*sshReceiver, error) {
	self, err := newOneTimeIdentity()
	if err != nil {
		return nil, err
	}
	// The receiver logs as we do and, if we were told which backend to use,
	// uses it too; everything else is HOST's own defaults.
	global := []string{"--log-level", a.cfg.Log.Level}
	if a.backend != "" {
		global = append(global, "--backend", a.backend)
	}
	line := sshCommandLine(f, host, global)
	a.log.WithField("command", line).Debug("starting the receiver over ssh")
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	cmd.Stderr = os.Stderr // ssh's complaints and the receiver's log
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %q: %w", line, err)
	}
	r := &sshReceiver{cmd: cmd, stdin: stdin, events: make(chan receiveEvent, 4), log: a.log}
	go func() {
		defer close(r.events)
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			var e receiveEvent
			if err := json.Unmarshal(lines.Bytes(), &e); err != nil {
				a.log.WithField("line", lines.Text()).Warn("the receiver over ssh printed something that is not an event")
				continue
			}
			r.events <- e
		}
	}()
	fail := func(err error) (*sshReceiver, error) {
		stdin.Close()
		cmd.Process.Kill()
		werr := cmd.Wait()
		return nil, fmt.Errorf("start the receiver on %s over ssh (%s): %w (%v); nothing was sent", host, line, err, werr)
	}
	var ready receiveEvent
	select {
	case e, ok := <-r.events:
		if !ok {
			return fail(errors.New("it exited before listening (a refused login, an unknown host key, or no xenmig on that host? ssh's message is above)"))
		}
		ready = e
	case <-time.After(sshStartTimeout):
		return fail(fmt.Errorf("it did not start listening within %v", sshStartTimeout))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	if ready.Event != "listening" || ready.Fingerprint == "" {
		return fail(fmt.Errorf("its first event is %+v, want listening with a key fingerprint", ready))
	}
	if err := json.NewEncoder(stdin).Encode(receiveEvent{Event: "sender", Fingerprint: self.fingerprint}); err != nil {
		return fail(fmt.Errorf("send our key's fingerprint: %w", err))
	}
	r.addr, err = dialAddr(ready.Addr, host, f.command == "")
	if err != nil {
		return fail(err)
	}
	r.t = xenmig.Transport{TLS: pinnedTLS(self, ready.Fingerprint, false), DialTimeout: a.cfg.Migration.ConnectTimeout.Duration()}
	a.log.WithFields(logrus.Fields{"addr": r.addr, "receiver_key": ready.Fingerprint, "sender_key": self.fingerprint}).
		Debug("receiver started over ssh; the migration connects with mutual TLS pinned to these one-time keys")
	return r, nil
}

// dialAddr is where the sender connects: the address the receiver listens
// on, or, when it listens on every interface, the host ssh reached (the
// loopback when HOST was run as the command itself).
func dialAddr(listening, host string, local bool) (string, error) {
	h, port, err := net.SplitHostPort(listening)
	if err != nil {
		return "", fmt.Errorf("the receiver listens on %q: %w", listening, err)
	}
	if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
		return listening, nil
	}
	if local {
		return net.JoinHostPort("127.0.0.1", port), nil
	}
	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		host = host[i+1:]
	}
	return net.JoinHostPort(host, port), nil
}

// wait ends the session: it closes the channel and waits for the receiver
// to report and exit. migErr is the migration's own outcome.
func (r *sshReceiver) wait(migErr error) error {
	r.stdin.Close()
	var last receiveEvent
	timeout := time.After(time.Minute)
	for done := false; !done; {
		select {
		case e, ok := <-r.events:
			if !ok {
				done = true
				break
			}
			last = e
		case <-timeout:
			r.cmd.Process.Kill()
			done = true
		}
	}
	err := r.cmd.Wait()
	if migErr != nil {
		return nil // the migration's error says more
	}
	if last.Event == "failed" {
		return fmt.Errorf("the receiver over ssh: %s", last.Error)
	}
	if err != nil {
		return fmt.Errorf("the receiver over ssh: %w", err)
	}
	return nil
}

// sshListenAddr is where a receiver started over ssh listens: listen when
// given, else the address ssh reached this host on (SSH_CONNECTION), with a
// free port; every interface when neither is known.
func sshListenAddr(listen string) string {
	if listen != "" {
		return listen
	}
	if f := strings.Fields(os.Getenv("SSH_CONNECTION")); len(f) == 4 {
		return net.JoinHostPort(f[2], "0")
	}
	return ":0"
}

// serveSSHSession is the destination's side of a migration over ssh: it
// announces its one-time key's fingerprint and its address on standard
// output, reads the sender's fingerprint from standard input, serves that
// one sender with pinned mutual TLS, and exits.
func (a *app) serveSSHSession(ctx context.Context, listen string, paused bool) error {
	out := json.NewEncoder(os.Stdout)
	emit := func(e receiveEvent) { out.Encode(e) }
	self, err := newOneTimeIdentity()
	if err != nil {
		return withCode(exitFailure, err)
	}
	hv, closeHV, err := a.openBackend()
	if err != nil {
		return err
	}
	defer closeHV()
	addr := sshListenAddr(listen)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return withCode(exitFailure, fmt.Errorf("listen on %s: %w", addr, err))
	}
	emit(receiveEvent{Event: "listening", Addr: ln.Addr().String(), Fingerprint: self.fingerprint})

	// The sender's fingerprint comes on the same channel; its end (EOF)
	// before the migration starts means the sender gave up.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var started atomic.Bool
	peer := make(chan string, 1)
	go func() {
		in := bufio.NewScanner(os.Stdin)
		var e receiveEvent
		if in.Scan() && json.Unmarshal(in.Bytes(), &e) == nil {
			peer <- e.Fingerprint
		}
		close(peer)
		for in.Scan() {
		}
		if !started.Load() {
			cancel()
		}
	}()
	var fp string
	select {
	case fp = <-peer:
	case <-time.After(sshStartTimeout):
	}
	if fp == "" {
		ln.Close()
		return withCode(exitFailure, errors.New("the sender sent no key fingerprint over ssh"))
	}
	t := xenmig.Transport{TLS: pinnedTLS(self, fp, true), DialTimeout: a.cfg.Migration.ConnectTimeout.Duration()}
	l := xenmig.Listen(ln, t)
	defer l.Close()
	opts := append(a.receiveOptions(), xenmig.WithEvents(func(e xenmig.Event) {
		if e.Kind == xenmig.EventStarted {
			started.Store(true)
		}
	}))
	inc, err := xenmig.Receive(ctx, hv, l, opts...)
	if err != nil {
		emit(receiveEvent{Event: "failed", Error: err.Error()})
		return migrationExit(err)
	}
	if paused {
		if err := hv.Pause(inc.Domain); err != nil {
			a.log.WithError(err).Warn("could not leave the domain paused (-p)")
		}
	}
	emit(receiveEvent{Event: "received", Domain: inc.Name, DomID: uint32(inc.Domain), Mode: string(inc.Mode), Pages: inc.Pages, Digest: inc.Digest})
	a.log.WithFields(logrus.Fields{"domain": inc.Name, "domid": inc.Domain, "paused": paused}).Info("domain received over ssh")
	return nil
}
