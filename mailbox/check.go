package mailbox

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/oauth"
)

// checkTimeout bounds one Check when ctx has no earlier deadline.
const checkTimeout = time.Minute

// CheckError is one problem found by Check. Error is a single line naming
// the mailbox, the server's host:port and what to do; Unwrap gives the
// underlying error.
type CheckError struct {
	Mailbox string
	Addr    string // host:port
	Msg     string
	Err     error
}

// Error returns the one-line report.
func (e *CheckError) Error() string {
	return oneLine(fmt.Sprintf("mailbox %q (imap %s): %s", e.Mailbox, e.Addr, e.Msg))
}

// Unwrap returns the underlying error.
func (e *CheckError) Unwrap() error { return e.Err }

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.NewReplacer("\r", " ", "\n", " ").Replace(s)), " ")
}

// Report is what Check found about one mailbox.
type Report struct {
	// Problems are *CheckError values, each one line with the fix; any
	// problem fails `caseintake check`.
	Problems []error
	// Warnings are *CheckError values that need attention but do not stop
	// the daemon (a certificate about to expire).
	Warnings []error
	// Verified lists what was checked and found in order, for the summary
	// line (no secrets).
	Verified []string
}

// Check is `caseintake check` for one mailbox. It connects as the worker
// would (DNS, TCP, TLS with certificate chain and host name, login with
// password or OAuth token) and reports, one line each: connection refused
// or unreachable; TLS not trusted, expired or for another host (naming
// the x509 reason), or a certificate that expires within 14 days (a
// warning); a refused login or OAuth token (naming the username and the
// keys to fix, never a secret); the folder to read missing; a processed or
// quarantine folder that is missing and cannot be created. Check changes
// nothing on the server: whether a missing folder can be created is
// tested with a probe folder that is deleted again at once.
func Check(ctx context.Context, cfg config.Mailbox) *Report {
	cfg.ApplyDefaults()
	r := &Report{}
	problem := func(err error, format string, args ...any) error {
		return &CheckError{Mailbox: cfg.Name, Addr: serverAddr(cfg.IMAP), Msg: fmt.Sprintf(format, args...), Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()

	var tlsState *tls.ConnectionState
	c, _, err := dialObserved(ctx, cfg.IMAP, nil, func(cs tls.ConnectionState) { tlsState = &cs })
	if err != nil {
		r.Problems = append(r.Problems, describeDialError(cfg, err, problem))
		return r
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	if tlsState != nil {
		r.Verified = append(r.Verified, fmt.Sprintf("TLS certificate valid until %s", config.NotAfter(*tlsState).UTC().Format("2006-01-02")))
		for _, w := range config.ExpiringSoon(*tlsState, time.Now()) {
			r.Warnings = append(r.Warnings, problem(nil, "%s", w))
		}
	}
	login := "logged in as " + cfg.IMAP.Username
	if cfg.IMAP.IsOAuth() {
		login += " with " + oauth.Mechanism(cfg.IMAP.Auth)
	}
	r.Verified = append(r.Verified, login)

	if st, err := c.Status(cfg.Folder, &imap.StatusOptions{NumMessages: true}).Wait(); err != nil {
		var imapErr *imap.Error
		if errors.As(err, &imapErr) {
			r.Problems = append(r.Problems, problem(err, "folder %q does not exist or cannot be opened (server said: %s); create it on the server or correct this mailbox's folder key",
				cfg.Folder, imapText(imapErr)))
		} else {
			r.Problems = append(r.Problems, problem(err, "checking folder %q failed: %v", cfg.Folder, err))
		}
	} else if st.NumMessages != nil {
		r.Verified = append(r.Verified, fmt.Sprintf("%s has %d messages", cfg.Folder, *st.NumMessages))
	}
	for _, f := range []struct{ key, name string }{
		{"processed_folder", cfg.ProcessedFolder},
		{"quarantine_folder", cfg.QuarantineFolder},
	} {
		if ctx.Err() != nil {
			break
		}
		if f.name == cfg.Folder {
			r.Problems = append(r.Problems, problem(nil, "%s %q is the folder being read; it must be a different folder", f.key, f.name))
			continue
		}
		exists, err := folderExists(c, f.name)
		switch {
		case err != nil:
			r.Problems = append(r.Problems, problem(err, "cannot list folder %q (%v); check %s", f.name, err, f.key))
		case exists:
			r.Verified = append(r.Verified, f.name+" exists")
		default:
			probe, created, err := probeCreate(c, f.name)
			if !created {
				r.Problems = append(r.Problems, problem(err, "%s %q does not exist, and this account may not create folders there (creating the probe folder %q: %v); create %q on the server, or allow the account to create folders",
					f.key, f.name, probe, err, f.name))
				continue
			}
			r.Verified = append(r.Verified, f.name+" will be created at start-up")
			if err != nil {
				r.Warnings = append(r.Warnings, problem(err, "the probe folder %q was created but could not be deleted (%v); delete it by hand", probe, err))
			}
		}
	}
	if ctx.Err() == nil {
		c.Logout().Wait()
	}
	return r
}

// folderExists reports whether LIST finds name.
func folderExists(c *imapclient.Client, name string) (bool, error) {
	list, err := c.List("", name, nil).Collect()
	if err != nil {
		return false, err
	}
	for _, d := range list {
		if d.Mailbox == name || strings.EqualFold(name, "INBOX") && strings.EqualFold(d.Mailbox, "INBOX") {
			return true, nil
		}
	}
	return false, nil
}

// probeCreate tests whether a folder can be created where name would go
// (beside it, under the same parent) by creating a probe folder and
// deleting it again. created reports whether CREATE succeeded; err is the
// failure of CREATE, or of DELETE when created.
func probeCreate(c *imapclient.Client, name string) (probe string, created bool, err error) {
	b := make([]byte, 4)
	rand.Read(b)
	probe = "caseintake-check-" + hex.EncodeToString(b)
	if root, err := c.List("", "", nil).Collect(); err == nil && len(root) > 0 && root[0].Delim != 0 {
		if i := strings.LastIndexByte(name, byte(root[0].Delim)); i > 0 {
			probe = name[:i+1] + probe
		}
	}
	if err := c.Create(probe, nil).Wait(); err != nil {
		return probe, false, err
	}
	return probe, true, c.Delete(probe).Wait()
}

func imapText(e *imap.Error) string {
	if e.Code != "" {
		return fmt.Sprintf("%s [%s] %s", e.Type, e.Code, e.Text)
	}
	return fmt.Sprintf("%s %s", e.Type, e.Text)
}

// describeDialError turns a dial failure into one actionable line.
func describeDialError(cfg config.Mailbox, err error, problem func(error, string, ...any) error) error {
	s := cfg.IMAP
	stage := ""
	var de *dialError
	if errors.As(err, &de) {
		stage = de.stage
	}

	var (
		dnsErr      *net.DNSError
		unknownCA   x509.UnknownAuthorityError
		invalidCert x509.CertificateInvalidError
		hostErr     x509.HostnameError
		recordErr   tls.RecordHeaderError
		alertErr    tls.AlertError
		imapErr     *imap.Error
		netErr      net.Error
		refused     *tokenRefused
	)
	switch {
	case stage == stageConfig, stage == stageToken:
		return problem(err, "%v", de.err)
	case errors.As(err, &refused):
		return problem(err, "%v", refused)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errStepDeadline):
		return problem(err, "no answer in time during %s; check imap.host, imap.port and imap.security, and firewalls", stage)
	case errors.Is(err, context.Canceled):
		return problem(err, "check cancelled during %s", stage)
	case errors.Is(err, syscall.ECONNREFUSED):
		return problem(err, "connection refused: nothing accepts connections there; check imap.host and imap.port, and that the server is running")
	case errors.As(err, &dnsErr):
		return problem(err, "cannot resolve host %q (%v); check imap.host", s.Host, dnsErr)
	case errors.As(err, &unknownCA):
		return problem(err, "TLS certificate not trusted (%v); if the server uses a private or self-signed CA, set imap.ca_file to that CA's PEM certificate", unknownCA)
	case errors.As(err, &invalidCert):
		if invalidCert.Reason == x509.Expired {
			return problem(err, "TLS certificate expired or not yet valid (%v); renew the server's certificate or check the clocks", invalidCert)
		}
		return problem(err, "TLS certificate invalid (%v); fix the server's certificate, or set imap.ca_file to the CA that issued it", invalidCert)
	case errors.As(err, &hostErr):
		return problem(err, "TLS certificate is not valid for host %q (%v); set imap.host to a name the certificate lists", s.Host, hostErr)
	case errors.As(err, &recordErr):
		return problem(err, "server did not answer with TLS; check imap.security (tls usually on port 993, starttls on 143) and imap.port")
	case errors.As(err, &alertErr) && stage == stageTLS:
		return problem(err, "TLS handshake refused by the server (%v); check imap.security and imap.port", alertErr)
	case stage == stageTLS && errors.As(err, &imapErr):
		return problem(err, "server refused STARTTLS (%s); set imap.security to tls (port 993) or none as the server requires", imapText(imapErr))
	case stage == stageLogin && errors.As(err, &imapErr) &&
		(imapErr.Code == imap.ResponseCodePrivacyRequired || strings.Contains(strings.ToLower(imapErr.Text), "tls")):
		return problem(err, "server refuses to log in without TLS (%s); set imap.security to tls or starttls", imapText(imapErr))
	case stage == stageLogin && errors.As(err, &imapErr):
		return problem(err, "authentication failed for user %q (server said: %s); check imap.username and imap.password / imap.password_file",
			s.Username, imapText(imapErr))
	case errors.As(err, &netErr) && netErr.Timeout():
		return problem(err, "connection timed out during %s; check imap.host, imap.port and firewalls", stage)
	case stage == stageTLS:
		return problem(err, "TLS setup failed (%v); check imap.security and imap.port", unwrapDial(err))
	default:
		return problem(err, "%s failed: %v", stage, unwrapDial(err))
	}
}

func unwrapDial(err error) error {
	var de *dialError
	if errors.As(err, &de) {
		return de.err
	}
	return err
}
