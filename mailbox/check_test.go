package mailbox

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/caseintake/caseintake/devmail"
)

// wantOneLine asserts exactly one error, on one line, naming the mailbox
// and address and containing every fragment.
func wantOneLine(t *testing.T, errs []error, addr string, fragments ...string) string {
	t.Helper()
	if len(errs) != 1 {
		t.Fatalf("got %d errors: %v", len(errs), errs)
	}
	msg := errs[0].Error()
	t.Log(msg)
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("not one line: %q", msg)
	}
	for _, f := range append([]string{`mailbox "support"`, addr}, fragments...) {
		if !strings.Contains(msg, f) {
			t.Errorf("error lacks %q: %s", f, msg)
		}
	}
	var ce *CheckError
	if !errors.As(errs[0], &ce) {
		t.Errorf("not a *CheckError: %T", errs[0])
	}
	return msg
}

func ctx10s(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

func TestCheckOK(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	deliver(t, srv, "INBOX", testMessage(1, "waiting"))
	r := Check(ctx10s(t), mailboxConfig(srv))
	if len(r.Problems)+len(r.Warnings) != 0 {
		t.Fatalf("problems %v, warnings %v", r.Problems, r.Warnings)
	}
	want := "logged in as " + testUser + "; INBOX has 1 messages; Processed will be created at start-up; Quarantine will be created at start-up"
	if got := strings.Join(r.Verified, "; "); got != want {
		t.Errorf("verified %q\nwant     %q", got, want)
	}
	// Check changed nothing: the folders are still missing, and the
	// probe folders are gone.
	if folders := srv.Folders(testUser); len(folders) != 1 || folders[0] != "INBOX" {
		t.Errorf("folders after check: %v", folders)
	}
	// With the folders in place, check says so.
	srv.CreateFolder(testUser, "Processed")
	srv.CreateFolder(testUser, "Quarantine")
	r = Check(ctx10s(t), mailboxConfig(srv))
	if len(r.Problems) != 0 || !strings.Contains(strings.Join(r.Verified, "; "), "Processed exists; Quarantine exists") {
		t.Fatalf("second check: %v %v", r.Problems, r.Verified)
	}
}

// A missing processed folder that the account may not create is a
// problem; an existing one needs no create right.
func TestCheckCannotCreateFolder(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	srv.CreateFolder(testUser, "Quarantine")
	srv.RefuseCreate(true)
	wantOneLine(t, Check(ctx10s(t), mailboxConfig(srv)).Problems, srv.IMAPAddr(),
		`processed_folder "Processed" does not exist, and this account may not create folders`, "NOPERM", `create "Processed" on the server`)
}

// A certificate that expires within 14 days is a warning, not a problem.
func TestCheckCertificateExpiringSoon(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name     string
		notAfter time.Time
		warn     string
	}{
		{"in 3 days", now.Add(3*24*time.Hour + time.Hour), "(in 3 days): renew it on the server before then"},
		{"in 90 days", now.Add(90 * 24 * time.Hour), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tlsCfg, ca := selfSignedCA(t, "127.0.0.1", now.Add(-time.Hour), tc.notAfter)
			srv := startServer(t, devmail.Options{TLSConfig: tlsCfg, ImplicitTLS: true})
			cfg := mailboxConfig(srv)
			cfg.IMAP.Security, cfg.IMAP.CAFile = "tls", ca
			r := Check(ctx10s(t), cfg)
			if len(r.Problems) != 0 {
				t.Fatalf("problems: %v", r.Problems)
			}
			if tc.warn == "" {
				if len(r.Warnings) != 0 {
					t.Fatalf("warnings: %v", r.Warnings)
				}
				return
			}
			wantOneLine(t, r.Warnings, srv.IMAPAddr(), "TLS", "certificate", tc.warn, tc.notAfter.UTC().Format("2006-01-02"))
			if !strings.Contains(strings.Join(r.Verified, "; "), "TLS certificate valid until "+tc.notAfter.UTC().Format("2006-01-02")) {
				t.Errorf("verified: %v", r.Verified)
			}
		})
	}
}

func TestCheckWrongPassword(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	cfg := mailboxConfig(srv)
	cfg.IMAP.Password = "hunter2-wrong"
	msg := wantOneLine(t, Check(ctx10s(t), cfg).Problems, srv.IMAPAddr(), "authentication failed", `"`+testUser+`"`, "imap.password")
	if strings.Contains(msg, "hunter2") {
		t.Fatalf("password leaked: %s", msg)
	}
}

func TestCheckConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close() // nothing listens there now
	srv := startServer(t, devmail.Options{})
	cfg := mailboxConfig(srv)
	cfg.IMAP.Port = addr.Port
	wantOneLine(t, Check(ctx10s(t), cfg).Problems, addr.String(), "connection refused", "imap.port")
}

func TestCheckFolderMissing(t *testing.T) {
	srv := startServer(t, devmail.Options{})
	cfg := mailboxConfig(srv)
	cfg.Folder = "Support"
	wantOneLine(t, Check(ctx10s(t), cfg).Problems, srv.IMAPAddr(), `folder "Support" does not exist`)
}

func TestCheckTLS(t *testing.T) {
	now := time.Now()
	good, goodCA := selfSignedCA(t, "127.0.0.1", now.Add(-time.Hour), now.Add(time.Hour))
	expired, expiredCA := selfSignedCA(t, "127.0.0.1", now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	otherHost, otherHostCA := selfSignedCA(t, "127.0.0.2", now.Add(-time.Hour), now.Add(time.Hour))

	for _, tc := range []struct {
		name     string
		server   devmail.Options
		security string
		caFile   string
		want     []string // nil: no error
	}{
		{"implicit, untrusted", devmail.Options{TLSConfig: good, ImplicitTLS: true}, "tls", "",
			[]string{"x509: certificate signed by unknown authority", "imap.ca_file"}},
		{"implicit, ca_file", devmail.Options{TLSConfig: good, ImplicitTLS: true}, "tls", goodCA, nil},
		{"starttls, untrusted", devmail.Options{TLSConfig: good}, "starttls", "",
			[]string{"x509: certificate signed by unknown authority", "imap.ca_file"}},
		{"starttls, ca_file", devmail.Options{TLSConfig: good}, "starttls", goodCA, nil},
		{"expired", devmail.Options{TLSConfig: expired, ImplicitTLS: true}, "tls", expiredCA,
			[]string{"expired", "x509"}},
		{"wrong host", devmail.Options{TLSConfig: otherHost, ImplicitTLS: true}, "tls", otherHostCA,
			[]string{"not valid for host", "x509", "imap.host"}},
		{"tls to a plaintext port", devmail.Options{}, "tls", goodCA,
			[]string{"did not answer with TLS", "imap.security"}},
		{"starttls not offered", devmail.Options{}, "starttls", goodCA,
			[]string{"STARTTLS", "imap.security"}},
		{"plaintext login refused", devmail.Options{TLSConfig: good}, "none", "",
			[]string{"without TLS", "imap.security"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, tc.server)
			cfg := mailboxConfig(srv)
			cfg.IMAP.Security = tc.security
			cfg.IMAP.CAFile = tc.caFile
			errs := Check(ctx10s(t), cfg).Problems
			if tc.want == nil {
				if len(errs) != 0 {
					t.Fatalf("errors: %v", errs)
				}
				return
			}
			wantOneLine(t, errs, srv.IMAPAddr(), tc.want...)
		})
	}
}

// The worker itself works over TLS with ca_file.
func TestWorkerOverTLS(t *testing.T) {
	good, goodCA := selfSignedCA(t, "127.0.0.1", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	srv := startServer(t, devmail.Options{TLSConfig: good, ImplicitTLS: true})
	deliver(t, srv, "INBOX", testMessage(1, "over TLS"))
	cfg := mailboxConfig(srv)
	cfg.IMAP.Security = "tls"
	cfg.IMAP.CAFile = goodCA
	cs := newCursors()
	startWorker(t, cfg, newHandler(nil), cs)
	cs.waitLastUID(t, "support", 1)
}
