package xenmig_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/xenmig/xenmig/xenctrl/sim"
	"github.com/xenmig/xenmig/xenmig"
)

// testCA issues certificates for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t testing.TB) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xenmig test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// transport returns a mutual-TLS transport with a certificate for
// 127.0.0.1 signed by ca, trusting peers signed by trust.
func (ca *testCA) transport(t testing.TB, server bool, trust *testCA) xenmig.Transport {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "host"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS13}
	if server {
		cfg.ClientCAs, cfg.ClientAuth = trust.pool, tls.RequireAndVerifyClientCert
	} else {
		cfg.RootCAs = trust.pool
	}
	return xenmig.Transport{TLS: cfg, DialTimeout: 2 * time.Second}
}

// TestMutualTLS: a migration between hosts holding certificates of one CA
// succeeds with the right memory; a sender whose certificate another CA
// signed is refused, and its domain keeps running.
func TestMutualTLS(t *testing.T) {
	ca, stranger := newCA(t), newCA(t)
	spec := guest("tls", sim.WebServer, 3000)
	for _, tc := range []struct {
		name   string
		sender *testCA
		ok     bool
	}{{"same CA", ca, true}, {"foreign client certificate", stranger, false}} {
		t.Run(tc.name, func(t *testing.T) {
			dst := receiveOne(t, ca.transport(t, true, ca))
			src := sim.NewHost()
			defer src.Close()
			dom := boot(t, src, spec, 300)
			res, err := xenmig.Migrate(context.Background(), src, dom, dst.addr, plan(xenmig.PostCopy, xenmig.PushPrepaging),
				xenmig.WithTransport(tc.sender.transport(t, false, ca)))
			if !tc.ok {
				if err == nil {
					t.Fatal("Migrate() with a foreign certificate = nil, want an error")
				}
				runsOnSource(t, src, dom, spec)
				return
			}
			if err != nil {
				t.Fatalf("Migrate() = %v", err)
			}
			dst.wait(t)
			checkDigest(t, res, reference(t, spec))
		})
	}
}

// TestBandwidthLimit: the token bucket holds the sender to the plan's rate.
func TestBandwidthLimit(t *testing.T) {
	spec := guest("slow", sim.Idle, 3000)
	dst := receiveOne(t, xenmig.Transport{})
	src := sim.NewHost()
	defer src.Close()
	dom := boot(t, src, spec, 100)
	p := plan(xenmig.PostCopy, xenmig.PushSequential)
	p.Bandwidth = 40 << 20 // 40 MiB/s
	res := dst.migrate(t, src, dom, p, "")
	// The first burst may go at once; the rest waits for tokens.
	minMS := float64(res.BytesSent-uint64(4<<20)) / float64(p.Bandwidth) * 1000
	if res.TotalMS < minMS {
		t.Errorf("sent %d bytes in %.0f ms at a %d B/s limit, want at least %.0f ms", res.BytesSent, res.TotalMS, p.Bandwidth, minMS)
	}
	checkDigest(t, res, reference(t, spec))
}
