package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/devmail"
)

// syncBuffer is a log sink the test can read while the daemon writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func waitLog(t *testing.T, logs *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q:\n%s", want, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitEmpty(t *testing.T, m *devmail.Server, user string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msgs, err := m.Messages(user, "INBOX")
		if err == nil && len(msgs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's INBOX not processed: %d left (%v)", user, len(msgs), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSIGHUPReloadsMailboxesAndRefusesBadConfig(t *testing.T) {
	const sales = "sales@example.test"
	m, cfgPath, cfg := demoSetup(t, sales)
	withSales := *cfg
	salesBox := cfg.Mailboxes[0]
	salesBox.Name, salesBox.Address, salesBox.IMAP.Username = "sales", sales, sales
	withSales.Mailboxes = append([]config.Mailbox{cfg.Mailboxes[0]}, salesBox)

	var (
		mu   sync.Mutex
		next func() (*config.Config, error)
	)
	reload := func() (*config.Config, error) {
		mu.Lock()
		defer mu.Unlock()
		return next()
	}
	setNext := func(f func() (*config.Config, error)) { mu.Lock(); next = f; mu.Unlock() }

	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)), serveOptions{
			ready: func(a string) { ready <- a }, reload: reload})
	}()
	<-ready
	hup := func() {
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	// 1. An invalid config is refused; the running one keeps working.
	setNext(func() (*config.Config, error) {
		return nil, &config.Error{File: cfgPath, Problems: []string{"smtp.port: must be between 1 and 65535, got 0"}}
	})
	hup()
	waitLog(t, logs, "config reload refused; the running config stays in force")
	raw := []byte("From: a@customer.example\r\nSubject: still here\r\nMessage-ID: <r1@customer.example>\r\n\r\nhi\r\n")
	if _, err := m.Deliver(demoSupport, "INBOX", raw); err != nil {
		t.Fatal(err)
	}
	waitEmpty(t, m, demoSupport)

	// 2. A new mailbox starts; the existing one is left alone.
	setNext(func() (*config.Config, error) { return &withSales, nil })
	hup()
	waitLog(t, logs, "mailboxes_added=[sales] mailboxes_removed=[] mailboxes_restarted=[]")
	if _, err := m.Deliver(sales, "INBOX", []byte("From: b@customer.example\r\nSubject: quote\r\nMessage-ID: <r2@customer.example>\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	waitEmpty(t, m, sales)

	// 3. Removing it stops only that worker.
	setNext(func() (*config.Config, error) { return cfg, nil })
	hup()
	waitLog(t, logs, "mailboxes_added=[] mailboxes_removed=[sales] mailboxes_restarted=[]")

	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
