package intake

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/mail"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/devmail"
	"github.com/caseintake/caseintake/mailbox"
	"github.com/caseintake/caseintake/notify"
	"github.com/caseintake/caseintake/store"
)

const (
	supportAddr = "support@example.test"
	salesAddr   = "sales@example.test"
	password    = "secret"
	teamAddr    = "team@example.test"
	oncallAddr  = "oncall@example.test"
)

// harness runs the whole pipeline in-process: devmail's IMAP and SMTP
// servers, a store, the notify worker and one mailbox worker per address.
type harness struct {
	t        *testing.T
	mail     *devmail.Server
	store    *store.Store
	pipeline *Pipeline
	clock    *clock
	cfgs     map[string]config.Mailbox
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	logLines *logLines
}

// clock is a settable time source, so reopen windows can be crossed
// without waiting.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type harnessOpts struct {
	maxSize   int64
	mailboxes []string // support addresses; default just supportAddr
	noWorkers bool     // start no mailbox workers (the test drives Handle)
	tune      func(*Options)
	dataDir   string // default: a fresh temp dir
}

func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	if len(o.mailboxes) == 0 {
		o.mailboxes = []string{supportAddr}
	}
	users := map[string]string{}
	for _, a := range o.mailboxes {
		users[a] = password
	}
	ms, err := devmail.Start(devmail.Options{Users: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	st, err := store.Open(o.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	lines := &logLines{}
	log := slog.New(slog.NewTextHandler(testWriter{t: t, lines: lines}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	smtpCfg := config.SMTP{Server: config.Server{Host: ms.SMTPHost, Port: ms.SMTPPort, Security: "none"},
		From: "Example Support <" + supportAddr + ">", EnvelopeSender: config.NullEnvelopeSender}
	renderer, err := notify.NewRenderer(smtpCfg, config.Notify{Team: []string{teamAddr}, Urgent: []string{oncallAddr, "infra@example.test"}})
	if err != nil {
		t.Fatal(err)
	}
	renderer.SetMessageIDKey(st.MessageIDKey()) // as the daemon does
	sender, err := notify.NewSender(smtpCfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, mail: ms, store: st, clock: &clock{now: time.Now()}, cfgs: map[string]config.Mailbox{}, logLines: lines}
	notifier := notify.NewWorker(st, renderer, sender, log)
	popts := Options{
		ReopenWindow: 14 * 24 * time.Hour,
		OwnAddresses: o.mailboxes,
		Now:          h.clock.Now,
	}
	if o.tune != nil {
		o.tune(&popts)
	}
	h.pipeline = New(st, renderer, popts, log, notifier.Kick)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.wg.Go(func() { _ = notifier.Run(ctx) })
	for _, addr := range o.mailboxes {
		name, _, _ := strings.Cut(addr, "@")
		cfg := config.Mailbox{
			Name: name, Address: addr,
			IMAP:   config.Server{Host: ms.IMAPHost, Port: ms.IMAPPort, Security: "none", Username: addr, Password: password},
			Folder: "INBOX", ProcessedFolder: "Processed", QuarantineFolder: "Quarantine",
			Idle: true, PollInterval: time.Hour, MaxMessageSize: o.maxSize,
		}
		if cfg.MaxMessageSize == 0 {
			cfg.MaxMessageSize = config.DefaultMaxMessageSize
		}
		h.cfgs[name] = cfg
		if !o.noWorkers {
			h.startWorker(ctx, cfg, log)
		}
	}
	t.Cleanup(func() {
		cancel()
		h.wg.Wait()
		st.Close()
	})
	return h
}

func (h *harness) startWorker(ctx context.Context, cfg config.Mailbox, log *slog.Logger) {
	w := mailbox.NewWorker(cfg, h.pipeline, Cursors(h.store), log)
	h.wg.Go(func() { _ = w.Run(ctx) })
}

// testWriter passes log lines to the test's log and keeps them in lines.
type testWriter struct {
	t     *testing.T
	lines *logLines
}

func (w testWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	w.t.Log(line)
	w.lines.mu.Lock()
	w.lines.l = append(w.lines.l, line)
	w.lines.mu.Unlock()
	return len(p), nil
}

type logLines struct {
	mu sync.Mutex
	l  []string
}

// logged counts the log lines (warnings and errors) that contain s.
func (h *harness) logged(s string) int {
	h.logLines.mu.Lock()
	defer h.logLines.mu.Unlock()
	n := 0
	for _, l := range h.logLines.l {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// deliver puts raw into a mailbox's INBOX, as the MTA would.
func (h *harness) deliver(addr, raw string) {
	h.t.Helper()
	if _, err := h.mail.Deliver(addr, "INBOX", []byte(raw)); err != nil {
		h.t.Fatal(err)
	}
}

// waitFor polls cond until it holds or 10 s pass.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitDecided waits until msgID has n decision records and returns the last.
func (h *harness) waitDecided(msgID string, n int) *store.Decision {
	h.t.Helper()
	var ds []*store.Decision
	h.waitFor(fmt.Sprintf("%d decision(s) about <%s>", n, msgID), func() bool {
		var err error
		ds, err = h.store.Trace(msgID)
		return err == nil && len(ds) >= n
	})
	return ds[len(ds)-1]
}

// folder returns the raw messages in a mailbox folder.
func (h *harness) folder(addr, name string) []string {
	h.t.Helper()
	msgs, err := h.mail.Messages(addr, name)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		out = append(out, string(m.Raw))
	}
	return out
}

// waitFolder waits until a folder holds n messages.
func (h *harness) waitFolder(addr, name string, n int) []string {
	h.t.Helper()
	var got []string
	h.waitFor(fmt.Sprintf("%d message(s) in %s/%s", n, addr, name), func() bool {
		msgs, err := h.mail.Messages(addr, name) // the worker may not have created the folder yet
		got = got[:0]
		for _, m := range msgs {
			got = append(got, string(m.Raw))
		}
		return err == nil && len(got) == n
	})
	return got
}

// sent is an accepted SMTP transaction with its parsed header.
type sent struct {
	To     []string
	From   string
	Header mail.Header
	Body   string
}

// waitSent waits until exactly n notifications were accepted in total
// (and the outbox is empty), then returns them.
func (h *harness) waitSent(n int) []sent {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	envs, err := h.mail.WaitSent(ctx, n)
	if err != nil {
		h.t.Fatalf("waiting for %d notifications: %v (got %d)", n, err, len(h.mail.Sent()))
	}
	h.waitFor("an empty outbox", func() bool {
		st, err := h.store.OutboxStats()
		return err == nil && st.Pending == 0
	})
	envs = h.mail.Sent()
	if len(envs) != n {
		h.t.Fatalf("sent %d notifications, want %d:\n%s", len(envs), n, describe(envs))
	}
	var out []sent
	for _, e := range envs {
		m, err := mail.ReadMessage(bytes.NewReader(e.Data))
		if err != nil {
			h.t.Fatalf("notification is not a valid message: %v\n%s", err, e.Data)
		}
		body, _ := io.ReadAll(m.Body)
		out = append(out, sent{To: e.To, From: e.From, Header: m.Header, Body: string(body)})
	}
	return out
}

func describe(envs []devmail.Envelope) string {
	var b strings.Builder
	for _, e := range envs {
		m, _ := mail.ReadMessage(bytes.NewReader(e.Data))
		subj := ""
		if m != nil {
			subj, _ = (&mime.WordDecoder{}).DecodeHeader(m.Header.Get("Subject"))
		}
		fmt.Fprintf(&b, "  to %v: %s\n", e.To, subj)
	}
	return b.String()
}

func (h *harness) caseByID(id uint64) *casemodel.Case {
	h.t.Helper()
	c, err := h.store.GetCase(id)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (h *harness) allCases() []*casemodel.Case {
	h.t.Helper()
	cs, err := h.store.ListCases(store.Filter{})
	if err != nil {
		h.t.Fatal(err)
	}
	return cs
}

// msg builds a raw message.
func msg(from, subject, msgID string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\n", from, supportAddr, subject)
	if msgID != "" {
		fmt.Fprintf(&b, "Message-ID: <%s>\r\n", msgID)
	}
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, please help.\r\n")
	return b.String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mimeWordDecode(s string) (string, error) { return (&mime.WordDecoder{}).DecodeHeader(s) }
