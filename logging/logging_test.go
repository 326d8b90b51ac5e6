package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a log destination safe for concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the log lines written so far.
func (b *lockedBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimSpace(b.buf.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// manualWindows replaces the handler's timers with windows the test ends
// by hand, in the order they opened.
type manualWindows struct {
	mu   sync.Mutex
	ends []func()
}

func (m *manualWindows) afterFunc(_ time.Duration, f func()) func() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ends = append(m.ends, f)
	return func() bool { return true }
}

func (m *manualWindows) end(t *testing.T, i int) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if i >= len(m.ends) {
		t.Fatalf("window %d was never opened (%d open)", i, len(m.ends))
	}
	m.ends[i]()
}

func newTestLogger() (*slog.Logger, *Handler, *lockedBuffer, *manualWindows) {
	out := &lockedBuffer{}
	h := NewHandler(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}), time.Minute)
	w := &manualWindows{}
	h.state.afterFunc = w.afterFunc
	return slog.New(h), h, out, w
}

func count(lines []string, sub string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

func TestIdenticalErrorsAreSuppressedAndSummarised(t *testing.T) {
	log, _, out, windows := newTestLogger()
	refused := errors.New("dial tcp 127.0.0.1:993: connection refused")
	support := log.With("component", "mailbox", "mailbox", "support")
	for range 5 {
		support.Warn("cannot connect; retrying", "err", refused)
	}
	support.Warn("cannot connect; retrying", "err", errors.New("i/o timeout")) // another error
	log.Warn("cannot connect; retrying", "mailbox", "sales", "err", refused)   // another mailbox
	support.Error("cannot connect; retrying", "err", refused)                  // another level
	support.Info("polled", "err", refused)                                     // below warn
	support.Info("polled", "err", refused)                                     //
	support.Warn("message quarantined", "uid", 1, "reason", "limit:depth")     // no error attribute
	support.Warn("message quarantined", "uid", 2, "reason", "limit:depth")     //
	lines := out.lines()
	if got := count(lines, `msg="cannot connect; retrying"`); got != 4 {
		t.Errorf("%d connect lines, want 4 (one per level, error and mailbox):\n%s", got, strings.Join(lines, "\n"))
	}
	if count(lines, `msg=polled`) != 2 || count(lines, `msg="message quarantined"`) != 2 {
		t.Errorf("info records or warnings without an error were suppressed:\n%s", strings.Join(lines, "\n"))
	}

	windows.end(t, 0) // the first window: the refused connection at warn for support
	lines = out.lines()
	summary := lines[len(lines)-1]
	for _, want := range []string{"level=WARN", `msg="suppressed 4 identical messages"`, "component=mailbox", "mailbox=support",
		`repeated="cannot connect; retrying"`, "suppressed=4", `err="dial tcp 127.0.0.1:993: connection refused"`} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary %q lacks %s", summary, want)
		}
	}
	for i := 1; i < 4; i++ {
		windows.end(t, i) // nothing was suppressed in these: no summary
	}
	if n := len(out.lines()); n != len(lines) {
		t.Errorf("windows with nothing suppressed logged %d lines", n-len(lines))
	}
	support.Warn("cannot connect; retrying", "err", refused)
	if got := count(out.lines(), `msg="cannot connect; retrying"`); got != 5 {
		t.Errorf("after its window the error is not logged again (%d lines)", got)
	}
}

func TestFlushLogsWhatWasSuppressed(t *testing.T) {
	log, h, out, _ := newTestLogger()
	g := log.WithGroup("imap")
	for range 3 {
		log.Error("cannot save cursor", "mailbox", "support", "err", "disk full")
		g.Error("cannot save cursor", "mailbox", "sales", "err", "disk full") // grouped attributes still count
	}
	h.Flush()
	h.Flush() // nothing left
	lines := out.lines()
	if len(lines) != 4 || count(lines, `msg="suppressed 2 identical messages"`) != 2 || count(lines, "mailbox=support") != 2 ||
		count(lines, "imap.mailbox=sales") != 2 {
		t.Errorf("want two first lines and two summaries:\n%s", strings.Join(lines, "\n"))
	}
}

// TestWindowEndsByItself runs the real timers from many goroutines: the
// summaries appear when windows end, with no further record to trigger
// them, and every record is either logged or counted in a summary.
func TestWindowEndsByItself(t *testing.T) {
	out := &lockedBuffer{}
	log := slog.New(NewHandler(slog.NewJSONHandler(out, nil), 50*time.Millisecond))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				log.Error("notification delayed; will retry", "err", "421 try later")
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		logged, suppressed, summaries := 0, 0, 0
		for _, l := range out.lines() {
			var rec struct {
				Msg        string `json:"msg"`
				Suppressed int    `json:"suppressed"`
			}
			if err := json.Unmarshal([]byte(l), &rec); err != nil {
				t.Fatalf("%v: %s", err, l)
			}
			if rec.Suppressed > 0 {
				summaries++
				suppressed += rec.Suppressed
			} else {
				logged++
			}
		}
		if summaries > 0 && logged+suppressed == 80 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d logged + %d suppressed in %d summaries, want 80 in all:\n%s", logged, suppressed, summaries, strings.Join(out.lines(), "\n"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
