package classify

import (
	"strings"
	"testing"
)

const dsnAboutOurAck = "From: Mail Delivery System <MAILER-DAEMON@mx.customer.example>\r\n" +
	"To: support@example.test\r\n" +
	"Subject: Undelivered Mail Returned to Sender\r\n" +
	"Message-ID: <dsn1@mx.customer.example>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n" +
	"--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n" +
	"--B\r\nContent-Type: message/delivery-status\r\n\r\n" +
	"Reporting-MTA: dns; mx.customer.example\r\n\r\n" +
	"Final-Recipient: rfc822; Alice@Customer.Example\r\nOriginal-Recipient: rfc822;alice@customer.example\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <alice@customer.example>: user unknown\r\n\r\n" +
	"Final-Recipient: rfc822; bob@customer.example\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n" +
	"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n" +
	"From: Example Support <support@example.test>\r\nTo: alice@customer.example\r\nSubject: [Case #7] Printer\r\nMessage-ID: <caseintake.7.1.ack@example.test>\r\n\r\n" +
	"--B--\r\n"

func TestDeliveryReportNamesOriginalAndFailedRecipients(t *testing.T) {
	m, err := Parse(strings.NewReader(dsnAboutOurAck), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if !m.Bounce || m.Automated == "" {
		t.Fatalf("not recognised as a bounce: bounce=%v automated=%q", m.Bounce, m.Automated)
	}
	r := m.Report
	if r == nil {
		t.Fatal("no delivery report")
	}
	if r.OriginalMessageID != "caseintake.7.1.ack@example.test" {
		t.Errorf("original Message-ID %q", r.OriginalMessageID)
	}
	if len(r.Failed) != 1 || r.Failed[0] != "alice@customer.example" {
		t.Errorf("failed recipients %v, want only alice (bob is merely delayed)", r.Failed)
	}
	if r.Status != "5.1.1" || !strings.Contains(r.Diagnostic, "user unknown") {
		t.Errorf("status %q diagnostic %q", r.Status, r.Diagnostic)
	}
}

// A message/rfc822 attachment outside a report (a forwarded mail) is not
// mistaken for a returned message.
func TestForwardedMessageIsNoDeliveryReport(t *testing.T) {
	raw := "From: alice@customer.example\r\nSubject: Fwd: look\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"X\"\r\n\r\n--X\r\nContent-Type: text/plain\r\n\r\nsee below\r\n" +
		"--X\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@y.example\r\nMessage-ID: <fwd@y.example>\r\n\r\nhi\r\n--X--\r\n"
	m, err := Parse(strings.NewReader(raw), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if m.Report != nil {
		t.Fatalf("report %+v from a forwarded message", m.Report)
	}
	if len(m.Attachments) != 1 || m.Attachments[0].Size == 0 {
		t.Fatalf("attachments %+v", m.Attachments)
	}
}
