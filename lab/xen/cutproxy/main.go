// Command cutproxy forwards TCP connections from a listening address to a
// target and cuts them on demand, as a network that fails for a while does:
// on SIGUSR1 it closes every connection it carries and, for -down, closes
// each new one as soon as it is accepted. The lab's post-copy scenario puts
// it between xenmig's sender and receiver to break their connections just
// after the switchover.
//
//	cutproxy -listen 127.0.0.1:8003 -to 127.0.0.1:8002 -down 2s
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// proxy is the set of connections carried and the end of the current cut.
type proxy struct {
	to string

	mu       sync.Mutex
	conns    map[net.Conn]bool
	cutUntil time.Time
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8003", "address to listen on")
	to := flag.String("to", "127.0.0.1:8002", "address to forward to")
	down := flag.Duration("down", 2*time.Second, "how long a cut lasts")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	p := &proxy{to: *to, conns: map[net.Conn]bool{}}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	go func() {
		for range sig {
			p.cut(*down)
		}
	}()
	log.Printf("forwarding %s to %s", *listen, *to)
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go p.serve(c)
	}
}

// cut closes every connection and refuses new ones for d.
func (p *proxy) cut(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutUntil = time.Now().Add(d)
	log.Printf("cut: closing %d connections, refusing new ones for %v", len(p.conns), d)
	for c := range p.conns {
		c.Close()
	}
}

// track adds c to the carried connections, or reports false during a cut.
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Now().Before(p.cutUntil) {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

// serve forwards c to the target until either side closes.
func (p *proxy) serve(c net.Conn) {
	defer c.Close()
	if !p.track(c) {
		return
	}
	defer p.untrack(c)
	t, err := net.Dial("tcp", p.to)
	if err != nil {
		log.Printf("dial %s: %v", p.to, err)
		return
	}
	defer t.Close()
	if !p.track(t) {
		return
	}
	defer p.untrack(t)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(t, c)
	go pipe(c, t)
	<-done
	<-done
}
