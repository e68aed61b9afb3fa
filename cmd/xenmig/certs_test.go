package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The hosts TestCerts* make certificates for: one by DNS name, one by IP
// address with a DNS alias.
const (
	certsDNSHost = "hostB"
	certsIPHost  = "192.0.2.10"
	certsIPAlias = "hostA.example.org"
)

// certsProc runs `xenmig certs ARGS...` as its own process and returns its
// exit code, standard output and standard error.
func certsProc(t *testing.T, args ...string) (int, []byte, string) {
	t.Helper()
	return xenmigProc(t, append([]string{"certs"}, args...)...)
}

// makeCerts runs `xenmig certs` for the two test hosts in a new directory
// (one level below a temporary one, so that certs creates it) and returns it.
func makeCerts(t *testing.T, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tls")
	args := append([]string{certsDNSHost, certsIPHost + "=" + certsIPAlias, "--out", dir}, extra...)
	if code, _, stderr := certsProc(t, args...); code != 0 {
		t.Fatalf("xenmig certs %v: exit %d, want 0\n%s", args, code, stderr)
	}
	return dir
}

// caPool loads dir/ca.pem.
func caPool(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("ca.pem holds no certificate:\n%s", b)
	}
	return pool
}

// hostPair loads dir/HOST.pem and dir/HOST-key.pem.
func hostPair(t *testing.T, dir, host string) tls.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, host+".pem"), filepath.Join(dir, host+"-key.pem"))
	if err != nil {
		t.Fatalf("tls.LoadX509KeyPair for %s: %v", host, err)
	}
	return pair
}

// hostLeaf loads dir/HOST.pem and dir/HOST-key.pem and returns the
// certificate.
func hostLeaf(t *testing.T, dir, host string) *x509.Certificate {
	t.Helper()
	cert, err := x509.ParseCertificate(hostPair(t, dir, host).Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestCertsVerify: each host certificate chains to ca.pem for every name it
// was made for, as a TLS server and as a TLS client, and for no other name;
// the files have the modes the command promises.
func TestCertsVerify(t *testing.T) {
	dir := makeCerts(t, "--days", "30")
	roots := caPool(t, dir)
	for _, tc := range []struct {
		host     string
		names    []string // it must verify for
		notNames []string // it must not verify for
		wantDNS  int
		wantIPs  int
	}{
		{certsDNSHost, []string{certsDNSHost}, []string{certsIPHost, certsIPAlias, "hostC"}, 1, 0},
		{certsIPHost, []string{certsIPHost, certsIPAlias}, []string{certsDNSHost, "192.0.2.11"}, 1, 1},
	} {
		t.Run(tc.host, func(t *testing.T) {
			cert := hostLeaf(t, dir, tc.host)
			if cert.Subject.CommonName != tc.host {
				t.Errorf("CN = %q, want %q", cert.Subject.CommonName, tc.host)
			}
			if len(cert.DNSNames) != tc.wantDNS || len(cert.IPAddresses) != tc.wantIPs {
				t.Errorf("SANs: got DNS %v, IP %v, want %d DNS names and %d IP addresses", cert.DNSNames, cert.IPAddresses, tc.wantDNS, tc.wantIPs)
			}
			if cert.IsCA {
				t.Errorf("IsCA = %v, want false", cert.IsCA)
			}
			if days := time.Until(cert.NotAfter).Hours() / 24; days < 29 || days > 30 {
				t.Errorf("valid for %.1f more days, want 30 (--days 30)", days)
			}
			if bits := cert.SerialNumber.BitLen(); bits < 64 || bits > 128 {
				t.Errorf("serial number of %d bits, want a random 128-bit number", bits)
			}
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				for _, name := range tc.names {
					opts := x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{usage}}
					if _, err := cert.Verify(opts); err != nil {
						t.Errorf("verify for %q with usage %v: got %v, want nil", name, usage, err)
					}
				}
			}
			for _, name := range tc.notNames {
				if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err == nil {
					t.Errorf("verify for %q: got nil, want a name mismatch", name)
				}
			}
		})
	}
	for _, tc := range []struct {
		file string
		mode os.FileMode
	}{
		{".", os.ModeDir | 0o700},
		{"ca.pem", 0o644},
		{"ca-key.pem", 0o600},
		{certsDNSHost + ".pem", 0o644},
		{certsDNSHost + "-key.pem", 0o600},
		{certsIPHost + ".pem", 0o644},
		{certsIPHost + "-key.pem", 0o600},
	} {
		fi, err := os.Stat(filepath.Join(dir, tc.file))
		if err != nil {
			t.Errorf("%s: %v", tc.file, err)
			continue
		}
		if fi.Mode() != tc.mode {
			t.Errorf("%s: mode got %v, want %v", tc.file, fi.Mode(), tc.mode)
		}
	}
}

// handshake runs a mutual TLS 1.3 handshake over loopback, configured as
// `xenmig migrate` and `xenmig receive` configure theirs, and returns what
// each end made of it.
func handshake(t *testing.T, serverPair, clientPair tls.Certificate, serverCAs, clientCAs *x509.CertPool, serverName string) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{serverPair}, MinVersion: tls.VersionTLS13,
			ClientCAs: serverCAs, ClientAuth: tls.RequireAndVerifyClientCert})
		if err := s.Handshake(); err != nil {
			done <- err
			return
		}
		_, err = s.Write([]byte("ok"))
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cl := tls.Client(c, &tls.Config{Certificates: []tls.Certificate{clientPair}, MinVersion: tls.VersionTLS13,
		RootCAs: clientCAs, ServerName: serverName})
	clientErr = cl.Handshake()
	if clientErr == nil {
		// In TLS 1.3 the client finishes before the server has checked its
		// certificate: the server's verdict arrives with the first read.
		_, clientErr = io.ReadFull(cl, make([]byte, 2))
	}
	c.Close()
	return <-done, clientErr
}

// TestCertsHandshake: the made pairs complete a real mutual TLS 1.3
// handshake with each other for every name the server was made for; a
// certificate from another CA, on either end, is refused.
func TestCertsHandshake(t *testing.T) {
	dir, other := makeCerts(t), makeCerts(t)
	ca, otherCA := caPool(t, dir), caPool(t, other)
	dnsPair, ipPair, otherPair := hostPair(t, dir, certsDNSHost), hostPair(t, dir, certsIPHost), hostPair(t, other, certsIPHost)
	for _, tc := range []struct {
		name               string
		server, client     tls.Certificate
		serverCA, clientCA *x509.CertPool // what each end trusts
		serverName         string
		refusedBy          string // "", "server" or "client"
	}{
		{"IP host dials DNS host", dnsPair, ipPair, ca, ca, certsDNSHost, ""},
		{"DNS host dials IP host by address", ipPair, dnsPair, ca, ca, certsIPHost, ""},
		{"DNS host dials IP host by alias", ipPair, dnsPair, ca, ca, certsIPAlias, ""},
		{"wrong server name", dnsPair, ipPair, ca, ca, certsIPAlias, "client"},
		{"client from another CA", dnsPair, otherPair, ca, ca, certsDNSHost, "server"},
		{"server from another CA", otherPair, dnsPair, ca, ca, certsIPHost, "client"},
		{"server trusts another CA", dnsPair, ipPair, otherCA, ca, certsDNSHost, "server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serverErr, clientErr := handshake(t, tc.server, tc.client, tc.serverCA, tc.clientCA, tc.serverName)
			switch tc.refusedBy {
			case "":
				if serverErr != nil || clientErr != nil {
					t.Errorf("handshake: got server error %v, client error %v, want both nil", serverErr, clientErr)
				}
			case "server":
				var bad *tls.CertificateVerificationError
				if !errors.As(serverErr, &bad) || clientErr == nil {
					t.Errorf("handshake: got server error %v, client error %v, want the server to refuse the client's certificate", serverErr, clientErr)
				}
			case "client":
				var bad *tls.CertificateVerificationError
				if !errors.As(clientErr, &bad) || serverErr == nil {
					t.Errorf("handshake: got client error %v, server error %v, want the client to refuse the server's certificate", clientErr, serverErr)
				}
			}
		})
	}
}

// TestCertsReuse: a second run keeps the CA, adds hosts signed by it,
// refuses to replace a host's files without --force and replaces them with
// it; a CA whose two files do not match is refused.
func TestCertsReuse(t *testing.T) {
	dir := makeCerts(t)
	caBefore, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	certBefore, err := os.ReadFile(filepath.Join(dir, certsDNSHost+".pem"))
	if err != nil {
		t.Fatal(err)
	}

	code, out, stderr := certsProc(t, "hostC", "--out", dir, "--json")
	if code != 0 {
		t.Fatalf("xenmig certs hostC: exit %d, want 0\n%s", code, stderr)
	}
	var r certsReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("certs --json output %q: %v", out, err)
	}
	want := certsReport{CA: filepath.Join(dir, "ca.pem"), Hosts: []certsHost{{Name: "hostC",
		Cert: filepath.Join(dir, "hostC.pem"), Key: filepath.Join(dir, "hostC-key.pem"), SANs: []string{"hostC"}}}}
	if g, w := mustJSON(t, r), mustJSON(t, want); g != w {
		t.Errorf("certs --json: got %s, want %s", g, w)
	}
	if !strings.Contains(stderr, "ca-key.pem") {
		t.Errorf("certs --json stderr %q: want the reminder to keep ca-key.pem on the admin machine", stderr)
	}
	if caAfter, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); !bytes.Equal(caAfter, caBefore) {
		t.Errorf("ca.pem changed on the second run:\ngot %s\nwant %s", caAfter, caBefore)
	}
	if _, err := hostLeaf(t, dir, "hostC").Verify(x509.VerifyOptions{Roots: caPool(t, dir), DNSName: "hostC"}); err != nil {
		t.Errorf("hostC from the second run: got %v, want it to verify against the first run's CA", err)
	}

	code, _, stderr = certsProc(t, certsDNSHost, "--out", dir)
	if code != exitUsage || !strings.Contains(stderr, "--force") {
		t.Errorf("certs %s again without --force: got exit %d, stderr %q, want exit %d and a hint at --force", certsDNSHost, code, stderr, exitUsage)
	}
	if certNow, _ := os.ReadFile(filepath.Join(dir, certsDNSHost+".pem")); !bytes.Equal(certNow, certBefore) {
		t.Errorf("%s.pem changed although certs refused to replace it", certsDNSHost)
	}
	code, _, stderr = certsProc(t, certsDNSHost, "--out", dir, "--force")
	if code != 0 {
		t.Fatalf("certs %s --force: got exit %d, want 0\n%s", certsDNSHost, code, stderr)
	}
	if certNow, _ := os.ReadFile(filepath.Join(dir, certsDNSHost+".pem")); bytes.Equal(certNow, certBefore) {
		t.Errorf("%s.pem unchanged after --force, want a new certificate", certsDNSHost)
	}
	hostPair(t, dir, certsDNSHost) // the new certificate matches the new key

	// A CA key from elsewhere.
	other := makeCerts(t)
	otherKey, err := os.ReadFile(filepath.Join(other, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca-key.pem"), otherKey, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = certsProc(t, "hostD", "--out", dir)
	if code != exitUsage || !strings.Contains(stderr, "do not match; remove both to make a new CA") {
		t.Errorf("certs with a mismatched CA key: got exit %d, stderr %q, want exit %d and \"do not match; remove both to make a new CA\"", code, stderr, exitUsage)
	}
	if _, err := os.Stat(filepath.Join(dir, "hostD.pem")); err == nil {
		t.Errorf("hostD.pem made with a mismatched CA key, want nothing written")
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCertsBadInput: bad arguments are usage errors (exit 2) that say what
// is wrong, and nothing is written.
func TestCertsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // in the error
	}{
		{"no host", nil, "at least one HOST"},
		{"empty host", []string{""}, "empty HOST"},
		{"empty host before =", []string{"=hostA"}, "empty HOST"},
		{"two =", []string{"a=b=c"}, `more than one "="`},
		{"nothing after =", []string{"hostA="}, `no names after "="`},
		{"empty alias", []string{"hostA=a,,b"}, "empty name"},
		{"bad host name", []string{"host/A"}, "neither an IP address nor a DNS name"},
		{"bad alias", []string{"hostA=bad name"}, "neither an IP address nor a DNS name"},
		{"mistyped IP", []string{"10.0.0.300"}, "neither an IP address nor a DNS name"},
		{"host named ca", []string{"ca"}, "CA's files"},
		{"same host twice", []string{"hostA", "hostA=10.0.0.1"}, "name each host once"},
		{"zero days", []string{"hostA", "--days", "0"}, "--days 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "tls")
			code, _, stderr := certsProc(t, append(tc.args, "--out", dir)...)
			if code != exitUsage {
				t.Errorf("xenmig certs %q: got exit %d, want %d\n%s", tc.args, code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("xenmig certs %q: got stderr %q, want it to say %q", tc.args, stderr, tc.want)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("xenmig certs %q: got %s created, want nothing written", tc.args, dir)
			}
		})
	}
}

// TestCertsHelp: certs answers --help with its usage and examples.
func TestCertsHelp(t *testing.T) {
	out, err := exec.Command(xenmigBin, "certs", "--help").CombinedOutput()
	for _, want := range []string{"Usage:", "Examples:", "--out", "--days", "--force", "ca-key.pem"} {
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("xenmig certs --help: got %v, output without %q, want it\n%s", err, want, out)
		}
	}
}
