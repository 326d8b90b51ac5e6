package api

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
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

// Server serves the API.
type Server struct {
	store    *store.Store
	render   *notify.Renderer
	token    []byte
	log      *slog.Logger
	onCommit func()
	now      func() time.Time
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
	mux.Handle("GET /api/v1/trace", s.auth(s.trace))
	return mux
}

func (s *Server) auth(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), s.token) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="caseintake"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong API token")
			return
		}
		h(w, r)
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
		if v := q.Get(key); v != "" {
			if *dst, err = strconv.Atoi(v); err != nil || *dst < 0 {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("%s must be a whole number ≥ 0, got %q", key, v))
				return
			}
		}
	}
	cases, err := s.store.ListCases(f)
	if err != nil {
		s.internal(w, err)
		return
	}
	if cases == nil {
		cases = []*casemodel.Case{}
	}
	writeJSON(w, http.StatusOK, cases)
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
	id, ok := s.caseID(w, r)
	if !ok {
		return
	}
	var req StatusRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body must be JSON like {\"status\": \"in_progress\", \"note\": \"…\"}: "+err.Error())
		return
	}
	to, err := casemodel.ParseStatus(req.Status)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	actor := "agent:" + notify.HeaderText(req.Actor)
	if req.Actor == "" {
		actor = "agent:cli"
	}
	var c *casemodel.Case
	queued := 0
	err = s.store.Update(func(tx *store.Tx) error {
		var err error
		if c, err = tx.Case(id); err != nil {
			return err
		}
		from := c.Status
		if err := casemodel.CheckAgentTransition(from, to); err != nil {
			return err
		}
		now := s.now()
		c.SetStatus(to, actor, req.Note, now)
		rows, err := s.render.StatusChanged(c, notify.Event{From: from, To: to, Actor: actor, Note: req.Note}, now)
		if err != nil {
			return err
		}
		if err := s.render.Enqueue(tx, c, rows, now); err != nil {
			return err
		}
		queued = len(rows)
		return tx.PutCase(c)
	})
	var te *casemodel.TransitionError
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no case #%d", id))
		return
	case errors.As(err, &te):
		writeError(w, http.StatusConflict, err.Error())
		return
	case err != nil:
		s.internal(w, err)
		return
	}
	s.log.Info("case status changed", "case", id, "status", to, "actor", actor)
	if queued > 0 && s.onCommit != nil {
		s.onCommit()
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
	if err != nil {
		s.internal(w, err)
		return
	}
	if ds == nil {
		ds = []*store.Decision{}
	}
	writeJSON(w, http.StatusOK, ds)
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
