// Package testnet has the fake peers that tests of the migration
// connections use: a server that answers each connection with a function,
// and a proxy that cuts a connection after some bytes.
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
