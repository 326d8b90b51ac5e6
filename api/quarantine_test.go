package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/intake"
	"github.com/caseintake/caseintake/mailbox"
	"github.com/caseintake/caseintake/notify"
	"github.com/caseintake/caseintake/store"
)

// pipelineDesk serves the quarantine endpoints from a real pipeline, as
// the daemon's adapter in cmd does.
type pipelineDesk struct{ p *intake.Pipeline }

func (d pipelineDesk) Retry(seq uint64) (*store.Decision, error) { return d.p.Retry(seq) }

func (d pipelineDesk) Release(seq uint64, actor string, req ReleaseRequest) (*store.Decision, error) {
	return d.p.Release(seq, intake.Release{Actor: actor, Requester: req.Requester, Subject: req.Subject})
}

func (d pipelineDesk) Salvage(q *store.Decision) Salvaged {
	m, note := d.p.Salvage(q)
	return Salvaged{MessageID: m.MessageID, From: m.From, FromName: m.FromName, ReplyTo: m.ReplyTo, Subject: m.Subject, Note: note}
}

// quarantineFixture is the API over a store and pipeline holding three
// quarantined messages: one nested too deep (seq 1), one with no header
// (seq 2) and one too large to download (seq 3).
type quarantineFixture struct {
	st     *store.Store
	client *Client
	url    string
	deep   string // the raw bytes of the first
}

func newQuarantineFixture(t *testing.T) *quarantineFixture {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r, err := notify.NewRenderer(config.SMTP{From: "Example Support <support@example.test>", EnvelopeSender: "<>"},
		config.Notify{Team: []string{"team@example.test"}, Language: "en"})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	p := intake.New(st, r, intake.Options{ReopenWindow: time.Hour, OwnAddresses: []string{"support@example.test"}}, log, nil)
	var deep strings.Builder
	deep.WriteString("From: Alice <alice@customer.example>\r\nSubject: Invoices fail\r\nMessage-ID: <deep@customer.example>\r\nMIME-Version: 1.0\r\n")
	for i := range 30 {
		fmt.Fprintf(&deep, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	deep.WriteString("Content-Type: text/plain\r\n\r\nhello\r\n")
	for uid, raw := range map[uint32]string{1: deep.String(), 2: "\x00 no header here\r\n"} {
		if d := p.Handle(context.Background(), &mailbox.Incoming{Mailbox: "support", UIDValidity: 1, UID: uid, Size: int64(len(raw)),
			InternalDate: t0, Body: strings.NewReader(raw)}); d.Action != mailbox.Quarantine {
			t.Fatalf("UID %d: %+v", uid, d)
		}
	}
	if d := p.Handle(context.Background(), &mailbox.Incoming{Mailbox: "support", UIDValidity: 1, UID: 3, MessageID: "huge@customer.example",
		Size: 1 << 30, Oversize: true}); d.Action != mailbox.Quarantine {
		t.Fatalf("oversize: %+v", d)
	}
	srv := NewServer(st, r, token, log, nil)
	srv.SetQuarantineDesk(pipelineDesk{p})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &quarantineFixture{st: st, client: NewClient(strings.TrimPrefix(hs.URL, "http://"), token), url: hs.URL, deep: deep.String()}
}

// seqOf returns the quarantine record of mailbox UID uid.
func (f *quarantineFixture) seqOf(t *testing.T, uid uint32) uint64 {
	t.Helper()
	d, err := f.st.DecisionByUID("support", 1, uid)
	if err != nil || d == nil {
		t.Fatalf("UID %d: %v", uid, err)
	}
	return d.Seq
}

func wantStatus(t *testing.T, what string, err error, status int, text string) {
	t.Helper()
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != status || !strings.Contains(ae.Message, text) {
		t.Errorf("%s: %v, want %d with %q", what, err, status, text)
	}
}

func TestQuarantineShowAndRaw(t *testing.T) {
	f := newQuarantineFixture(t)
	ctx := context.Background()
	deep := f.seqOf(t, 1)
	v, err := f.client.QuarantineRecord(ctx, deep)
	if err != nil {
		t.Fatal(err)
	}
	if v.Reason != "limit:depth" || v.Mailbox != "support" || v.UID != 1 || v.SettledBy != nil || len(v.Trace) != 1 ||
		v.Salvaged == nil || v.Salvaged.From != "alice@customer.example" || v.Salvaged.Subject != "Invoices fail" ||
		!strings.Contains(v.Salvaged.Note, "body cannot be read") {
		t.Errorf("show: %+v salvaged %+v", v.Decision, v.Salvaged)
	}
	var raw bytes.Buffer
	if n, err := f.client.QuarantinedRaw(ctx, deep, &raw); err != nil || n != int64(len(f.deep)) || raw.String() != f.deep {
		t.Errorf("raw: %d bytes, %v; same bytes: %v", n, err, raw.String() == f.deep)
	}
	_, err = f.client.QuarantinedRaw(ctx, f.seqOf(t, 3), &raw)
	wantStatus(t, "raw of an undownloaded message", err, http.StatusConflict, "never downloaded; it is in the quarantine folder of mailbox support (UID 3)")
	_, err = f.client.QuarantineRecord(ctx, 999)
	wantStatus(t, "unknown record", err, http.StatusNotFound, "quarantine list --json")

	resp, err := http.Get(f.url + fmt.Sprintf("/api/v1/quarantine/%d/raw", deep))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("raw without a token: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, f.url+"/api/v1/quarantine/x1", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a seq that is no number: %d", resp.StatusCode)
	}
}

func TestQuarantineRelease(t *testing.T) {
	f := newQuarantineFixture(t)
	ctx := context.Background()
	garbage := f.seqOf(t, 2)
	_, err := f.client.ReleaseQuarantined(ctx, garbage, ReleaseRequest{Actor: "ann@example.test"})
	wantStatus(t, "release without a sender", err, http.StatusBadRequest, "no sender address can be found in the message")
	_, err = f.client.ReleaseQuarantined(ctx, garbage, ReleaseRequest{Requester: "nobody", Actor: "ann@example.test"})
	wantStatus(t, "release to a requester that is no address", err, http.StatusBadRequest, "requester must be an email address")

	d, err := f.client.ReleaseQuarantined(ctx, garbage, ReleaseRequest{Requester: "carol@customer.example", Subject: "Garbled", Actor: "ann@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Outcome != store.OutcomeNewCase || d.Supersedes != garbage || !strings.Contains(d.Signal, "released from quarantine by agent:ann@example.test") {
		t.Fatalf("release: %+v", d)
	}
	c, err := f.st.GetCase(d.CaseID)
	if err != nil || c.Requester != "carol@customer.example" || c.Subject != "Garbled" {
		t.Fatalf("case: %+v %v", c, err)
	}
	v, err := f.client.QuarantineRecord(ctx, garbage)
	if err != nil || v.SettledBy == nil || v.SettledBy.Seq != d.Seq {
		t.Errorf("show after release: %+v %v", v, err)
	}
	_, err = f.client.ReleaseQuarantined(ctx, garbage, ReleaseRequest{Requester: "carol@customer.example"})
	wantStatus(t, "second release", err, http.StatusConflict, "no longer in quarantine")
	_, err = f.client.ReleaseQuarantined(ctx, d.Seq, ReleaseRequest{})
	wantStatus(t, "release of a case decision", err, http.StatusConflict, "not a quarantine")
	if q, _ := f.st.Quarantined(0); len(q) != 2 {
		t.Errorf("%d left in quarantine, want 2", len(q))
	}
}
