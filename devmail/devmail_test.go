package devmail

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const (
	user     = "support@example.com"
	password = "secret"
	msg1     = "From: a@customer.example\r\nTo: support@example.com\r\nSubject: hello\r\nMessage-ID: <1@customer.example>\r\n\r\nbody one\r\n"
)

func start(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.Users == nil {
		opts.Users = map[string]string{user: password}
	}
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func login(t *testing.T, s *Server) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(s.IMAPAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, password).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDeliverVisibleOverIMAP(t *testing.T) {
	s := start(t, Options{})
	uid, err := s.Deliver(user, "INBOX", []byte(msg1))
	if err != nil || uid != 1 {
		t.Fatalf("Deliver = %d, %v", uid, err)
	}
	c := login(t, s)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	bs := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.UIDSetNum(imap.UID(uid)), &imap.FetchOptions{
		UID: true, BodySection: []*imap.FetchItemBodySection{bs},
	}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch = %v, %v", msgs, err)
	}
	if got := string(msgs[0].FindBodySection(bs)); got != msg1 {
		t.Fatalf("body = %q", got)
	}

	stored, err := s.Messages(user, "INBOX")
	if err != nil || len(stored) != 1 || stored[0].UID != 1 || string(stored[0].Raw) != msg1 {
		t.Fatalf("Messages = %+v, %v", stored, err)
	}
	for _, f := range stored[0].Flags {
		if f == imap.FlagSeen {
			t.Fatal("Messages set \\Seen")
		}
	}
}

func TestCaps(t *testing.T) {
	for name, tc := range map[string]struct {
		caps imap.CapSet
		move bool
	}{
		"default": {nil, true},
		"no-move": {imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}}, false},
	} {
		t.Run(name, func(t *testing.T) {
			s := start(t, Options{Caps: tc.caps})
			caps := login(t, s).Caps()
			if caps.Has(imap.CapMove) != tc.move || !caps.Has(imap.CapUIDPlus) || !caps.Has(imap.CapIdle) {
				t.Fatalf("caps = %v", caps)
			}
		})
	}
}

func TestFoldersAndUIDValidity(t *testing.T) {
	s := start(t, Options{})
	c := login(t, s)
	st := func() uint32 {
		d, err := c.Status("INBOX", &imap.StatusOptions{UIDValidity: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		return d.UIDValidity
	}
	before := st()
	if err := s.DeleteFolder(user, "INBOX"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Messages(user, "INBOX"); err == nil {
		t.Fatal("Messages of a deleted folder succeeded")
	}
	if err := s.CreateFolder(user, "INBOX"); err != nil {
		t.Fatal(err)
	}
	if after := st(); after == before {
		t.Fatalf("UIDVALIDITY unchanged: %d", after)
	}
	if err := s.CreateFolder(user, "INBOX"); err == nil {
		t.Fatal("creating an existing folder succeeded")
	}
	if _, err := s.Deliver(user, "Nope", []byte(msg1)); err == nil {
		t.Fatal("Deliver to a missing folder succeeded")
	}
}

func TestRemove(t *testing.T) {
	s := start(t, Options{})
	for range 3 {
		if _, err := s.Deliver(user, "INBOX", []byte(msg1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Remove(user, "INBOX", 2); err != nil {
		t.Fatal(err)
	}
	got, err := s.Messages(user, "INBOX")
	if err != nil || len(got) != 2 || got[0].UID != 1 || got[1].UID != 3 {
		t.Fatalf("Messages = %+v, %v", got, err)
	}
}

func TestAddUser(t *testing.T) {
	s := start(t, Options{})
	if err := s.AddUser("other@example.com", "pw"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser("Other@example.com", "pw"); err == nil {
		t.Fatal("duplicate user accepted")
	}
	if _, err := s.Deliver("other@example.com", "INBOX", []byte(msg1)); err != nil {
		t.Fatal(err)
	}
}

func TestSetIMAPDownAndRestart(t *testing.T) {
	s := start(t, Options{})
	c := login(t, s)
	if err := s.SetIMAPDown(true); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Closed():
	case <-time.After(5 * time.Second):
		t.Fatal("connection not dropped")
	}
	if _, err := net.Dial("tcp", s.IMAPAddr()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial while down: %v", err)
	}
	if _, err := s.Deliver(user, "INBOX", []byte(msg1)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetIMAPDown(false); err != nil {
		t.Fatal(err)
	}
	c = login(t, s)
	if err := s.RestartIMAP(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Closed():
	case <-time.After(5 * time.Second):
		t.Fatal("connection not dropped by restart")
	}
	c = login(t, s)
	d, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || *d.NumMessages != 1 {
		t.Fatalf("status after restart: %v, %v", d, err)
	}
}

func send(addr string, auth sasl.Client, from string, to []string, data string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if auth != nil {
		if err := c.Auth(auth); err != nil {
			return err
		}
	}
	if err := c.SendMail(from, to, strings.NewReader(data)); err != nil {
		return err
	}
	return c.Quit()
}

func TestSMTPRecordedAndDelivered(t *testing.T) {
	s := start(t, Options{})
	var cb []Envelope
	done := make(chan struct{})
	s.OnSent(func(e Envelope) { cb = append(cb, e); close(done) })

	data := "From: support@example.com\r\nTo: x@customer.example\r\nSubject: [Case #1]\r\n\r\n.leading dot\r\n"
	err := send(s.SMTPAddr(), sasl.NewPlainClient("", user, password), "", []string{"x@customer.example", "SUPPORT@example.com"}, data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.WaitSent(ctxT(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].From != "" || len(got[0].To) != 2 || string(got[0].Data) != data || got[0].At.IsZero() {
		t.Fatalf("Sent = %+v", got)
	}
	<-done
	if len(cb) != 1 || !bytes.Equal(cb[0].Data, got[0].Data) {
		t.Fatalf("OnSent got %+v", cb)
	}
	// Delivered (byte for byte) to the INBOX of the recipient that is a user,
	// before it was recorded.
	inbox, err := s.Messages(user, "INBOX")
	if err != nil || len(inbox) != 1 || string(inbox[0].Raw) != data {
		t.Fatalf("INBOX = %+v, %v", inbox, err)
	}
}

func TestSMTPAuth(t *testing.T) {
	s := start(t, Options{})
	// Unauthenticated submission from loopback is accepted.
	if err := send(s.SMTPAddr(), nil, "a@b.example", []string{"c@d.example"}, msg1); err != nil {
		t.Fatal(err)
	}
	err := send(s.SMTPAddr(), sasl.NewPlainClient("", user, "wrong"), "a@b.example", []string{"c@d.example"}, msg1)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 535 {
		t.Fatalf("wrong password: %v", err)
	}
	if n := len(s.Sent()); n != 1 {
		t.Fatalf("Sent has %d", n)
	}
}

func TestWaitSent(t *testing.T) {
	s := start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.WaitSent(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitSent on nothing: %v", err)
	}

	errc := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < 3 && err == nil; i++ {
			err = send(s.SMTPAddr(), nil, "a@b.example", []string{"c@d.example"}, msg1)
		}
		errc <- err
	}()
	got, err := s.WaitSent(ctxT(t), 3)
	if err != nil || len(got) < 3 {
		t.Fatalf("WaitSent = %d, %v", len(got), err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}

	s.Close()
	if _, err := s.WaitSent(ctxT(t), 10); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitSent after Close: %v", err)
	}
}

func TestFailRcpt(t *testing.T) {
	s := start(t, Options{})
	s.FailRcpt("Full@customer.example", &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"})
	s.FailRcpt("gone@customer.example", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"})

	err := send(s.SMTPAddr(), nil, "", []string{"full@customer.example"}, msg1)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 452 || !se.Temporary() {
		t.Fatalf("452: %v", err)
	}
	err = send(s.SMTPAddr(), nil, "", []string{"gone@customer.example"}, msg1)
	if !errors.As(err, &se) || se.Code != 550 || se.Temporary() {
		t.Fatalf("550: %v", err)
	}
	if n := len(s.Sent()); n != 0 {
		t.Fatalf("failed transactions recorded: %d", n)
	}
	s.FailRcpt("full@customer.example", nil)
	if err := send(s.SMTPAddr(), nil, "", []string{"full@customer.example"}, msg1); err != nil {
		t.Fatal(err)
	}
	if got := s.Sent(); len(got) != 1 || got[0].To[0] != "full@customer.example" {
		t.Fatalf("Sent = %+v", got)
	}
}

func TestSetSMTPDown(t *testing.T) {
	s := start(t, Options{})
	// A connection opened before the outage gets 421 on its next transaction.
	early, err := smtp.Dial(s.SMTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	if err := early.Hello("localhost"); err != nil {
		t.Fatal(err)
	}

	s.SetSMTPDown(true)
	err = send(s.SMTPAddr(), nil, "", []string{"x@customer.example"}, msg1)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 421 || !se.Temporary() {
		t.Fatalf("send while down: %v", err)
	}
	err = early.SendMail("", []string{"x@customer.example"}, strings.NewReader(msg1))
	if !errors.As(err, &se) || se.Code != 421 {
		t.Fatalf("open session while down: %v", err)
	}
	if n := len(s.Sent()); n != 0 {
		t.Fatalf("recorded while down: %d", n)
	}

	s.SetSMTPDown(false)
	if err := send(s.SMTPAddr(), nil, "", []string{"x@customer.example"}, msg1); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Sent()); n != 1 {
		t.Fatalf("Sent has %d", n)
	}
}
