package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// oneTimeIdentity is a key pair and a self-signed certificate made for one
// migration over ssh. Its fingerprint crosses the ssh channel; the
// migration's own connections then use mutual TLS pinned to it, without a
// CA, so ssh's cipher never carries (or caps) the pages.
type oneTimeIdentity struct {
	cert        tls.Certificate
	fingerprint string
}

// newOneTimeIdentity makes a fresh P-256 key and a certificate for it that
// serves as TLS server and client, valid for a day.
func newOneTimeIdentity() (oneTimeIdentity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return oneTimeIdentity{}, fmt.Errorf("one-time key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return oneTimeIdentity{}, fmt.Errorf("one-time certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "xenmig one-time migration key"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return oneTimeIdentity{}, fmt.Errorf("one-time certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return oneTimeIdentity{}, fmt.Errorf("one-time certificate: %w", err)
	}
	return oneTimeIdentity{
		cert:        tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		fingerprint: keyFingerprint(leaf),
	}, nil
}

// keyFingerprint names a certificate's public key: "sha256:" and the hex
// SHA-256 of its SubjectPublicKeyInfo.
func keyFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// errPeerKey is returned by a TLS handshake with a peer whose key is not the
// one announced over ssh.
var errPeerKey = errors.New("the peer's TLS key is not the one it announced over ssh")

// pinnedTLS is the mutual TLS of a migration over ssh: self's certificate,
// and the peer accepted only if its key has the fingerprint peer. No CA is
// involved: the pinned key is the whole trust, and ssh vouched for it.
func pinnedTLS(self oneTimeIdentity, peer string, server bool) *tls.Config {
	c := &tls.Config{
		Certificates: []tls.Certificate{self.cert},
		MinVersion:   tls.VersionTLS13,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: it sent no certificate", errPeerKey)
			}
			if got := keyFingerprint(cs.PeerCertificates[0]); subtle.ConstantTimeCompare([]byte(got), []byte(peer)) != 1 {
				return fmt.Errorf("%w: got %s, want %s", errPeerKey, got, peer)
			}
			return nil
		},
	}
	if server {
		c.ClientAuth = tls.RequireAnyClientCert // checked by VerifyConnection
	} else {
		// No CA and no host name to check: VerifyConnection checks the
		// server's key against the pinned fingerprint instead.
		c.InsecureSkipVerify = true
	}
	return c
}
