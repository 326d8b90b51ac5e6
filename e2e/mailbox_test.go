//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"mime"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decode headers in any charset
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// pollInterval is how often WaitForMessage and NoMessage look at a mailbox.
const pollInterval = 100 * time.Millisecond

// Message is one message as the IMAP server has it.
type Message struct {
	UID           imap.UID
	Raw           []byte      // exact bytes (BODY[]; CRLF line ends as Dovecot serves them)
	Header        mail.Header // all header fields
	Subject       string      // decoded
	From          string      // address of the first From, e.g. "support@example.test"
	To            []string    // addresses
	MessageID     string      // without <>
	InReplyTo     string      // first msg-id of In-Reply-To, without <>
	References    []string    // without <>
	AutoSubmitted string      // raw Auto-Submitted value, "" if absent
}

// ParseMessage parses the header of a raw message into a Message (UID 0).
// Malformed fields are left empty rather than failing.
func ParseMessage(raw []byte) (*Message, error) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	m := &Message{Raw: raw, Header: mail.Header{Header: message.Header{Header: h}}}
	m.Subject, _ = m.Header.Subject()
	if from, err := m.Header.AddressList("From"); err == nil && len(from) > 0 {
		m.From = from[0].Address
	}
	if to, err := m.Header.AddressList("To"); err == nil {
		for _, a := range to {
			m.To = append(m.To, a.Address)
		}
	}
	m.MessageID, _ = m.Header.MessageID()
	if ids, _ := m.Header.MsgIDList("In-Reply-To"); len(ids) > 0 {
		m.InReplyTo = ids[0]
	}
	m.References, _ = m.Header.MsgIDList("References")
	m.AutoSubmitted = strings.TrimSpace(m.Header.Get("Auto-Submitted"))
	return m, nil
}

func (m *Message) String() string {
	return fmt.Sprintf("uid=%d from=%s subject=%q message-id=<%s> in-reply-to=<%s> auto-submitted=%q",
		m.UID, m.From, m.Subject, m.MessageID, m.InReplyTo, m.AutoSubmitted)
}

// Mailbox is a logged-in IMAP connection of one user. Its methods fail the
// test they were opened for, so call them from that test's goroutine.
type Mailbox struct {
	User   string // full address
	Client *imapclient.Client
	t      testing.TB
	close  func()
}

// Close logs out now rather than at t's cleanup; it may be called twice.
func (m *Mailbox) Close() { m.close() }

// TLSConfig trusts the stack's CA (and only it) for 127.0.0.1/localhost.
func (s *Stack) TLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatalf("read CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s: no PEM certificate", s.CAFile)
	}
	return &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

// Mailbox logs user in over IMAP with STARTTLS (verifying the server against
// CAFile) and selects INBOX. t's cleanup logs out.
func (s *Stack) Mailbox(t testing.TB, user string) *Mailbox {
	t.Helper()
	return s.dialMailbox(t, user, false)
}

// MailboxIMAPS is Mailbox over implicit TLS (the IMAPS port).
func (s *Stack) MailboxIMAPS(t testing.TB, user string) *Mailbox {
	t.Helper()
	return s.dialMailbox(t, user, true)
}

func (s *Stack) dialMailbox(t testing.TB, user string, implicitTLS bool) *Mailbox {
	t.Helper()
	opts := &imapclient.Options{
		TLSConfig:   s.TLSConfig(t),
		Dialer:      &net.Dialer{Timeout: 10 * time.Second},
		WordDecoder: &mime.WordDecoder{CharsetReader: message.CharsetReader},
	}
	var (
		c   *imapclient.Client
		err error
	)
	if implicitTLS {
		c, err = imapclient.DialTLS(s.IMAPSAddr(), opts)
	} else {
		c, err = imapclient.DialStartTLS(s.IMAPAddr(), opts)
	}
	if err != nil {
		t.Fatalf("imap dial (implicit TLS %v): %v", implicitTLS, err)
	}
	// No command has a deadline of its own; close the connection if the
	// server stops answering so the test fails instead of hanging.
	watchdog := time.AfterFunc(2*time.Minute, func() { c.Close() })
	closeOnce := sync.OnceFunc(func() {
		watchdog.Stop()
		c.Logout().Wait()
		c.Close()
	})
	t.Cleanup(closeOnce)
	if err := c.Login(Addr(user), Password).Wait(); err != nil {
		t.Fatalf("imap login %s: %v", Addr(user), err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("imap select INBOX: %v", err)
	}
	return &Mailbox{User: Addr(user), Client: c, t: t, close: closeOnce}
}

// Messages returns every message in INBOX, oldest first.
func (m *Mailbox) Messages() []*Message {
	m.t.Helper()
	return m.messagesAbove(0)
}

// FolderMessages returns every message in folder (then INBOX is selected
// again).
func (m *Mailbox) FolderMessages(folder string) []*Message {
	m.t.Helper()
	if _, err := m.Client.Select(folder, nil).Wait(); err != nil {
		m.t.Fatalf("imap select %s: %v", folder, err)
	}
	msgs := m.messagesAbove(0)
	if _, err := m.Client.Select("INBOX", nil).Wait(); err != nil {
		m.t.Fatalf("imap select INBOX: %v", err)
	}
	return msgs
}

// messagesAbove fetches the messages of the selected folder whose UID is
// above last.
func (m *Mailbox) messagesAbove(last imap.UID) []*Message {
	m.t.Helper()
	// NOOP lets the server report mail that arrived since the last command.
	if err := m.Client.Noop().Wait(); err != nil {
		m.t.Fatalf("imap noop: %v", err)
	}
	var set imap.UIDSet
	set.AddRange(last+1, 0)
	data, err := m.Client.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{set}}, nil).Wait()
	if err != nil {
		m.t.Fatalf("imap uid search: %v", err)
	}
	var uids []imap.UID
	for _, uid := range data.AllUIDs() {
		if uid > last { // "n:*" also matches the highest UID when it is below n
			uids = append(uids, uid)
		}
	}
	if len(uids) == 0 {
		return nil
	}
	section := &imap.FetchItemBodySection{Peek: true}
	bufs, err := m.Client.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{section},
	}).Collect()
	if err != nil {
		m.t.Fatalf("imap fetch: %v", err)
	}
	msgs := make([]*Message, 0, len(bufs))
	for _, b := range bufs {
		raw := b.FindBodySection(section)
		msg, err := ParseMessage(raw)
		if err != nil {
			m.t.Fatalf("uid %d: %v", b.UID, err)
		}
		msg.UID = b.UID
		msgs = append(msgs, msg)
	}
	return msgs
}

// WaitForMessage waits up to deadline for a message in user's INBOX for which
// match returns true, and returns it. It fails t, listing what the mailbox
// holds, if none comes.
func (s *Stack) WaitForMessage(t testing.TB, user string, match func(raw []byte) bool, deadline time.Duration) *Message {
	t.Helper()
	mb := s.Mailbox(t, user)
	defer mb.Close()
	return mb.WaitFor(match, deadline)
}

// WaitFor is WaitForMessage on an open mailbox.
func (m *Mailbox) WaitFor(match func(raw []byte) bool, deadline time.Duration) *Message {
	m.t.Helper()
	end := time.Now().Add(deadline)
	var seen []*Message
	var last imap.UID
	for {
		for _, msg := range m.messagesAbove(last) {
			last = max(last, msg.UID)
			seen = append(seen, msg)
			if match(msg.Raw) {
				return msg
			}
		}
		if time.Now().After(end) {
			break
		}
		time.Sleep(pollInterval)
	}
	var b strings.Builder
	for _, msg := range seen {
		fmt.Fprintf(&b, "\n  %s", msg)
	}
	m.t.Fatalf("no matching message for %s within %v; INBOX has %d:%s", m.User, deadline, len(seen), b.String())
	return nil
}

// NoMessage checks for the whole of window that no message matching match
// is (or arrives) in user's INBOX, and fails t with it otherwise.
func (s *Stack) NoMessage(t testing.TB, user string, match func(raw []byte) bool, window time.Duration) {
	t.Helper()
	mb := s.Mailbox(t, user)
	defer mb.Close()
	end := time.Now().Add(window)
	var last imap.UID
	for {
		for _, msg := range mb.messagesAbove(last) {
			last = max(last, msg.UID)
			if match(msg.Raw) {
				t.Fatalf("unexpected message for %s: %s", mb.User, msg)
			}
		}
		if time.Now().After(end) {
			return
		}
		time.Sleep(pollInterval)
	}
}

// Matchers for WaitForMessage and NoMessage.

// HeaderIs matches messages whose header field name has exactly value
// (after unfolding and trimming; a msg-id is compared with or without <>).
func HeaderIs(name, value string) func([]byte) bool {
	return func(raw []byte) bool {
		m, err := ParseMessage(raw)
		if err != nil {
			return false
		}
		for _, v := range m.Header.Values(name) {
			v = strings.TrimSpace(v)
			if v == value || strings.Trim(v, "<>") == strings.Trim(value, "<>") {
				return true
			}
		}
		return false
	}
}

// SubjectContains matches messages whose decoded Subject contains s.
func SubjectContains(s string) func([]byte) bool {
	return func(raw []byte) bool {
		m, err := ParseMessage(raw)
		return err == nil && strings.Contains(m.Subject, s)
	}
}

// MessageIDIs matches the message with that Message-ID (with or without <>).
func MessageIDIs(id string) func([]byte) bool {
	id = strings.Trim(id, "<>")
	return func(raw []byte) bool {
		m, err := ParseMessage(raw)
		return err == nil && m.MessageID == id
	}
}

// InReplyToIs matches replies to the message with that Message-ID.
func InReplyToIs(id string) func([]byte) bool {
	id = strings.Trim(id, "<>")
	return func(raw []byte) bool {
		m, err := ParseMessage(raw)
		return err == nil && m.InReplyTo == id
	}
}

// Contains matches messages whose raw bytes contain s.
func Contains(s string) func([]byte) bool {
	return func(raw []byte) bool { return bytes.Contains(raw, []byte(s)) }
}

// Sending.

var idCounter atomic.Int64

// NewMessageID returns a fresh msg-id (without <>) in example.test.
func NewMessageID(tag string) string {
	return fmt.Sprintf("%s.%d.%d.%d@%s", tag, os.Getpid(), time.Now().UnixNano(), idCounter.Add(1), Domain)
}

// SendSwaks runs swaks against the stack's SMTP port with args (e.g. "--to",
// "support@example.test", "--header", "Subject: x") and returns its output;
// t fails if swaks does.
func (s *Stack) SendSwaks(t testing.TB, args ...string) string {
	t.Helper()
	all := append([]string{"--server", s.SMTPAddr(), "--helo", "client.example.test"}, args...)
	return runTool(t, nil, nil, "swaks", all...)
}

// Send sends a plain text message with swaks, from and to being users or
// addresses, and returns its Message-ID (without <>). headers are extra
// "Name: value" lines.
func (s *Stack) Send(t testing.TB, from, to, subject, body string, headers ...string) string {
	t.Helper()
	id := NewMessageID("swaks")
	args := []string{
		"--from", Addr(from), "--to", Addr(to),
		"--header", "Subject: " + subject,
		// swaks replaces its own Message-Id header by this one.
		"--header", "Message-Id: <" + id + ">",
		"--body", body,
	}
	for _, h := range headers {
		args = append(args, "--header", h)
	}
	s.SendSwaks(t, args...)
	return id
}

// SendRaw submits raw as it is to the stack's Postfix over SMTP (plain, as
// from a loopback client that needs no auth).
func (s *Stack) SendRaw(t testing.TB, from string, to []string, raw []byte) {
	t.Helper()
	c, err := smtp.Dial(s.SMTPAddr())
	if err != nil {
		t.Fatalf("smtp dial: %v", err)
	}
	defer c.Close()
	rcpts := make([]string, len(to))
	for i, r := range to {
		rcpts[i] = Addr(r)
	}
	if err := c.SendMail(Addr(from), rcpts, bytes.NewReader(raw)); err != nil {
		t.Fatalf("smtp send: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatalf("smtp quit: %v", err)
	}
}

// SMTPAuthClient is a SASL PLAIN client for user, for Postfix's AUTH (which
// checks against Dovecot's user list).
func SMTPAuthClient(user string) sasl.Client {
	return sasl.NewPlainClient("", Addr(user), Password)
}
