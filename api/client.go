package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/store"
)

// Client talks to a running daemon's API.
type Client struct {
	listen string
	base   string
	token  string
	http   *http.Client
}

// NewClient returns a client for the daemon listening on listen (host:port
// or unix:/path, as in api.listen).
func NewClient(listen, token string) *Client {
	tr := &http.Transport{}
	base := "http://" + listen
	if path, ok := strings.CutPrefix(listen, "unix:"); ok {
		base = "http://caseintake"
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
	}
	return &Client{listen: listen, base: base, token: token, http: &http.Client{Transport: tr, Timeout: time.Minute}}
}

// Error is an error answer from the daemon.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

// send makes one request and returns a 2xx answer for the caller to read
// and close; anything else becomes an error saying what to do.
func (c *Client) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) {
			return nil, fmt.Errorf("cannot reach caseintake at %s: is the service running? (%v)", c.listen, opErr.Err)
		}
		return nil, fmt.Errorf("cannot reach caseintake at %s: %w", c.listen, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var eb errorBody
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&eb)
		if eb.Error == "" {
			eb.Error = resp.Status
		}
		if resp.StatusCode == http.StatusUnauthorized {
			eb.Error += " (the CLI reads the token from api.token_file of the same config)"
		}
		return nil, &Error{Status: resp.StatusCode, Message: eb.Error}
	}
	return resp, nil
}

// ListCases lists cases matching f.
func (c *Client) ListCases(ctx context.Context, f store.Filter) ([]*casemodel.Case, error) {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("status", string(f.Status))
	set("priority", string(f.Priority))
	set("assignee", f.Assignee)
	set("requester", f.Requester)
	set("q", f.Text)
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.Offset > 0 {
		q.Set("offset", strconv.Itoa(f.Offset))
	}
	var out []*casemodel.Case
	err := c.do(ctx, http.MethodGet, "/api/v1/cases?"+q.Encode(), nil, &out)
	return out, err
}

// Case returns one case with its notifications.
func (c *Client) Case(ctx context.Context, id uint64) (*CaseView, error) {
	var out CaseView
	err := c.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/cases/%d", id), nil, &out)
	return &out, err
}

// SetStatus changes a case's status as an agent.
func (c *Client) SetStatus(ctx context.Context, id uint64, req StatusRequest) (*casemodel.Case, error) {
	var out casemodel.Case
	err := c.do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/cases/%d/status", id), req, &out)
	return &out, err
}

// Assign sets or clears a case's assignee.
func (c *Client) Assign(ctx context.Context, id uint64, req AssignRequest) (*casemodel.Case, error) {
	var out casemodel.Case
	err := c.do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/cases/%d/assignee", id), req, &out)
	return &out, err
}

// AddNote adds an internal note to a case.
func (c *Client) AddNote(ctx context.Context, id uint64, req NoteRequest) (*casemodel.Case, error) {
	var out casemodel.Case
	err := c.do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/cases/%d/notes", id), req, &out)
	return &out, err
}

// Reply mails a public reply to a case's participants.
func (c *Client) Reply(ctx context.Context, id uint64, req ReplyRequest) (*casemodel.Case, error) {
	var out casemodel.Case
	err := c.do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/cases/%d/replies", id), req, &out)
	return &out, err
}

// SetPriority sets a case's priority as an agent.
func (c *Client) SetPriority(ctx context.Context, id uint64, req PriorityRequest) (*casemodel.Case, error) {
	var out casemodel.Case
	err := c.do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/cases/%d/priority", id), req, &out)
	return &out, err
}

// Trace returns every decision recorded about a Message-ID.
func (c *Client) Trace(ctx context.Context, messageID string) ([]*store.Decision, error) {
	var out []*store.Decision
	err := c.do(ctx, http.MethodGet, "/api/v1/trace?message_id="+url.QueryEscape(messageID), nil, &out)
	return out, err
}

// Quarantined lists the messages standing in quarantine, newest first.
func (c *Client) Quarantined(ctx context.Context, limit int) ([]*store.Decision, error) {
	var out []*store.Decision
	err := c.do(ctx, http.MethodGet, "/api/v1/quarantine?limit="+strconv.Itoa(limit), nil, &out)
	return out, err
}

// RetryQuarantined runs quarantine record seq through the pipeline again
// and returns the new decision.
func (c *Client) RetryQuarantined(ctx context.Context, seq uint64) (*store.Decision, error) {
	var out store.Decision
	err := c.do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/quarantine/%d/retry", seq), struct{}{}, &out)
	return &out, err
}

// QuarantineRecord returns quarantine record seq with what can be salvaged
// from it and the trace of its message.
func (c *Client) QuarantineRecord(ctx context.Context, seq uint64) (*QuarantineView, error) {
	var out QuarantineView
	err := c.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/quarantine/%d", seq), nil, &out)
	return &out, err
}

// QuarantinedRaw writes the stored bytes of quarantine record seq's
// message to w and returns how many it wrote.
func (c *Client) QuarantinedRaw(ctx context.Context, seq uint64, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, http.MethodGet, fmt.Sprintf("/api/v1/quarantine/%d/raw", seq), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("raw message of record %d cut short: got %d of %d bytes", seq, n, resp.ContentLength)
	}
	return n, err
}

// ReleaseQuarantined opens a case from quarantine record seq by hand and
// returns the new decision.
func (c *Client) ReleaseQuarantined(ctx context.Context, seq uint64, req ReleaseRequest) (*store.Decision, error) {
	var out store.Decision
	err := c.do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/quarantine/%d/release", seq), req, &out)
	return &out, err
}
