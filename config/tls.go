package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"
)

// TLSConfig is the client TLS configuration for s: verify the server's
// certificate for s.Host against the system roots plus s.CAFile, TLS 1.2
// or newer.
func (s Server) TLSConfig() (*tls.Config, error) {
	cfg := &tls.Config{ServerName: s.Host, MinVersion: tls.VersionTLS12}
	if s.CAFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", s.CAFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// CertExpiryWarning is how close to its expiry a server's certificate
// makes `caseintake check` warn.
const CertExpiryWarning = 14 * 24 * time.Hour

// ExpiringSoon returns one line for every certificate of the server's
// verified chain that expires within CertExpiryWarning after now. (An
// expired certificate fails verification before this is asked.)
func ExpiringSoon(cs tls.ConnectionState, now time.Time) []string {
	if len(cs.VerifiedChains) == 0 {
		return nil
	}
	var out []string
	for i, c := range cs.VerifiedChains[0] {
		left := c.NotAfter.Sub(now)
		if left > CertExpiryWarning {
			continue
		}
		what := "TLS certificate"
		if i > 0 {
			what = "TLS CA certificate"
		}
		name := c.Subject.CommonName
		if name == "" && len(c.DNSNames) > 0 {
			name = c.DNSNames[0]
		}
		if name == "" && len(c.IPAddresses) > 0 {
			name = c.IPAddresses[0].String()
		}
		in := fmt.Sprintf("%d days", int(left.Hours()/24))
		if left < 48*time.Hour {
			in = fmt.Sprintf("%d hours", int(left.Hours()))
		}
		out = append(out, fmt.Sprintf("%s %q expires on %s (in %s): renew it on the server before then",
			what, name, c.NotAfter.UTC().Format("2006-01-02 15:04 MST"), in))
	}
	return out
}

// NotAfter returns when the server's certificate (the leaf of the verified
// chain) expires; zero without TLS.
func NotAfter(cs tls.ConnectionState) time.Time {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return time.Time{}
	}
	return cs.VerifiedChains[0][0].NotAfter
}
