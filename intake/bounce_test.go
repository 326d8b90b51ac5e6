package intake

import (
	"strings"
	"testing"

	"github.com/caseintake/caseintake/store"
)

func dsn(msgID, aboutID, failed string) string {
	return "From: Mail Delivery System <MAILER-DAEMON@mx.customer.example>\r\n" +
		"To: support@example.test\r\nSubject: Undelivered Mail Returned to Sender\r\n" +
		"Date: Mon, 23 Nov 2026 08:05:00 +0000\r\nMessage-ID: <" + msgID + ">\r\nAuto-Submitted: auto-replied\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n" +
		"--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n" +
		"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.customer.example\r\n\r\n" +
		"Final-Recipient: rfc822; " + failed + "\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n" +
		"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: support@example.test\r\nTo: " + failed + "\r\nMessage-ID: <" + aboutID + ">\r\nSubject: [Case #1] Printer\r\n\r\n" +
		"--B--\r\n"
}

// A delivery failure report about our acknowledgement is attached to the
// case (found through the original Message-ID inside the report), marks
// the requester undeliverable on that notification and in the case's
// events, and opens no case and sends nothing.
func TestBounceOfOurAckAttachedToItsCase(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.deliver(supportAddr, msg("alice@customer.example", "Printer", "p1@customer.example"))
	first := h.waitDecided("p1@customer.example", 1)
	sent := h.waitSent(2)
	ackID := strings.Trim(sent[0].Header.Get("Message-ID"), "<>")

	h.deliver(supportAddr, dsn("dsn1@mx.customer.example", ackID, "alice@customer.example"))
	d := h.waitDecided("dsn1@mx.customer.example", 1)
	if d.Outcome != store.OutcomeAppended || d.CaseID != first.CaseID {
		t.Fatalf("bounce: %s on case #%d (%s), want case:appended on #%d", d.Outcome, d.CaseID, d.Signal, first.CaseID)
	}
	if !strings.Contains(d.Signal, "alice@customer.example undeliverable") || !strings.Contains(d.Signal, ackID) {
		t.Errorf("signal %q does not name the recipient and our Message-ID", d.Signal)
	}
	if n := len(h.allCases()); n != 1 {
		t.Fatalf("%d cases, want 1", n)
	}
	c := h.caseByID(first.CaseID)
	if c.Status != "open" || len(c.Messages) < 2 || c.Messages[len(c.Messages)-1].MessageID != "dsn1@mx.customer.example" {
		t.Fatalf("case #%d: status %s, %d messages; want the report attached and the case unchanged otherwise", c.ID, c.Status, len(c.Messages))
	}
	marked := false
	for _, e := range c.Events {
		if e.Kind == "notification_failed" && e.To == "alice@customer.example" {
			marked = true
		}
	}
	if !marked {
		t.Errorf("no notification_failed event for alice in %+v", c.Events)
	}
	out, err := h.store.Outbox(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		if strings.Trim(o.MessageID, "<>") == ackID && (len(o.Failed) != 1 || o.Failed[0] != "alice@customer.example") {
			t.Errorf("ack row Failed = %v, want [alice@customer.example]", o.Failed)
		}
	}
	h.waitSent(2) // nothing new: no ack to the MAILER-DAEMON, no team mail
}

// A bounce without a structured report that quotes our Message-ID in its
// text is matched too; one about a message we never sent is ignored.
func TestBounceMatchedByQuotedMessageIDAndUnknownIgnored(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.deliver(supportAddr, msg("alice@customer.example", "Printer", "p2@customer.example"))
	first := h.waitDecided("p2@customer.example", 1)
	sent := h.waitSent(2)
	ackID := strings.Trim(sent[0].Header.Get("Message-ID"), "<>")

	plain := "From: MAILER-DAEMON@old.customer.example\r\nTo: support@example.test\r\nSubject: failure notice\r\n" +
		"Message-ID: <qmail1@old.customer.example>\r\n\r\nHi. This is the qmail-send program.\r\n" +
		"<alice@customer.example>:\r\nSorry, no mailbox here by that name.\r\n\r\n--- Below this line is a copy of the message.\r\n\r\n" +
		"From: support@example.test\r\nMessage-ID: <" + ackID + ">\r\nSubject: [Case #1] Printer\r\n"
	h.deliver(supportAddr, plain)
	if d := h.waitDecided("qmail1@old.customer.example", 1); d.Outcome != store.OutcomeAppended || d.CaseID != first.CaseID {
		t.Fatalf("quoting bounce: %s on #%d (%s)", d.Outcome, d.CaseID, d.Signal)
	}
	h.deliver(supportAddr, dsn("dsn2@mx.other.example", "someone-else@other.example", "x@other.example"))
	if d := h.waitDecided("dsn2@mx.other.example", 1); d.Outcome != store.OutcomeIgnored+":automated" || d.CaseID != 0 {
		t.Fatalf("bounce about a stranger's mail: %s on #%d, want ignored:automated", d.Outcome, d.CaseID)
	}
	if n := len(h.allCases()); n != 1 {
		t.Fatalf("%d cases, want 1", n)
	}
	h.waitSent(2)
}
