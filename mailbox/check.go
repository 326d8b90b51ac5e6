package mailbox

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/caseintake/caseintake/config"
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

// Check dials, logs in and checks the folders of one mailbox, for
// `caseintake check`. It returns one *CheckError per problem (nil when all
// is well): connection refused or unreachable, TLS certificate not
// trusted, expired or for another host (naming the x509 reason), STARTTLS
// or TLS mismatches, authentication failed (naming the username, never the
// password), the main folder missing. The processed and quarantine folders
// are created when missing, as the worker would; failing to create one is
// a problem too.
func Check(ctx context.Context, cfg config.Mailbox) []error {
	cfg.ApplyDefaults()
	problem := func(err error, format string, args ...any) error {
		return &CheckError{Mailbox: cfg.Name, Addr: serverAddr(cfg.IMAP), Msg: fmt.Sprintf(format, args...), Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()

	c, _, err := dial(ctx, cfg.IMAP, nil)
	if err != nil {
		return []error{describeDialError(cfg, err, problem)}
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	var errs []error
	if _, err := c.Status(cfg.Folder, &imap.StatusOptions{UIDValidity: true}).Wait(); err != nil {
		var imapErr *imap.Error
		if errors.As(err, &imapErr) {
			errs = append(errs, problem(err, "folder %q does not exist or cannot be opened (server said: %s); create it on the server or correct this mailbox's folder key",
				cfg.Folder, imapText(imapErr)))
		} else {
			errs = append(errs, problem(err, "checking folder %q failed: %v", cfg.Folder, err))
		}
	}
	for _, f := range []struct{ key, name string }{
		{"processed_folder", cfg.ProcessedFolder},
		{"quarantine_folder", cfg.QuarantineFolder},
	} {
		if f.name == cfg.Folder {
			errs = append(errs, problem(nil, "%s %q is the folder being read; it must be a different folder", f.key, f.name))
			continue
		}
		if err := ensureFolder(c, f.name); err != nil {
			errs = append(errs, problem(err, "%s %q is missing and could not be created (%v); create it on the server or change %s",
				f.key, f.name, err, f.key))
		}
	}
	if ctx.Err() == nil {
		c.Logout().Wait()
	}
	return errs
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
