// Package testnet has the fake peers that tests of the migration
// connections use: a server that answers each connection with a function,
// and proxies that cut connections after some bytes or on demand.
package testnet

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Serve listens on a loopback port until the test ends, answers each
// connection with f (closing it when f returns) and returns the address.
func Serve(t testing.TB, f func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); f(c) }()
		}
	}()
	return ln.Addr().String()
}

// CutAfter proxies to addr and cuts the first connection once n bytes from
// the client have passed; later connections pass whole.
func CutAfter(t testing.TB, addr string, n int64) string {
	t.Helper()
	var once sync.Once
	return Serve(t, func(c net.Conn) {
		up, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer up.Close()
		limit := int64(-1)
		once.Do(func() { limit = n })
		go io.Copy(c, up)
		if limit >= 0 {
			io.CopyN(up, c, limit)
			return
		}
		io.Copy(up, c)
	})
}

// Proxy forwards every connection to an address, until Cut breaks those
// open at that moment.
type Proxy struct {
	// Addr is where the proxy listens.
	Addr string

	mu    sync.Mutex
	conns []net.Conn
}

// NewProxy proxies to addr until the test ends.
func NewProxy(t testing.TB, addr string) *Proxy {
	t.Helper()
	p := &Proxy{}
	p.Addr = Serve(t, func(c net.Conn) {
		up, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer up.Close()
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go io.Copy(c, up)
		io.Copy(up, c)
	})
	return p
}

// Cut closes every connection open now at both ends, as a failed network
// path does; later connections pass.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
