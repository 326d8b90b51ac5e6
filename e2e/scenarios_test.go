//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

const wait = 30 * time.Second

// kind matches our notifications of one kind (X-Caseintake-Notification),
// which stays stable when template wording changes.
func kind(k string) func([]byte) bool { return HeaderIs("X-Caseintake-Notification", k) }

// caseOf waits for the decision about msgID and returns its case.
func caseOf(t *testing.T, d *Daemon, msgID, wantOutcome string) uint64 {
	t.Helper()
	dec := d.WaitDecided(msgID, wait)
	if dec.Outcome != wantOutcome {
		t.Fatalf("<%s>: outcome %s (%s), want %s", msgID, dec.Outcome, dec.Signal, wantOutcome)
	}
	return dec.CaseID
}

// TestScenarios runs the real binary against the shared Dovecot + Postfix,
// one daemon for all scenarios, with a one-hour poll interval: every new
// message must arrive through IMAP IDLE.
func TestScenarios(t *testing.T) {
	s := sharedStack(t)
	d := startDaemon(t, s, daemonOptions{})

	var requestID string
	var caseID uint64
	var ack *Message

	t.Run("1 request via swaks: one case, acknowledgement to the customer, team notified", func(t *testing.T) {
		subject := unique("Invoices do not export")
		requestID = s.Send(t, "customer", "support", subject, "Since this morning the PDF export fails.")
		caseID = caseOf(t, d, requestID, "case:new")
		ack = s.WaitForMessage(t, "customer", and(tagged(caseID), kind("ack"), InReplyToIs(requestID)), wait)
		if ack.AutoSubmitted != "auto-replied" || !strings.Contains(ack.Subject, subject) {
			t.Errorf("acknowledgement: %s", ack)
		}
		s.WaitForMessage(t, "team", and(tagged(caseID), kind("team_new")), wait)
		n := 0
		for _, c := range d.Cases() {
			if c.Subject == subject {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d cases with subject %q, want 1", n, subject)
		}
	})

	t.Run("2 Production Down and RFC 2047 Latin-1 Produktionsausfall: urgent, escalated", func(t *testing.T) {
		id := s.Send(t, "customer", "support", unique("Production Down: checkout"), "Nobody can order.")
		c := caseOf(t, d, id, "case:new")
		if got := d.Case(c).Priority; got != "urgent" {
			t.Fatalf("priority %s", got)
		}
		for _, u := range []string{"oncall", "infra"} {
			s.WaitForMessage(t, u, and(tagged(c), kind("urgent")), wait)
		}
		// "Produktionsausfall Werk München" in ISO-8859-1 quoted-printable.
		id = NewMessageID("de")
		s.SendSwaks(t, "--from", Addr("customer"), "--to", Addr("support"),
			"--header", "Message-Id: <"+id+">",
			"--header", fmt.Sprintf("Subject: =?ISO-8859-1?Q?AW:_Produktionsausfall_Werk_M=FCnchen_%d?=", time.Now().UnixNano()%1e6),
			"--header", "Content-Type: text/plain; charset=ISO-8859-1",
			"--body", "Linie 3 steht.")
		c = caseOf(t, d, id, "case:new")
		got := d.Case(c)
		if got.Priority != "urgent" || !strings.Contains(got.Subject, "Produktionsausfall Werk München") {
			t.Fatalf("German case: priority %s, subject %q", got.Priority, got.Subject)
		}
		s.WaitForMessage(t, "oncall", and(tagged(c), kind("urgent"), SubjectContains("München")), wait)
	})

	t.Run("3 the customer answers with a real mail client: same case", func(t *testing.T) {
		reply := s.ReplyWithMailClient(t, "customer", ack.Raw, "Here are more details.\nIt fails for credit notes too.", &ReplyOptions{Quote: true})
		if got := caseOf(t, d, reply.MessageID, "case:appended"); got != caseID {
			t.Fatalf("reply filed on case #%d, want #%d", got, caseID)
		}
	})

	t.Run("4 a reply that keeps only the subject tag: same case", func(t *testing.T) {
		id := s.Send(t, "customer", "support", fmt.Sprintf("AW: [Case #%d] more", caseID), "Forwarded by our gateway, headers stripped.")
		dec := d.WaitDecided(id, wait)
		if dec.Outcome != "case:appended" || dec.CaseID != caseID || !strings.Contains(dec.Signal, "subject tag") {
			t.Fatalf("decision %+v", dec)
		}
	})

	t.Run("5 solution provided, the customer replies: reopened, customer and team told", func(t *testing.T) {
		d.CLI("cases", "set-status", fmt.Sprint(caseID), "solution_provided", "--note", "Fixed in 4.2.1")
		s.WaitForMessage(t, "customer", and(tagged(caseID), kind("status")), wait)
		id := s.Send(t, "customer", "support", fmt.Sprintf("Re: [Case #%d] still broken", caseID), "Still fails here.")
		dec := d.WaitDecided(id, wait)
		if dec.CaseID != caseID || !strings.Contains(dec.Signal, "reopened from solution_provided") {
			t.Fatalf("decision %+v", dec)
		}
		if st := d.Case(caseID).Status; st != "open" {
			t.Fatalf("status %s, want open", st)
		}
		s.WaitForMessage(t, "customer", and(tagged(caseID), kind("reopened")), wait)
		s.WaitForMessage(t, "team", and(tagged(caseID), kind("team_reopened")), wait)
	})

	t.Run("6 an out-of-office reply to the acknowledgement: no case, no reopen, no answer", func(t *testing.T) {
		d.CLI("cases", "set-status", fmt.Sprint(caseID), "solution_provided")
		before := len(d.Cases())
		id := s.Send(t, "customer", "support", "Automatic reply: "+ack.Subject, "I am out of the office until Monday.",
			"Auto-Submitted: auto-replied", "In-Reply-To: <"+ack.MessageID+">", "X-Autoreply: yes")
		dec := d.WaitDecided(id, wait)
		if dec.Outcome != "ignored:automated" {
			t.Fatalf("decision %+v", dec)
		}
		if st := d.Case(caseID).Status; st != "solution_provided" {
			t.Fatalf("status %s: an out-of-office reopened the case", st)
		}
		if n := len(d.Cases()); n != before {
			t.Fatalf("%d cases, was %d", n, before)
		}
		s.NoMessage(t, "customer", InReplyToIs(id), 3*time.Second)
	})

	t.Run("7 IMAP IDLE: a new message is a case within 2 s of Postfix accepting it", func(t *testing.T) {
		subject := unique("IDLE check")
		start := time.Now()
		id := s.Send(t, "customer", "support", subject, "ping")
		accepted := time.Since(start)
		for {
			if ds := d.Trace(id); len(ds) > 0 {
				break
			}
			if time.Since(start) > 10*time.Second {
				t.Fatal("no case within 10 s: IDLE did not wake the daemon (poll interval is 1h)")
			}
			time.Sleep(20 * time.Millisecond)
		}
		took := time.Since(start)
		t.Logf("swaks returned after %v; case committed %v after submission", accepted.Round(time.Millisecond), took.Round(time.Millisecond))
		if took > 2*time.Second {
			t.Fatalf("case committed %v after submission, want ≤ 2 s", took)
		}
	})
}

// TestTLSWithoutCAFileIsRefusedClearly: the stack's certificate is
// self-signed, so without ca_file `caseintake check` must fail with the
// x509 reason and the fix; with it, check passes.
func TestTLSWithoutCAFileIsRefusedClearly(t *testing.T) {
	s := sharedStack(t)
	bin := caseintakeBinary(t)
	cfg, _, _ := writeConfig(t, s, t.TempDir(), daemonOptions{noCAFile: true})
	d := &Daemon{Config: cfg, t: t, bin: bin}
	out, err := d.cliErr("check")
	if err == nil {
		t.Fatalf("check passed without ca_file:\n%s", out)
	}
	if !strings.Contains(out, "x509") || !strings.Contains(out, "ca_file") || !strings.Contains(out, fmt.Sprint(s.IMAPPort)) {
		t.Fatalf("check output should name the host, the x509 reason and ca_file:\n%s", out)
	}
	t.Logf("check without ca_file says: %s", strings.TrimSpace(out))
	cfg, _, _ = writeConfig(t, s, t.TempDir(), daemonOptions{})
	d = &Daemon{Config: cfg, t: t, bin: bin}
	if out, err := d.cliErr("check"); err != nil {
		t.Fatalf("check with ca_file: %v\n%s", err, out)
	}
}

// TestOutagesLoseNothing uses a private stack: Postfix stopped while cases
// arrive (8) and Dovecot restarted under the running daemon (9).
func TestOutagesLoseNothing(t *testing.T) {
	s := startStack(t)
	d := startDaemon(t, s, daemonOptions{pollInterval: "2s"})
	support := s.Mailbox(t, "support")

	// appendToSupport puts a request straight into support's INBOX, as the
	// LDA would, since Postfix is down.
	appendToSupport := func(subject string) string {
		id := NewMessageID("outage")
		raw := fmt.Sprintf("From: customer@example.test\r\nTo: support@example.test\r\nSubject: %s\r\nMessage-ID: <%s>\r\nDate: %s\r\n\r\nhelp\r\n",
			subject, id, time.Now().Format(time.RFC1123Z))
		cmd := support.Client.Append("INBOX", int64(len(raw)), &imap.AppendOptions{})
		if _, err := cmd.Write([]byte(raw)); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		return id
	}

	t.Run("8 Postfix stopped while cases arrive: notifications wait, then all arrive once", func(t *testing.T) {
		s.StopPostfix(t)
		var ids []string
		var cases []uint64
		for i := range 3 {
			id := appendToSupport(fmt.Sprintf("Outage request %d", i))
			ids = append(ids, id)
			cases = append(cases, caseOf(t, d, id, "case:new"))
		}
		for _, c := range cases {
			got := d.WaitCase(c, "a failed delivery attempt", wait, func(c Case) bool {
				for _, n := range c.Notifications {
					if n.Kind == "ack" && n.State == "pending" && n.Attempts > 0 {
						return true
					}
				}
				return false
			})
			for _, n := range got.Notifications {
				if n.State == "sent" {
					t.Fatalf("case #%d: %s sent while Postfix was down", c, n.Kind)
				}
			}
		}
		s.StartPostfix(t)
		// The first retry comes about 5 s after the failure; later ones back off.
		for i, c := range cases {
			s.WaitForMessage(t, "customer", and(tagged(c), kind("ack"), InReplyToIs(ids[i])), 90*time.Second)
		}
		for _, c := range cases {
			d.WaitCase(c, "outbox drained", wait, func(c Case) bool {
				for _, n := range c.Notifications {
					if n.State != "sent" {
						return false
					}
				}
				return true
			})
		}
		// None twice: exactly one acknowledgement per case in the mailbox.
		mb := s.Mailbox(t, "customer")
		for _, c := range cases {
			n := 0
			for _, m := range mb.Messages() {
				if and(tagged(c), kind("ack"))(m.Raw) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("case #%d: %d acknowledgements delivered, want 1", c, n)
			}
		}
	})

	t.Run("9 Dovecot restarted under the daemon: it reconnects, nothing lost or twice", func(t *testing.T) {
		before := appendToSupport("Before the restart")
		caseOf(t, d, before, "case:new")
		s.RestartDovecot(t)
		support = s.Mailbox(t, "support") // the old connection died with Dovecot
		after := appendToSupport("After the restart")
		c := caseOf(t, d, after, "case:new")
		s.WaitForMessage(t, "customer", and(tagged(c), kind("ack")), wait)
		if ds := d.Trace(before); len(ds) != 1 {
			t.Fatalf("message from before the restart decided %d times", len(ds))
		}
		if got := support.FolderMessages("INBOX"); len(got) != 0 {
			t.Fatalf("%d message(s) left in INBOX", len(got))
		}
		if got := support.FolderMessages("Processed"); len(got) < 5 {
			t.Fatalf("Processed holds %d messages, want the 5 of this test", len(got))
		}
	})
}
