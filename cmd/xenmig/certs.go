package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// The files `xenmig certs` writes in its output directory.
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
	caName     = "xenmig CA"
	caYears    = 10
)

// certsOptions are the flags of `xenmig certs`.
type certsOptions struct {
	out    string
	days   int
	force  bool
	asJSON bool
}

// newCertsCommand is `xenmig certs`: a CA and one key pair per host for the
// migrations' mutual TLS.
func newCertsCommand() *cobra.Command {
	o := certsOptions{}
	cmd := &cobra.Command{
		Use:   "certs HOST[=ALT,...] [HOST[=ALT,...]...]",
		Short: "Make the mutual-TLS certificates: a CA and a key pair per host",
		Long: `Make the files the [tls] table of each host's configuration names, so that
xenmig hosts can migrate to each other over mutual TLS 1.3.

In --out DIR (created mode 0700 if missing) it makes a CA, ca.pem and
ca-key.pem (ECDSA P-256, CN "xenmig CA", valid 10 years), or reuses the one
already there; then, for each HOST, HOST.pem and HOST-key.pem (ECDSA P-256,
signed by the CA, valid --days days). Each host certificate serves both ends
of a migration (TLS server and client authentication): the sender checks the
receiver's certificate against the host it dials (HOST in "xenmig migrate
DOMAIN HOST:PORT"), the receiver checks the sender's against the CA.

A certificate carries HOST as its subject name (CN) and as its one name (SAN):
an IP address if HOST is one, a DNS name otherwise. HOST=ALT,ALT... adds
other names senders may dial it by: DNS names or IP addresses.

Keys are written mode 0600, certificates 0644. An existing host certificate
is only replaced with --force; an existing CA is always kept (ca.pem and
ca-key.pem must match: remove both to make a new CA, then make every host's
certificate again).

It prints, for each host, the [tls] table to put in its configuration (paths
as on this machine: copy the files to the same directory on the host), or
with --json one object {ca, hosts: [{name, cert, key, sans}]}. ca-key.pem
stays on this machine: whoever has it can make certificates every xenmig
host trusts. Run it on an administration machine, not on every host.

It reads no configuration file.`,
		Example: `  xenmig certs hostA hostB --out /etc/xenmig/tls
  xenmig certs hostA=10.0.0.1,hosta.example.org 10.0.0.2=hostb --out ./tls --days 730
  xenmig certs hostC --out /etc/xenmig/tls             # a new host, same CA
  xenmig certs hostA --out /etc/xenmig/tls --force     # renew hostA's certificate`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return withCode(exitUsage, errors.New("name at least one HOST to make a certificate for, e.g. `xenmig certs hostA hostB --out /etc/xenmig/tls`"))
			}
			return nil
		},
		// The root's hook loads the configuration, whose [tls] paths may
		// name the very files this command is about to make.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCerts(o, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&o.out, "out", ".", "directory for the CA and the host files, created mode 0700 if missing")
	cmd.Flags().IntVar(&o.days, "days", 365, "validity of the host certificates, in days")
	cmd.Flags().BoolVar(&o.force, "force", false, "replace existing host certificates and keys")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print the result as JSON")
	return cmd
}

// hostSpec is one HOST[=ALT,...] argument.
type hostSpec struct {
	name string
	ips  []net.IP
	dns  []string
	sans []string // every name, HOST first, as given
}

func (h hostSpec) certFile() string { return h.name + ".pem" }
func (h hostSpec) keyFile() string  { return h.name + "-key.pem" }

// parseHostSpec parses HOST[=ALT,ALT...].
func parseHostSpec(arg string) (hostSpec, error) {
	const syntax = "write HOST or HOST=ALT,ALT... (e.g. hostA=10.0.0.1,hosta.example.org)"
	name, alts, hasAlts := strings.Cut(arg, "=")
	if name == "" {
		return hostSpec{}, fmt.Errorf("%q: empty HOST: %s", arg, syntax)
	}
	if strings.Contains(alts, "=") {
		return hostSpec{}, fmt.Errorf("%q: more than one \"=\": %s", arg, syntax)
	}
	if hasAlts && alts == "" {
		return hostSpec{}, fmt.Errorf("%q: no names after \"=\": %s, or drop the \"=\"", arg, syntax)
	}
	if strings.EqualFold(name, "ca") || strings.EqualFold(name, "ca-key") {
		return hostSpec{}, fmt.Errorf("%q: HOST %q would overwrite the CA's files: name the host by another of its names", arg, name)
	}
	h := hostSpec{name: name}
	seen := map[string]bool{}
	add := func(s string, wildcard bool) error {
		if ip := net.ParseIP(s); ip != nil {
			if !seen[ip.String()] {
				seen[ip.String()] = true
				h.ips = append(h.ips, ip)
				h.sans = append(h.sans, s)
			}
			return nil
		}
		if err := checkDNSName(s, wildcard); err != nil {
			return err
		}
		if k := strings.ToLower(s); !seen[k] {
			seen[k] = true
			h.dns = append(h.dns, s)
			h.sans = append(h.sans, s)
		}
		return nil
	}
	if err := add(name, false); err != nil {
		return hostSpec{}, fmt.Errorf("%q: HOST %q: %w", arg, name, err)
	}
	if hasAlts {
		for _, alt := range strings.Split(alts, ",") {
			if alt == "" {
				return hostSpec{}, fmt.Errorf("%q: empty name in the list after \"=\": separate names with single commas", arg)
			}
			if err := add(alt, true); err != nil {
				return hostSpec{}, fmt.Errorf("%q: %q: %w", arg, alt, err)
			}
		}
	}
	return h, nil
}

// checkDNSName accepts a host name (letters, digits, '-' and '_' in dot-
// separated labels), with a leading "*." if wildcard.
func checkDNSName(s string, wildcard bool) error {
	const what = "neither an IP address nor a DNS name (letters, digits, '-' and '_' in dot-separated labels)"
	if wildcard && strings.HasPrefix(s, "*.") {
		s = s[2:]
	}
	if len(s) > 253 {
		return fmt.Errorf("longer than a DNS name may be (253 characters)")
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return errors.New(what)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return errors.New(what)
			}
		}
	}
	if last := labels[len(labels)-1]; strings.Trim(last, "0123456789") == "" {
		return errors.New(what) // 10.0.0.300, 1.2.3: a mistyped IP address
	}
	return nil
}

// certsHost is one host in the JSON output.
type certsHost struct {
	Name string   `json:"name"`
	Cert string   `json:"cert"`
	Key  string   `json:"key"`
	SANs []string `json:"sans"`
}

// certsReport is the JSON output of `xenmig certs`.
type certsReport struct {
	CA    string      `json:"ca"`
	Hosts []certsHost `json:"hosts"`
}

func runCerts(o certsOptions, args []string, stdout, stderr io.Writer) error {
	if o.days < 1 {
		return withCode(exitUsage, fmt.Errorf("--days %d: must be at least 1", o.days))
	}
	if o.out == "" {
		return withCode(exitUsage, errors.New("--out: name a directory (\".\" for this one)"))
	}
	dir, err := filepath.Abs(o.out)
	if err != nil {
		return withCode(exitFailure, fmt.Errorf("--out %s: %w", o.out, err))
	}

	// Check every argument, and what is already there, before writing
	// anything.
	hosts := make([]hostSpec, 0, len(args))
	files := map[string]string{caCertFile: "the CA", caKeyFile: "the CA"}
	for _, arg := range args {
		h, err := parseHostSpec(arg)
		if err != nil {
			return withCode(exitUsage, err)
		}
		for _, f := range []string{h.certFile(), h.keyFile()} {
			if other, dup := files[f]; dup {
				return withCode(exitUsage, fmt.Errorf("%q: its file %s is also %s's: name each host once, by different names", arg, f, other))
			}
			files[f] = "HOST " + h.name
		}
		hosts = append(hosts, h)
	}
	if !o.force {
		for _, h := range hosts {
			for _, f := range []string{h.certFile(), h.keyFile()} {
				if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
					return withCode(exitUsage, fmt.Errorf("%s already exists: pass --force to replace %s's certificate and key (then copy the new ones to %[2]s)",
						filepath.Join(dir, f), h.name))
				}
			}
		}
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return withCode(exitFailure, fmt.Errorf("--out: %w", err))
	}
	now := time.Now()
	ca, caKey, made, err := loadOrMakeCA(dir, now)
	if err != nil {
		return err
	}
	notAfter := now.AddDate(0, 0, o.days)
	if notAfter.After(ca.NotAfter) {
		left := int(ca.NotAfter.Sub(now).Hours() / 24)
		return withCode(exitUsage, fmt.Errorf("the CA in %s expires on %s, before certificates valid %d days would: use --days %d or less, or make a new CA (remove ca.pem and ca-key.pem, then make every host's certificate again)",
			filepath.Join(dir, caCertFile), ca.NotAfter.Format(time.DateOnly), o.days, left))
	}

	report := certsReport{CA: filepath.Join(dir, caCertFile)}
	for _, h := range hosts {
		certPEM, keyPEM, err := issueHostCert(ca, caKey, h, now, notAfter)
		if err != nil {
			return withCode(exitFailure, fmt.Errorf("%s: %w", h.name, err))
		}
		if err := writeFiles(dir, []outFile{{h.keyFile(), keyPEM, 0o600}, {h.certFile(), certPEM, 0o644}}); err != nil {
			return withCode(exitFailure, fmt.Errorf("%s: %w", h.name, err))
		}
		report.Hosts = append(report.Hosts, certsHost{Name: h.name, Cert: filepath.Join(dir, h.certFile()),
			Key: filepath.Join(dir, h.keyFile()), SANs: h.sans})
	}

	const keepCAKey = "Keep %s on this machine only: whoever has it can make certificates every xenmig host trusts. Never copy it to a host.\n"
	if o.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return withCode(exitFailure, err)
		}
		fmt.Fprintf(stderr, keepCAKey, filepath.Join(dir, caKeyFile))
		return nil
	}
	if made {
		fmt.Fprintf(stdout, "Made a new CA in %s: %s and %s, valid until %s.\n", dir, caCertFile, caKeyFile, ca.NotAfter.Format(time.DateOnly))
	} else {
		fmt.Fprintf(stdout, "Used the CA already in %s (%s, valid until %s).\n", dir, caCertFile, ca.NotAfter.Format(time.DateOnly))
	}
	for _, h := range report.Hosts {
		fmt.Fprintf(stdout, "Made %s and %s for %s, valid until %s.\n", filepath.Base(h.Cert), filepath.Base(h.Key),
			strings.Join(h.SANs, ", "), notAfter.Format(time.DateOnly))
	}
	for _, h := range report.Hosts {
		fmt.Fprintf(stdout, "\n# %s: copy %s, %s and %s (mode 0600) to %s on %s,\n# then put this in its xenmig configuration:\n",
			h.Name, caCertFile, filepath.Base(h.Cert), filepath.Base(h.Key), dir, h.Name)
		fmt.Fprintf(stdout, "[tls]\ncert = %s\nkey = %s\nca = %s\n", tomlString(h.Cert), tomlString(h.Key), tomlString(report.CA))
	}
	fmt.Fprintf(stdout, "\n"+keepCAKey, filepath.Join(dir, caKeyFile))
	return nil
}

// loadOrMakeCA loads the CA in dir, or makes one if neither of its files is
// there; made says which.
func loadOrMakeCA(dir string, now time.Time) (ca *x509.Certificate, key crypto.Signer, made bool, err error) {
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		ca, key, err := makeCA(dir, now)
		return ca, key, true, err
	case errors.Is(certErr, fs.ErrNotExist):
		return nil, nil, false, withCode(exitUsage, fmt.Errorf("%s exists but %s does not: put the CA certificate back, or remove %s to make a new CA",
			keyPath, caCertFile, caKeyFile))
	case errors.Is(keyErr, fs.ErrNotExist):
		return nil, nil, false, withCode(exitUsage, fmt.Errorf("%s exists but %s does not: the CA's key is needed to sign host certificates; run xenmig certs where ca-key.pem is, or remove %s to make a new CA",
			certPath, caKeyFile, caCertFile))
	case certErr != nil:
		return nil, nil, false, withCode(exitFailure, certErr)
	case keyErr != nil:
		return nil, nil, false, withCode(exitFailure, keyErr)
	}
	const renew = "remove ca.pem and ca-key.pem to make a new CA (then make every host's certificate again)"
	ca, err = parseCertPEM(certPEM)
	if err != nil {
		return nil, nil, false, withCode(exitUsage, fmt.Errorf("%s: %w; %s", certPath, err, renew))
	}
	key, err = parseKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, false, withCode(exitUsage, fmt.Errorf("%s: %w; %s", keyPath, err, renew))
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(ca.PublicKey) {
		return nil, nil, false, withCode(exitUsage, fmt.Errorf("%s and %s do not match; remove both to make a new CA (then make every host's certificate again)",
			certPath, caKeyFile))
	}
	if !ca.IsCA || !ca.BasicConstraintsValid || ca.KeyUsage != 0 && ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, false, withCode(exitUsage, fmt.Errorf("%s is not a CA certificate (it may not sign certificates); %s", certPath, renew))
	}
	if now.After(ca.NotAfter) {
		return nil, nil, false, withCode(exitUsage, fmt.Errorf("%s expired on %s; %s", certPath, ca.NotAfter.Format(time.DateOnly), renew))
	}
	return ca, key, false, nil
}

// makeCA makes and writes a new CA in dir.
func makeCA(dir string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, withCode(exitFailure, fmt.Errorf("make the CA key: %w", err))
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, withCode(exitFailure, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: caName},
		NotBefore:             now.Add(-time.Hour), // other hosts' clocks may be a little behind
		NotAfter:              now.AddDate(caYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, withCode(exitFailure, fmt.Errorf("make the CA certificate: %w", err))
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, withCode(exitFailure, err)
	}
	keyPEM, err := marshalKeyPEM(key)
	if err != nil {
		return nil, nil, withCode(exitFailure, err)
	}
	if err := writeFiles(dir, []outFile{{caKeyFile, keyPEM, 0o600},
		{caCertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644}}); err != nil {
		return nil, nil, withCode(exitFailure, fmt.Errorf("write the CA: %w", err))
	}
	return ca, key, nil
}

// issueHostCert makes h's key and its certificate signed by ca, for TLS
// server and client authentication, and returns both PEM encoded.
func issueHostCert(ca *x509.Certificate, caKey crypto.Signer, h hostSpec, now, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("make the key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: h.name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              h.dns,
		IPAddresses:           h.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign the certificate: %w", err)
	}
	keyPEM, err = marshalKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// randomSerial is a random, positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

func marshalKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode the key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// parseCertPEM parses the first certificate of a PEM file.
func parseCertPEM(b []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no PEM CERTIFICATE in it")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

// parseKeyPEM parses the first private key of a PEM file: PKCS #8, SEC 1
// (EC) or PKCS #1 (RSA), so that a CA made by other tools serves too.
func parseKeyPEM(b []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no PEM private key in it (an encrypted key must be decrypted first)")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("a %T cannot sign certificates", key)
		}
		return s, nil
	}
}

// outFile is a file writeFiles writes.
type outFile struct {
	name string
	data []byte
	mode os.FileMode
}

// writeFiles writes files into dir with exactly their modes, replacing any
// existing ones: each goes to a temporary file first, and all are renamed
// into place once all are written, so a failure leaves no half pair.
func writeFiles(dir string, files []outFile) error {
	tmps := make([]string, 0, len(files))
	defer func() {
		for _, t := range tmps {
			os.Remove(t) // no-op once renamed
		}
	}()
	for _, f := range files {
		tmp, err := os.CreateTemp(dir, "."+f.name+".tmp*")
		if err != nil {
			return err
		}
		tmps = append(tmps, tmp.Name())
		_, err = tmp.Write(f.data)
		if err == nil {
			err = tmp.Chmod(f.mode)
		}
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", filepath.Join(dir, f.name), err)
		}
	}
	for i, f := range files {
		if err := os.Rename(tmps[i], filepath.Join(dir, f.name)); err != nil {
			return err
		}
	}
	return nil
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
