package xenmig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"
)

// refusalLog logs the connections a Listener refuses, with the reason, at
// most a few a second: a CA mistake must show on the destination, and a
// flood must not fill its log. What it leaves out is counted in the next
// line it writes.
type refusalLog struct {
	log   *logrus.Entry
	limit *rate.Limiter

	mu         sync.Mutex
	suppressed int
}

func newRefusalLog(log *logrus.Entry) *refusalLog {
	return &refusalLog{log: log, limit: rate.NewLimiter(rate.Every(time.Second), 5)}
}

// refused records that the peer at addr was refused, and why.
func (r *refusalLog) refused(addr net.Addr, reason string) {
	r.mu.Lock()
	if !r.limit.Allow() {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	n := r.suppressed
	r.suppressed = 0
	r.mu.Unlock()
	e := r.log.WithFields(logrus.Fields{"peer": addr.String(), "reason": reason})
	if n > 0 {
		e = e.WithField("unlogged_refusals", n)
	}
	e.Warn("refused a connection")
}

// tlsRefusal says why a TLS handshake with a sender failed, for the
// receiver's log.
func tlsRefusal(err error) string {
	var rh tls.RecordHeaderError
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &rh):
		return "not TLS: a plaintext sender (tls.insecure_plaintext set there) or not xenmig"
	case errors.As(err, &ua):
		return "the sender's certificate is signed by an unknown certificate authority: " + err.Error()
	case errors.As(err, &ci):
		return "the sender's certificate is invalid: " + err.Error()
	case strings.Contains(err.Error(), "didn't provide a certificate"):
		return "the sender presented no certificate"
	case strings.Contains(err.Error(), "remote error"):
		// The sender refused this receiver's certificate with an alert.
		return "the sender refused this receiver's certificate (" + err.Error() + "): our certificate is not signed by its CA"
	case errors.Is(err, io.EOF):
		return "the peer closed the connection during the TLS handshake"
	}
	return "TLS handshake failed: " + err.Error()
}

// dialDiagnosis explains, for the sender's operator, a failure of a
// connection's TLS handshake or first exchange: which side's certificate
// was refused, or that the two ends disagree about TLS. It returns "" when
// it has nothing to add.
func dialDiagnosis(err error, useTLS bool) string {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &ua):
		return "the receiver's certificate is not signed by our CA (tls.ca): check that both hosts' certificates come from the same `xenmig certs` CA"
	case errors.As(err, &hn):
		return "the receiver's certificate does not name the address we dialed: " + hn.Error()
	case errors.As(err, &ci):
		return "the receiver's certificate is invalid: " + ci.Error()
	case strings.Contains(err.Error(), "remote error: tls: unknown certificate authority"):
		return "the receiver refused OUR certificate: it is not signed by a CA the receiver trusts (check tls.cert here and tls.ca there)"
	case strings.Contains(err.Error(), "remote error: tls: certificate required"):
		return "the receiver requires a client certificate and we sent none: set tls.cert and tls.key"
	case strings.Contains(err.Error(), "remote error: tls: bad certificate"),
		strings.Contains(err.Error(), "remote error: tls: expired certificate"),
		strings.Contains(err.Error(), "remote error: tls: unsupported certificate"):
		return "the receiver refused OUR certificate (" + err.Error() + "): check tls.cert here"
	case strings.Contains(err.Error(), "remote error"):
		return "the receiver ended the TLS handshake"
	case errors.As(err, &rh):
		return "the receiver does not speak TLS: it may run with tls.insecure_plaintext"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET):
		if useTLS {
			return "the receiver closed the connection during the handshake: it may run with tls.insecure_plaintext, or refused our certificate"
		}
		return "the receiver closed the connection after our plaintext hello: it may expect TLS (drop --insecure-plaintext and configure tls), or it refused us (its log says why)"
	}
	return ""
}
