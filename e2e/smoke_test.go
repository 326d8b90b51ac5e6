//go:build e2e

package e2e

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// These tests prove the harness itself; caseintake's scenarios build on it.

const delivery = 20 * time.Second // generous: delivery normally takes well under a second

// Mail handed to Postfix lands in the Maildir and is served over IMAP with
// STARTTLS and with implicit TLS, both verified against the stack's CA.
func TestStackDeliversAndServesIMAP(t *testing.T) {
	s := sharedStack(t)
	subject := "smoke delivery " + NewMessageID("subj")
	id := s.Send(t, "customer", "support", subject, "Hello support,\nmy printer is on fire.\n")

	got := s.WaitForMessage(t, "support", MessageIDIs(id), delivery)
	if got.Subject != subject || got.From != "customer@example.test" || !slices.Contains(got.To, "support@example.test") {
		t.Errorf("over STARTTLS: got %s, to %v", got, got.To)
	}
	if !strings.Contains(string(got.Raw), "my printer is on fire.\r\n") {
		t.Errorf("body not in raw message:\n%s", got.Raw)
	}

	viaIMAPS := s.MailboxIMAPS(t, "support").WaitFor(MessageIDIs(id), delivery)
	if viaIMAPS.UID != got.UID || string(viaIMAPS.Raw) != string(got.Raw) {
		t.Errorf("over IMAPS: got %s, want the same message as over STARTTLS (%s)", viaIMAPS, got)
	}

	t.Run("untrusted certificate is refused", func(t *testing.T) {
		c, err := imapclient.DialTLS(s.IMAPSAddr(), &imapclient.Options{
			TLSConfig: &tls.Config{ServerName: "localhost"}, // system roots only
		})
		if err == nil {
			c.Close()
			t.Fatal("TLS handshake succeeded without the stack's CA")
		}
		if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("error %v does not mention the certificate", err)
		}
	})

	// Dovecot counts a loopback connection as secure, so the stack allows
	// plaintext LOGIN without TLS from 127.0.0.1 (caseintake's security:
	// none can be tested); STARTTLS and IMAPS are there for everything else.
	t.Run("plaintext login on loopback is allowed", func(t *testing.T) {
		c, err := imapclient.DialInsecure(s.IMAPAddr(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login("support", Password).Wait(); err != nil {
			t.Fatalf("plaintext login as %q (default realm example.test): %v", "support", err)
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		c.Logout().Wait()
	})

	t.Run("wrong password is refused", func(t *testing.T) {
		c, err := imapclient.DialStartTLS(s.IMAPAddr(), &imapclient.Options{TLSConfig: s.TLSConfig(t)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login("support@example.test", "wrong").Wait(); err == nil {
			t.Fatal("login with a wrong password succeeded")
		}
	})
}

// A reply made by a real mail client (s-nail) reaches the original sender
// and names the original in In-Reply-To and References.
func TestRealClientReply(t *testing.T) {
	s := sharedStack(t)
	subject := "[Case #" + NewMessageID("c") + "] Printer on fire"
	origID := s.Send(t, "support", "customer", subject, "We are on it.\n", "Auto-Submitted: auto-replied")
	orig := s.WaitForMessage(t, "customer", MessageIDIs(origID), delivery)
	if orig.AutoSubmitted != "auto-replied" {
		t.Errorf("Auto-Submitted = %q, want auto-replied", orig.AutoSubmitted)
	}

	sent := s.ReplyWithMailClient(t, "customer", orig.Raw, "Thanks, it is still burning.", &ReplyOptions{Quote: true})
	got := s.WaitForMessage(t, "support", InReplyToIs(origID), delivery)

	if got.MessageID != sent.MessageID {
		t.Errorf("Message-ID = %q, want s-nail's %q", got.MessageID, sent.MessageID)
	}
	if got.InReplyTo != origID || !slices.Contains(got.References, origID) {
		t.Errorf("In-Reply-To = %q, References = %v; want both to name %q", got.InReplyTo, got.References, origID)
	}
	if got.Subject != "Re: "+subject {
		t.Errorf("Subject = %q, want %q", got.Subject, "Re: "+subject)
	}
	if got.From != "customer@example.test" || got.AutoSubmitted != "" {
		t.Errorf("got %s", got)
	}
	body := string(got.Raw)
	if !strings.Contains(body, "Thanks, it is still burning.") || !strings.Contains(body, "> We are on it.") {
		t.Errorf("reply body lacks the text or the quote:\n%s", body)
	}
}

// caseintake sends notifications with STARTTLS and AUTH; Postfix offers both
// (checking passwords against Dovecot) and refuses to relay anywhere else.
func TestSMTPStartTLSAuthAndNoRelay(t *testing.T) {
	s := sharedStack(t)
	c, err := smtp.DialStartTLS(s.SMTPAddr(), s.TLSConfig(t))
	if err != nil {
		t.Fatalf("smtp starttls: %v", err)
	}
	defer c.Close()
	if err := c.Auth(SMTPAuthClient("support")); err != nil {
		t.Fatalf("smtp auth: %v", err)
	}
	err = c.Mail("support@example.test", nil)
	if err == nil {
		err = c.Rcpt("someone@elsewhere.invalid", nil)
	}
	var smtpErr *smtp.SMTPError
	if !errors.As(err, &smtpErr) || smtpErr.Code != 554 {
		t.Errorf("RCPT to another domain: %v, want 554 relay access denied", err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	id := NewMessageID("notify")
	raw := "From: support@example.test\r\nTo: oncall@example.test\r\nSubject: notification " + id +
		"\r\nMessage-ID: <" + id + ">\r\nAuto-Submitted: auto-generated\r\n\r\nNew case.\r\n"
	if err := c.SendMail("support@example.test", []string{"oncall@example.test"}, strings.NewReader(raw)); err != nil {
		t.Fatalf("send: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	got := s.WaitForMessage(t, "oncall", MessageIDIs(id), delivery)
	if got.AutoSubmitted != "auto-generated" {
		t.Errorf("got %s", got)
	}

	t.Run("wrong password is refused", func(t *testing.T) {
		c, err := smtp.DialStartTLS(s.SMTPAddr(), s.TLSConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Auth(sasl.NewPlainClient("", Addr("support"), "wrong")); err == nil {
			t.Fatal("AUTH with a wrong password succeeded")
		}
	})
}

// stop ends every process of the stack: both masters and all their children.
func TestStackStopsItsProcesses(t *testing.T) {
	s := startStack(t)
	// Make Postfix and Dovecot fork their delivery and login processes too.
	id := s.Send(t, "stranger", "infra", "before stop", "x")
	s.Mailbox(t, "infra").WaitFor(MessageIDIs(id), delivery)

	pids := s.PIDs()
	if len(pids) < 4 {
		t.Fatalf("expected both masters and some children, found pids %v", pids)
	}
	t.Logf("processes of the stack: %v", pids)
	t0 := time.Now()
	s.Stop(t)
	t.Logf("stop took %v", time.Since(t0).Round(time.Millisecond))
	for _, pid := range pids {
		if processAlive(pid) {
			t.Errorf("pid %d still runs after stop", pid)
		}
	}
	for _, addr := range []string{s.IMAPAddr(), s.IMAPSAddr(), s.SMTPAddr()} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections", addr)
		}
	}
	s.Stop(t) // a second stop is harmless
}

// Mail accepted while Dovecot is down waits in Postfix's queue, survives a
// Postfix restart, and is delivered once both run again.
func TestPostfixOutageQueues(t *testing.T) {
	s := startStack(t)
	s.StopDovecot(t)
	id := s.Send(t, "customer", "team", "queued during outage", "x") // accepted: queued
	// Stop Postfix once the failed attempt has ended, not while it is under
	// way; the flush after the restart retries the mail at once even when
	// the queue manager had not yet filed it as deferred ("skipped, still
	// being delivered" in one run, and no retry for 20 s).
	s.WaitForDeferral(t, 20*time.Second)
	s.StopPostfix(t)
	if c, err := net.DialTimeout("tcp", s.SMTPAddr(), time.Second); err == nil {
		c.Close()
		t.Fatal("SMTP still accepts connections with Postfix stopped")
	}
	s.StartDovecot(t)
	s.StartPostfix(t)
	s.FlushPostfix(t)
	t0 := time.Now()
	s.WaitForMessage(t, "team", MessageIDIs(id), delivery)
	t.Logf("queued mail delivered %v after Postfix came back", time.Since(t0).Round(time.Millisecond))
}

// A test binary that dies without running any cleanup (as on a -timeout
// panic or a kill) still leaves no process behind: the stack's reaper
// notices that the binary is gone and stops the stack.
func TestStackStoppedWhenTestBinaryDies(t *testing.T) {
	if os.Getenv("E2E_DIE_WITH_STACK") == "1" {
		s := startStack(t)
		fmt.Printf("STACK %s", s.Dir)
		for _, pid := range s.PIDs() {
			fmt.Printf(" %d", pid)
		}
		fmt.Println()
		os.Exit(3) // no cleanup, no TestMain epilogue
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStackStoppedWhenTestBinaryDies$", "-test.v")
	cmd.Env = append(os.Environ(), "E2E_DIE_WITH_STACK=1", "MAILSTACK_KEEP=")
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("child: %v, want exit status 3\n%s", err, out)
	}
	var dir string
	var pids []int
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "STACK" {
			continue
		}
		dir = f[1]
		for _, p := range f[2:] {
			pid, _ := strconv.Atoi(p)
			pids = append(pids, pid)
		}
	}
	if dir == "" || len(pids) < 2 {
		t.Fatalf("child reported no running stack:\n%s", out)
	}
	defer os.RemoveAll(dir)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var left []int
		for _, pid := range pids {
			if processAlive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "reaper.log"))
			t.Fatalf("pids %v of the dead binary's stack still run; reaper.log:\n%s", left, log)
		}
		time.Sleep(pollInterval)
	}
	for {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reaper left %s behind", dir)
		}
		time.Sleep(pollInterval)
	}
}
