// Package logging rate-limits repeated identical errors in the daemon's
// structured logs.
//
// A mail server that is down, a full disk or a refused login makes every
// poll cycle log the same error again; Handler keeps the first of them and
// replaces the rest with one summary per window, so the journal shows the
// problem and how often it recurred without drowning everything else.
package logging

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// DefaultWindow is how long identical errors are suppressed after the
// first.
const DefaultWindow = time.Minute

// errorKeys are the attribute keys that carry an error.
var errorKeys = map[string]bool{"err": true, "error": true}

// Handler wraps a slog.Handler. A record at warn level or above that
// carries an error attribute ("err" or "error") is passed on the first
// time; records identical to it — same level, message, error text and
// "mailbox" attribute — within the window after it are suppressed, and
// when the window ends one summary record says how many were ("suppressed
// N identical messages", at the same level, with the message, error and
// mailbox). Records below warn, and warnings without an error attribute
// (each is about its own message, like "message quarantined"), always
// pass.
type Handler struct {
	next  slog.Handler
	state *state
	// bound holds the mailbox and error attributes given through WithAttrs
	// outside any group; they count for identity like the record's own.
	bound   identity
	grouped bool // WithGroup was called: later attributes are nested
}

// identity is what makes two records identical.
type identity struct {
	level   slog.Level
	msg     string
	err     string
	hasErr  bool
	mailbox string
}

// state is shared by a Handler and every handler derived from it.
type state struct {
	mu     sync.Mutex
	window time.Duration
	now    func() time.Time
	// afterFunc runs f after d, unless stopped first (time.AfterFunc).
	afterFunc func(d time.Duration, f func()) (stop func() bool)
	seen      map[identity]*episode
}

// episode is one identity's current window.
type episode struct {
	// next is the handler that logged the first record, with its bound
	// attributes, so the summary carries the same context.
	next       slog.Handler
	extra      []slog.Attr // the record's own mailbox and error attributes
	suppressed int
	stopTimer  func() bool
}

// NewHandler returns a Handler around next that suppresses repeated
// identical errors for window (DefaultWindow when zero or less).
func NewHandler(next slog.Handler, window time.Duration) *Handler {
	if window <= 0 {
		window = DefaultWindow
	}
	return &Handler{next: next, state: &state{window: window, now: time.Now, afterFunc: afterFunc, seen: map[identity]*episode{}}}
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func afterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	if !h.grouped {
		for _, a := range attrs {
			c.bound.note(a)
		}
	}
	return &c
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	c.grouped = c.grouped || name != ""
	return &c
}

// note records a in id if it is the mailbox or an error, and reports
// whether it was.
func (id *identity) note(a slog.Attr) bool {
	switch {
	case a.Key == "mailbox":
		id.mailbox = a.Value.Resolve().String()
	case errorKeys[a.Key]:
		id.err, id.hasErr = a.Value.Resolve().String(), true
	default:
		return false
	}
	return true
}

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	id := h.bound
	id.level, id.msg = r.Level, r.Message
	var extra []slog.Attr
	r.Attrs(func(a slog.Attr) bool {
		if id.note(a) {
			extra = append(extra, a)
		}
		return true
	})
	if !id.hasErr {
		return h.next.Handle(ctx, r)
	}
	s := h.state
	s.mu.Lock()
	if e := s.seen[id]; e != nil {
		e.suppressed++
		s.mu.Unlock()
		return nil
	}
	e := &episode{next: h.next, extra: extra}
	s.seen[id] = e
	e.stopTimer = s.afterFunc(s.window, func() { s.end(id, e) })
	s.mu.Unlock()
	return h.next.Handle(ctx, r)
}

// end closes e's window: it forgets the identity, so the next identical
// record is logged again, and logs the summary if anything was
// suppressed.
func (s *state) end(id identity, e *episode) {
	s.mu.Lock()
	if s.seen[id] != e {
		s.mu.Unlock()
		return // already ended by Flush
	}
	delete(s.seen, id)
	n := e.suppressed
	s.mu.Unlock()
	if n == 0 {
		return
	}
	r := slog.NewRecord(s.now(), id.level, fmt.Sprintf("suppressed %d identical messages", n), 0)
	r.AddAttrs(slog.String("repeated", id.msg), slog.Int("suppressed", n), slog.Duration("window", s.window))
	r.AddAttrs(e.extra...)
	_ = e.next.Handle(context.Background(), r)
}

// Flush ends every open window now, logging the summaries of what was
// suppressed; the daemon calls it before it exits.
func (h *Handler) Flush() {
	s := h.state
	s.mu.Lock()
	open := make(map[identity]*episode, len(s.seen))
	for id, e := range s.seen {
		e.stopTimer()
		open[id] = e
	}
	s.mu.Unlock()
	for id, e := range open {
		s.end(id, e)
	}
}
