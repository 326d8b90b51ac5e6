package api

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/notify"
	"github.com/caseintake/caseintake/store"
)

// CaseView is a case as `cases show` returns it: the case and its
// notifications with their delivery state.
type CaseView struct {
	*casemodel.Case
	Notifications []Notification `json:"notifications"`
}

// Notification is an outbox row without its body.
type Notification struct {
	Kind      string    `json:"kind"`
	MessageID string    `json:"message_id"`
	Subject   string    `json:"subject"`
	To        []string  `json:"to,omitempty"`
	Delivered []string  `json:"delivered,omitempty"`
	Failed    []string  `json:"failed,omitempty"`
	State     string    `json:"state"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	SentAt    time.Time `json:"sent_at,omitzero"`
}

// StatusRequest changes a case's status.
type StatusRequest struct {
	Status string `json:"status"`
	Note   string `json:"note,omitempty"`
	Actor  string `json:"actor,omitempty"` // agent name; "cli" if empty
}

// AssignRequest sets (or, with an empty assignee, clears) a case's
// assignee. Agents are named by their email address.
type AssignRequest struct {
	Assignee string `json:"assignee"`
	Note     string `json:"note,omitempty"`
	Actor    string `json:"actor,omitempty"`
}

// NoteRequest adds an internal note (never mailed to the customer).
type NoteRequest struct {
	Text  string `json:"text"`
	Actor string `json:"actor,omitempty"`
}

// ReplyRequest mails a public reply to the case's participants.
type ReplyRequest struct {
	Text  string `json:"text"`
	Actor string `json:"actor,omitempty"`
}

// PriorityRequest sets a case's priority; agents may raise or lower.
type PriorityRequest struct {
	Priority string `json:"priority"`
	Note     string `json:"note,omitempty"`
	Actor    string `json:"actor,omitempty"`
}

// Server serves the API.
type Server struct {
	store    *store.Store
	render   *notify.Renderer
	token    []byte
	log      *slog.Logger
	onCommit func()
	now      func() time.Time
	desk     QuarantineDesk
}

// QuarantineDesk works on quarantined messages for the quarantine
// endpoints: the daemon's intake.Pipeline, adapted in cmd.
type QuarantineDesk interface {
	// Retry decides quarantine record seq again from its stored bytes.
	Retry(seq uint64) (*store.Decision, error)
	// Release opens a case from quarantine record seq by hand, for the
	// agent actor ("agent:ann@example.com").
	Release(seq uint64, actor string, req ReleaseRequest) (*store.Decision, error)
	// Salvage reads what it can of a quarantined message now.
	Salvage(q *store.Decision) Salvaged
}

// SetQuarantineDesk enables the retry and release endpoints and the
// salvaged fields of a quarantine record. Call it before serving.
func (s *Server) SetQuarantineDesk(d QuarantineDesk) { s.desk = d }

// ReleaseRequest opens a case from a quarantined message by hand.
type ReleaseRequest struct {
	// Requester is the customer the case is for: required when the
	// message names no sender, otherwise it replaces the sender.
	Requester string `json:"requester,omitempty"`
	// Subject replaces the message's subject as the case subject.
	Subject string `json:"subject,omitempty"`
	Actor   string `json:"actor,omitempty"` // agent email; "cli" if empty
}

// QuarantineView is one quarantine record as `quarantine show` prints it.
type QuarantineView struct {
	*store.Decision
	// Reason is the quarantine reason, e.g. "limit:depth" (the outcome
	// without "quarantined:"); the decision's signal is its detail.
	Reason string `json:"reason"`
	// SettledBy is the record that decided the message since (a retry, a
	// release, another copy); absent while it stands in quarantine.
	SettledBy *store.Decision `json:"settled_by,omitempty"`
	// Salvaged is what the stored bytes give now.
	Salvaged *Salvaged `json:"salvaged,omitempty"`
	// Trace is every record about the message, oldest first.
	Trace []*store.Decision `json:"trace"`
}

// Salvaged is what can be read from a quarantined message, however
// broken: the fields a release would use.
type Salvaged struct {
	MessageID string `json:"message_id,omitempty"`
	From      string `json:"from,omitempty"`
	FromName  string `json:"from_name,omitempty"`
	ReplyTo   string `json:"reply_to,omitempty"`
	Subject   string `json:"subject,omitempty"`
	// Note says what could not be read, "" when the message now parses.
	Note string `json:"note,omitempty"`
}

// NewServer returns the API handler. onCommit is called after a change that
// queued notifications.
func NewServer(st *store.Store, r *notify.Renderer, token string, log *slog.Logger, onCommit func()) *Server {
	return &Server{store: st, render: r, token: []byte(token), log: log, onCommit: onCommit, now: time.Now}
}

// Handler returns the HTTP routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /api/v1/cases", s.auth(s.listCases))
	mux.Handle("GET /api/v1/cases/{id}", s.auth(s.showCase))
	mux.Handle("POST /api/v1/cases/{id}/status", s.auth(s.setStatus))
	mux.Handle("POST /api/v1/cases/{id}/assignee", s.auth(s.assign))
	mux.Handle("POST /api/v1/cases/{id}/notes", s.auth(s.addNote))
	mux.Handle("POST /api/v1/cases/{id}/replies", s.auth(s.addReply))
	mux.Handle("POST /api/v1/cases/{id}/priority", s.auth(s.setPriority))
	mux.Handle("GET /api/v1/trace", s.auth(s.trace))
	mux.Handle("GET /api/v1/quarantine", s.auth(s.quarantine))
	mux.Handle("GET /api/v1/quarantine/{seq}", s.auth(s.showQuarantine))
	mux.Handle("GET /api/v1/quarantine/{seq}/raw", s.auth(s.rawQuarantine))
	mux.Handle("POST /api/v1/quarantine/{seq}/retry", s.auth(s.retry))
	mux.Handle("POST /api/v1/quarantine/{seq}/release", s.auth(s.release))
	return mux
}

func (s *Server) auth(h http.HandlerFunc) http.Handler { return RequireToken(string(s.token), h) }

// RequireToken lets a request through to h only with "Authorization:
// Bearer <token>", compared in constant time; anything else gets a 401 that
// reveals nothing more. The daemon puts it in front of every route but
// /healthz and /readyz.
func RequireToken(token string, h http.Handler) http.Handler {
	want := []byte(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="caseintake"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong API token")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) listCases(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.Filter{Assignee: q.Get("assignee"), Requester: q.Get("requester"), Text: q.Get("q")}
	var err error
	if v := q.Get("status"); v != "" {
		if f.Status, err = casemodel.ParseStatus(v); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if v := q.Get("priority"); v != "" {
		if f.Priority, err = casemodel.ParsePriority(v); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	for key, dst := range map[string]*int{"limit": &f.Limit, "offset": &f.Offset} {
		n, ok := count(w, r, key)
		if !ok {
			return
		}
		*dst = n
	}
	cases, err := s.store.ListCases(f)
	writeList(s, w, cases, err)
}

// count reads a whole-number query parameter (0 when absent); on a bad
// value it answers 400 and reports false.
func count(w http.ResponseWriter, r *http.Request, key string) (int, bool) {
	v := r.URL.Query().Get(key)
	if v == "" {
		return 0, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s must be a whole number ≥ 0, got %q", key, v))
		return 0, false
	}
	return n, true
}

// writeList answers a listing: a JSON array, [] rather than null when
// empty, or the store's error.
func writeList[T any](s *Server, w http.ResponseWriter, items []T, err error) {
	if err != nil {
		s.internal(w, err)
		return
	}
	if items == nil {
		items = []T{}
	}
	writeJSON(w, http.StatusOK, items)
}

func (s *Server) caseID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	raw := strings.TrimPrefix(r.PathValue("id"), "#")
	id, err := strconv.ParseUint(raw, 10, 64)
	if err != nil || id == 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("case id must be a number such as 1042, got %q", r.PathValue("id")))
		return 0, false
	}
	return id, true
}

func (s *Server) showCase(w http.ResponseWriter, r *http.Request) {
	id, ok := s.caseID(w, r)
	if !ok {
		return
	}
	c, err := s.store.GetCase(id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no case #%d", id))
		return
	}
	if err != nil {
		s.internal(w, err)
		return
	}
	rows, err := s.store.Outbox(id)
	if err != nil {
		s.internal(w, err)
		return
	}
	view := CaseView{Case: c, Notifications: []Notification{}}
	for _, o := range rows {
		view.Notifications = append(view.Notifications, Notification{
			Kind: o.Kind, MessageID: o.MessageID, Subject: o.Subject, To: o.To, Delivered: o.Delivered,
			Failed: o.Failed, State: o.State, Attempts: o.Attempts, LastError: o.LastError,
			CreatedAt: o.CreatedAt, SentAt: o.SentAt,
		})
	}
	writeJSON(w, http.StatusOK, view)
}

func (s *Server) setStatus(w http.ResponseWriter, r *http.Request) {
	var req StatusRequest
	if !decode(w, r, &req, `{"status": "in_progress", "note": "…"}`) {
		return
	}
	to, err := casemodel.ParseStatus(req.Status)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.mutate(w, r, req.Actor, "status changed", func(c *casemodel.Case, actor string, now time.Time, _ *store.Tx) ([]*store.Outgoing, error) {
		from := c.Status
		if err := casemodel.CheckAgentTransition(from, to); err != nil {
			return nil, err
		}
		c.SetStatus(to, actor, req.Note, now)
		return s.render.StatusChanged(c, notify.Event{From: from, To: to, Actor: actor, Note: req.Note}, now)
	})
}

func (s *Server) assign(w http.ResponseWriter, r *http.Request) {
	var req AssignRequest
	if !decode(w, r, &req, `{"assignee": "ann@example.com"}`) {
		return
	}
	agent := ""
	if strings.TrimSpace(req.Assignee) != "" {
		var err error
		if agent, err = casemodel.ParseAgent(req.Assignee); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	s.mutate(w, r, req.Actor, "assigned", func(c *casemodel.Case, actor string, now time.Time, _ *store.Tx) ([]*store.Outgoing, error) {
		if err := casemodel.CheckAgentAction(c.Status, casemodel.ActAssign); err != nil {
			return nil, err
		}
		from := c.Assignee
		if !c.Assign(agent, actor, now) {
			return nil, nil
		}
		return s.render.Assigned(c, notify.Event{From: casemodel.Status(from), To: casemodel.Status(agent), Actor: actor, Note: req.Note}, now)
	})
}

func (s *Server) addNote(w http.ResponseWriter, r *http.Request) {
	var req NoteRequest
	if !decode(w, r, &req, `{"text": "called the customer"}`) {
		return
	}
	if strings.TrimSpace(req.Text) == "" {
		writeError(w, http.StatusBadRequest, "text is required: the note to add")
		return
	}
	s.mutate(w, r, req.Actor, "note added", func(c *casemodel.Case, actor string, now time.Time, _ *store.Tx) ([]*store.Outgoing, error) {
		if err := casemodel.CheckAgentAction(c.Status, casemodel.ActNote); err != nil {
			return nil, err
		}
		c.AddNote(actor, req.Text, now)
		return s.render.NoteAdded(c, notify.Event{Actor: actor, Note: req.Text}, now)
	})
}

func (s *Server) addReply(w http.ResponseWriter, r *http.Request) {
	var req ReplyRequest
	if !decode(w, r, &req, `{"text": "Please try …"}`) {
		return
	}
	if strings.TrimSpace(req.Text) == "" {
		writeError(w, http.StatusBadRequest, "text is required: the reply to mail to the customer")
		return
	}
	s.mutate(w, r, req.Actor, "reply queued", func(c *casemodel.Case, actor string, now time.Time, tx *store.Tx) ([]*store.Outgoing, error) {
		if err := casemodel.CheckAgentAction(c.Status, casemodel.ActReply); err != nil {
			return nil, err
		}
		rows, err := s.render.Replied(c, notify.Event{Actor: actor, Text: req.Text}, now)
		if err != nil {
			return nil, err
		}
		// The reply joins the thread itself (with its text), so it is
		// queued here rather than by mutate.
		return nil, s.render.EnqueueReply(tx, c, rows, req.Text, actor, now)
	})
}

func (s *Server) setPriority(w http.ResponseWriter, r *http.Request) {
	var req PriorityRequest
	if !decode(w, r, &req, `{"priority": "high", "note": "…"}`) {
		return
	}
	p, err := casemodel.ParsePriority(req.Priority)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.mutate(w, r, req.Actor, "priority changed", func(c *casemodel.Case, actor string, now time.Time, _ *store.Tx) ([]*store.Outgoing, error) {
		if err := casemodel.CheckAgentAction(c.Status, casemodel.ActSetPriority); err != nil {
			return nil, err
		}
		from := c.Priority
		if !c.SetPriority(p, s.render.Targets(), actor, req.Note, now) {
			return nil, nil
		}
		return s.render.PriorityChanged(c, notify.Event{From: casemodel.Status(from), To: casemodel.Status(p), Actor: actor, Note: req.Note}, now)
	})
}

// actorName is how the case history names the agent who acted: "agent:"
// and the name the CLI sent (--as), "agent:cli" when it sent none.
func actorName(agent string) string {
	if a := notify.HeaderText(agent); a != "" {
		return "agent:" + a
	}
	return "agent:cli"
}

// decode reads a JSON request body into v; on failure it answers 400 with
// an example of a good body.
func decode(w http.ResponseWriter, r *http.Request, v any, example string) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "body must be JSON like "+example+": "+err.Error())
		return false
	}
	return true
}

// change applies an agent action to a case inside the transaction and
// returns the notifications it sends (queued by mutate).
type change func(c *casemodel.Case, actor string, now time.Time, tx *store.Tx) ([]*store.Outgoing, error)

// mutate runs fn on case {id} in one transaction with its notifications,
// and answers with the updated case, 404, 409 (refused) or 500.
func (s *Server) mutate(w http.ResponseWriter, r *http.Request, agent, what string, fn change) {
	id, ok := s.caseID(w, r)
	if !ok {
		return
	}
	actor := actorName(agent)
	var c *casemodel.Case
	changed := false
	err := s.store.Update(func(tx *store.Tx) error {
		var err error
		if c, err = tx.Case(id); err != nil {
			return err
		}
		now := s.now()
		before := len(c.Events)
		rows, err := fn(c, actor, now, tx)
		if err != nil {
			return err
		}
		if len(c.Events) == before {
			return nil // nothing changed: nothing to write or send
		}
		if err := s.render.Enqueue(tx, c, rows, now); err != nil {
			return err
		}
		changed = true
		return tx.PutCase(c)
	})
	var te *casemodel.TransitionError
	var ae *casemodel.ActionError
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no case #%d: check the number with `caseintake cases list`", id))
		return
	case errors.As(err, &te), errors.As(err, &ae):
		writeError(w, http.StatusConflict, fmt.Sprintf("case #%d: %v", id, err))
		return
	case err != nil:
		s.internal(w, err)
		return
	}
	s.log.Info("case "+what, "case", id, "actor", actor)
	if changed && s.onCommit != nil {
		s.onCommit() // kick the outbox worker
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) trace(w http.ResponseWriter, r *http.Request) {
	id := strings.Trim(strings.TrimSpace(r.URL.Query().Get("message_id")), "<>")
	if id == "" {
		writeError(w, http.StatusBadRequest, "message_id is required")
		return
	}
	ds, err := s.store.Trace(id)
	writeList(s, w, ds, err)
}

func (s *Server) quarantine(w http.ResponseWriter, r *http.Request) {
	limit, ok := count(w, r, "limit")
	if !ok {
		return
	}
	ds, err := s.store.Quarantined(limit)
	writeList(s, w, ds, err)
}

// quarantineSeq reads the {seq} of a quarantine endpoint; on a bad value
// it answers 400 and reports false.
func quarantineSeq(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("quarantine record must be a number from `quarantine list --json` (seq), got %q", r.PathValue("seq")))
		return 0, false
	}
	return seq, true
}

// quarantineRecord looks up record {seq}; on failure it answers 400, 404,
// 409 (not a quarantine) or 500 and returns nil.
func (s *Server) quarantineRecord(w http.ResponseWriter, r *http.Request) (q, settledBy *store.Decision) {
	seq, ok := quarantineSeq(w, r)
	if !ok {
		return nil, nil
	}
	q, settledBy, err := s.store.QuarantineRecord(seq)
	if err != nil {
		s.quarantineError(w, err)
		return nil, nil
	}
	return q, settledBy
}

// quarantineError answers a refusal from the store or the desk.
func (s *Server) quarantineError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, store.ErrNotRetryable):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, store.ErrNoRequester):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		s.internal(w, err)
	}
}

func (s *Server) showQuarantine(w http.ResponseWriter, r *http.Request) {
	q, settledBy := s.quarantineRecord(w, r)
	if q == nil {
		return
	}
	key := q.MessageID
	if key == "" {
		key = q.MessageKey
	}
	trace, err := s.store.Trace(key)
	if err != nil {
		s.internal(w, err)
		return
	}
	view := QuarantineView{Decision: q, Reason: strings.TrimPrefix(q.Outcome, store.OutcomeQuarantined+":"), SettledBy: settledBy, Trace: trace}
	if view.Trace == nil {
		view.Trace = []*store.Decision{}
	}
	if s.desk != nil {
		salvaged := s.desk.Salvage(q)
		view.Salvaged = &salvaged
	}
	writeJSON(w, http.StatusOK, view)
}

// rawQuarantine answers the exact bytes the daemon stored of a quarantined
// message (message/rfc822).
func (s *Server) rawQuarantine(w http.ResponseWriter, r *http.Request) {
	q, _ := s.quarantineRecord(w, r)
	if q == nil {
		return
	}
	if q.RawRef == "" {
		writeError(w, http.StatusConflict, fmt.Sprintf("record %d (%s) has no stored bytes: the message was never downloaded; it is in the quarantine folder of mailbox %s (UID %d)", q.Seq, q.Outcome, q.Mailbox, q.UID))
		return
	}
	f, err := s.store.OpenRaw(q.RawRef)
	if err != nil {
		s.internal(w, fmt.Errorf("record %d: raw message %s: %w", q.Seq, q.RawRef, err))
		return
	}
	defer f.Close()
	w.Header().Set("Content-Length", strconv.FormatInt(f.Size(), 10))
	w.Header().Set("Content-Type", "message/rfc822")
	if _, err := io.Copy(w, f); err != nil {
		s.log.Warn("api: sending a raw quarantined message failed", "seq", q.Seq, "raw", q.RawRef, "err", err)
	}
}

func (s *Server) retry(w http.ResponseWriter, r *http.Request) {
	seq, ok := quarantineSeq(w, r)
	if !ok {
		return
	}
	if s.desk == nil {
		writeError(w, http.StatusServiceUnavailable, "retry is not available in this daemon")
		return
	}
	s.answerDecision(w, s.desk.Retry, seq)
}

func (s *Server) release(w http.ResponseWriter, r *http.Request) {
	seq, ok := quarantineSeq(w, r)
	if !ok {
		return
	}
	var req ReleaseRequest
	if !decode(w, r, &req, `{"requester": "alice@customer.example", "subject": "…", "actor": "ann@example.com"}`) {
		return
	}
	if s.desk == nil {
		writeError(w, http.StatusServiceUnavailable, "release is not available in this daemon")
		return
	}
	actor := actorName(req.Actor)
	s.answerDecision(w, func(seq uint64) (*store.Decision, error) { return s.desk.Release(seq, actor, req) }, seq)
}

// answerDecision runs a desk action on record seq and answers with the
// new decision, kicking the outbox worker.
func (s *Server) answerDecision(w http.ResponseWriter, act func(uint64) (*store.Decision, error), seq uint64) {
	d, err := act(seq)
	if err != nil {
		s.quarantineError(w, err)
		return
	}
	if s.onCommit != nil {
		s.onCommit()
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) internal(w http.ResponseWriter, err error) {
	s.log.Error("api: internal error", "err", err)
	writeError(w, http.StatusInternalServerError, "internal error: "+err.Error())
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
