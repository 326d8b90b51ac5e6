package mailbox

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/devmail"
)

const (
	testUser = "support@example.com"
	testPass = "secret"
	waitFor  = 10 * time.Second // deadline for any awaited event
)

// signal lets a test wait, with a deadline, for a condition on state that
// other goroutines change (no sleeping, no polling).
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

// do changes state under the lock and wakes waiters.
func (s *signal) do(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
	close(s.ch)
	s.ch = make(chan struct{})
}

// read runs f under the lock.
func (s *signal) read(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

// until waits until cond (run under the lock) holds.
func (s *signal) until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok := cond()
		ch := s.ch
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// got is one call of Handle as the test handler saw it.
type got struct {
	in     Incoming
	body   []byte
	ctxErr error // ctx.Err() when Handle returned
}

// recHandler records every Incoming (reading Body fully) and returns what
// decide says (Ack when decide is nil). n counts the calls for this UID.
type recHandler struct {
	*signal
	decide func(ctx context.Context, in *Incoming, n int) Disposition
	calls  []got
	perUID map[uint32]int
}

func newHandler(decide func(ctx context.Context, in *Incoming, n int) Disposition) *recHandler {
	return &recHandler{signal: newSignal(), decide: decide, perUID: map[uint32]int{}}
}

func (h *recHandler) Handle(ctx context.Context, in *Incoming) Disposition {
	g := got{in: *in}
	if in.Body != nil {
		b, err := io.ReadAll(in.Body)
		if err != nil {
			return Disposition{Action: Retry, Reason: "read: " + err.Error()}
		}
		g.body = b
	}
	var n int
	h.do(func() {
		h.perUID[in.UID]++
		n = h.perUID[in.UID]
	})
	d := Disposition{Action: Ack}
	if h.decide != nil {
		d = h.decide(ctx, in, n)
	}
	g.ctxErr = ctx.Err()
	h.do(func() { h.calls = append(h.calls, g) })
	return d
}

func (h *recHandler) waitCalls(t testing.TB, n int) []got {
	t.Helper()
	var out []got
	h.until(t, fmt.Sprintf("%d handler calls", n), func() bool {
		out = append([]got(nil), h.calls...)
		return len(h.calls) >= n
	})
	return out
}

func (h *recHandler) numCalls() int {
	var n int
	h.read(func() { n = len(h.calls) })
	return n
}

// memCursors is an in-memory CursorStore.
type memCursors struct {
	*signal
	m     map[string]Cursor
	saves []Cursor // every save, in order
}

func newCursors() *memCursors { return &memCursors{signal: newSignal(), m: map[string]Cursor{}} }

func (c *memCursors) LoadCursor(mb string) (Cursor, error) {
	var cur Cursor
	c.read(func() { cur = c.m[mb] })
	return cur, nil
}

func (c *memCursors) SaveCursor(mb string, cur Cursor) error {
	c.do(func() { c.m[mb], c.saves = cur, append(c.saves, cur) })
	return nil
}

// saved is every cursor saved so far, in order.
func (c *memCursors) saved() []Cursor {
	var s []Cursor
	c.read(func() { s = slices.Clone(c.saves) })
	return s
}

func (c *memCursors) get(mb string) Cursor {
	cur, _ := c.LoadCursor(mb)
	return cur
}

func (c *memCursors) waitLastUID(t testing.TB, mb string, uid uint32) Cursor {
	t.Helper()
	var cur Cursor
	c.until(t, fmt.Sprintf("cursor last UID %d", uid), func() bool {
		cur = c.m[mb]
		return cur.LastUID == uid
	})
	return cur
}

// logCapture collects the worker's JSON log. When the test ends it checks
// that every record about a message carries mailbox, uid and message_id,
// and prints the log if the test failed or runs verbose.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func testLog(t *testing.T) (*slog.Logger, *logCapture) {
	lc := &logCapture{}
	w := writerFunc(func(p []byte) (int, error) {
		lc.mu.Lock()
		defer lc.mu.Unlock()
		return lc.buf.Write(p)
	})
	t.Cleanup(func() {
		for _, rec := range lc.records(t) {
			if _, ok := rec["uid"]; ok {
				_, mb := rec["mailbox"]
				_, mid := rec["message_id"]
				if !mb || !mid {
					t.Errorf("log record about a message lacks mailbox or message_id: %v", rec)
				}
			}
		}
		if t.Failed() || testing.Verbose() {
			lc.mu.Lock()
			t.Logf("worker log:\n%s", lc.buf.String())
			lc.mu.Unlock()
		}
	})
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), lc
}

// records returns the log records so far.
func (lc *logCapture) records(t testing.TB) []map[string]any {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(lc.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Errorf("log line not JSON: %s", sc.Text())
			continue
		}
		out = append(out, rec)
	}
	return out
}

// count counts records at level with message msg.
func (lc *logCapture) count(t testing.TB, level, msg string) int {
	n := 0
	for _, r := range lc.records(t) {
		if r["level"] == level && r["msg"] == msg {
			n++
		}
	}
	return n
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// startServer runs devmail with the test user until the test ends.
func startServer(t *testing.T, opts devmail.Options) *devmail.Server {
	t.Helper()
	opts.Users = map[string]string{testUser: testPass}
	s, err := devmail.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mailboxConfig(s *devmail.Server) config.Mailbox {
	return config.Mailbox{
		Name:    "support",
		Address: testUser,
		IMAP: config.Server{
			Host: s.IMAPHost, Port: s.IMAPPort, Security: "none",
			Username: testUser, Password: testPass,
		},
		Folder:           "INBOX",
		ProcessedFolder:  "Processed",
		QuarantineFolder: "Quarantine",
		Idle:             true,
		PollInterval:     time.Hour, // only IDLE, Kick or reconnects wake the worker
		MaxMessageSize:   1 << 20,
	}
}

// running is a Worker running in the background until the test ends.
type running struct {
	w      *Worker
	log    *logCapture
	events *signal
	counts map[string]int
	cancel context.CancelFunc
	done   chan error
}

// newWorker builds a worker with fast reconnects and an event recorder.
func newWorker(t *testing.T, cfg config.Mailbox, h MessageHandler, cs CursorStore) *running {
	return newBatchWorker(t, cfg, OneByOne(h), cs)
}

// newBatchWorker is newWorker for a Handler that commits whole batches.
func newBatchWorker(t *testing.T, cfg config.Mailbox, h Handler, cs CursorStore) *running {
	log, lc := testLog(t)
	w := NewWorker(cfg, h, cs, log)
	w.backoffMin = 10 * time.Millisecond
	w.backoffMax = 100 * time.Millisecond
	r := &running{w: w, log: lc, events: newSignal(), counts: map[string]int{}}
	w.event = func(ev string) { r.events.do(func() { r.counts[ev]++ }) }
	return r
}

func (r *running) start(t *testing.T) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan error, 1)
	go func() { r.done <- r.w.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func startWorker(t *testing.T, cfg config.Mailbox, h MessageHandler, cs CursorStore) *running {
	return newWorker(t, cfg, h, cs).start(t)
}

// stop cancels Run and waits for it to return; it returns how long that took.
func (r *running) stop(t testing.TB) time.Duration {
	t.Helper()
	began := time.Now()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("Run returned %v", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(waitFor):
		t.Fatal("Run did not return after cancel")
	}
	return time.Since(began)
}

func (r *running) count(ev string) int {
	var n int
	r.events.read(func() { n = r.counts[ev] })
	return n
}

func (r *running) waitEvent(t testing.TB, ev string, n int) {
	t.Helper()
	r.events.until(t, fmt.Sprintf("%d %q events", n, ev), func() bool { return r.counts[ev] >= n })
}

func deliver(t testing.TB, s *devmail.Server, folder, raw string) uint32 {
	t.Helper()
	uid, err := s.Deliver(testUser, folder, []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

func messages(t testing.TB, s *devmail.Server, folder string) []devmail.Stored {
	t.Helper()
	m, err := s.Messages(testUser, folder)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func uidsOf(ms []devmail.Stored) []uint32 {
	var out []uint32
	for _, m := range ms {
		out = append(out, m.UID)
	}
	return out
}

func hasFlag(m devmail.Stored, f imap.Flag) bool {
	for _, x := range m.Flags {
		if x == f {
			return true
		}
	}
	return false
}

func testMessage(n int, body string) string {
	return fmt.Sprintf("From: Kunde <k%d@customer.example>\r\nTo: support@example.com\r\n"+
		"Subject: =?utf-8?q?Produktionsausfall_Nr=2E_%d?=\r\nMessage-ID: <m%d@customer.example>\r\n"+
		"Date: Mon, 2 Jun 2025 10:00:00 +0200\r\n\r\n%s\r\n", n, n, n, body)
}

// selfSignedCA makes a self-signed CA certificate for the IP 127.0.0.1
// valid from notBefore to notAfter, and returns a server TLS config using
// it and the path of its PEM file.
func selfSignedCA(t *testing.T, ip string, notBefore, notAfter time.Time) (*tls.Config, string) {
	t.Helper()
	server, caFile, err := devmail.TestCertificate(t.TempDir(), "caseintake test IMAP", ip, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return server, caFile
}

// freezer is a TCP proxy that can turn silent: while frozen it keeps the
// connections open but forwards nothing, like a hung server.
type freezer struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	frozen bool
	conns  []net.Conn
}

func startFreezer(t *testing.T, target string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target}
	go f.serve()
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
	})
	return f
}

func (f *freezer) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

func (f *freezer) setFrozen(v bool) {
	f.mu.Lock()
	f.frozen = v
	f.mu.Unlock()
}

func (f *freezer) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", f.target)
		if err != nil {
			c.Close()
			continue
		}
		f.mu.Lock()
		f.conns = append(f.conns, c, up)
		f.mu.Unlock()
		go f.pipe(up, c)
		go f.pipe(c, up)
	}
}

func (f *freezer) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			f.mu.Lock()
			frozen := f.frozen
			f.mu.Unlock()
			if !frozen {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}
