package main

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"
)

// TestPinnedTLS: the two one-time keys announced over ssh complete a mutual
// TLS handshake; a third key, on either side, is refused.
func TestPinnedTLS(t *testing.T) {
	ids := map[string]oneTimeIdentity{}
	for _, n := range []string{"sender", "receiver", "stranger"} {
		id, err := newOneTimeIdentity()
		if err != nil {
			t.Fatal(err)
		}
		ids[n] = id
	}
	for _, tc := range []struct {
		name              string
		client, server    string // who really connects and answers
		clientPin, srvPin string // what each side was told over ssh
		ok                bool
	}{
		{"the announced keys", "sender", "receiver", "receiver", "sender", true},
		{"a stranger dials the receiver", "stranger", "receiver", "receiver", "sender", false},
		{"a stranger answers the sender", "sender", "stranger", "receiver", "sender", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			srvErr := make(chan error, 1)
			go func() {
				s, err := ln.Accept()
				if err != nil {
					srvErr <- err
					return
				}
				defer s.Close()
				srv := tls.Server(s, pinnedTLS(ids[tc.server], ids[tc.srvPin].fingerprint, true))
				err = srv.Handshake()
				if err == nil {
					_, err = srv.Write([]byte{1}) // a TLS 1.3 server learns of a refused client certificate late
				}
				srvErr <- err
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			cli := tls.Client(c, pinnedTLS(ids[tc.client], ids[tc.clientPin].fingerprint, false))
			err = cli.Handshake()
			if err == nil {
				_, err = cli.Read(make([]byte, 1))
			}
			c.Close() // a refusing client unblocks the server
			serr := <-srvErr
			if tc.ok && (err != nil || serr != nil) {
				t.Fatalf("handshake: client %v, server %v, want both fine", err, serr)
			}
			if !tc.ok && err == nil && serr == nil {
				t.Fatal("handshake succeeded, want it refused")
			}
			if !tc.ok && !errors.Is(err, errPeerKey) && !errors.Is(serr, errPeerKey) {
				t.Errorf("refusal: client %v, server %v, want one of them errPeerKey", err, serr)
			}
		})
	}
}
