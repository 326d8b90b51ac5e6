package intake

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/caseintake/caseintake/classify"
	"github.com/caseintake/caseintake/mailbox"
	"github.com/caseintake/caseintake/store"
)

// Each parser limit, exceeded, quarantines the message with the limit as
// the reason; the raw bytes are kept and the worker goes on.
func TestParserLimitsQuarantineWithReason(t *testing.T) {
	lim := classify.Limits{MaxHeaderBytes: 4096, MaxParts: 20, MaxDepth: 5, MaxTextBytes: 1 << 16}
	h := newHarness(t, harnessOpts{tune: func(o *Options) { o.Limits = lim }})
	head := func(id string) string {
		return "From: alice@customer.example\r\nSubject: hostile " + id + "\r\nMessage-ID: <" + id + "@customer.example>\r\nMIME-Version: 1.0\r\n"
	}
	var parts strings.Builder
	parts.WriteString(head("parts") + "Content-Type: multipart/mixed; boundary=\"p\"\r\n\r\n")
	for i := range 30 {
		fmt.Fprintf(&parts, "--p\r\nContent-Type: text/plain\r\n\r\npart %d\r\n", i)
	}
	parts.WriteString("--p--\r\n")
	var deep strings.Builder
	deep.WriteString(head("depth"))
	for i := range 8 {
		fmt.Fprintf(&deep, "Content-Type: multipart/mixed; boundary=\"d%d\"\r\n\r\n--d%d\r\n", i, i)
	}
	deep.WriteString("Content-Type: text/plain\r\n\r\ndeep\r\n")
	bigHeader := head("header") + "X-Filler: " + strings.Repeat("x", 5000) + "\r\n\r\nbody\r\n"
	bigPartHeader := head("partheader") + "Content-Type: multipart/mixed; boundary=\"q\"\r\n\r\n--q\r\nContent-Type: text/plain\r\nX-Filler: " +
		strings.Repeat("y", 5000) + "\r\n\r\ntext\r\n--q--\r\n"
	cases := map[string]string{"parts": parts.String(), "depth": deep.String(), "header": bigHeader, "partheader": bigPartHeader}
	want := map[string]string{"parts": "limit:parts", "depth": "limit:depth", "header": "limit:header-size", "partheader": "limit:header-size"}
	for _, id := range []string{"parts", "depth", "header", "partheader"} {
		h.deliver(supportAddr, cases[id])
	}
	h.deliver(supportAddr, msg("alice@customer.example", "fine", "fine@customer.example"))
	for id, reason := range want {
		d := h.waitDecided(id+"@customer.example", 1)
		if d.Outcome != store.OutcomeQuarantined+":"+reason || d.RawRef == "" {
			t.Errorf("%s: %s (%s) raw=%q, want quarantined:%s with the raw bytes kept", id, d.Outcome, d.Signal, d.RawRef, reason)
		}
	}
	if d := h.waitDecided("fine@customer.example", 1); d.Outcome != store.OutcomeNewCase {
		t.Fatalf("the worker did not go on: %s", d.Outcome)
	}
	h.waitFolder(supportAddr, "Quarantine", 4)
}

// Broken but readable mail becomes a best-effort case with warnings, never
// a lost message.
func TestBrokenMailBecomesCaseWithWarnings(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	mk := func(id, headers, body string) string {
		return "From: alice@customer.example\r\nMessage-ID: <" + id + "@customer.example>\r\n" + headers + "\r\n" + body
	}
	msgs := map[string]string{
		"b64":      mk("b64", "Subject: bad base64\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n", "SGVsbG8gd29y!!!bGQ=\r\n@@@\r\n"),
		"qp":       mk("qp", "Subject: bad qp\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n", "caf=E9 =ZZ broken=\r\nend=4\r\n"),
		"charset":  mk("charset", "Subject: =?x-klingon?q?Qapla=27?= unknown charset\r\nContent-Type: text/plain; charset=x-klingon\r\n", "nuqneH\r\n"),
		"boundary": mk("boundary", "Subject: no boundary\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n", "--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n"),
		"8bit":     mk("8bit", "Subject: Gr\xfc\xdfe aus K\xf6ln\r\nContent-Type: text/plain\r\n", "raw 8-bit header\r\n"),
		"words":    mk("words", "Subject: =?utf-8?B?!!notbase64?= =?utf-8?q?unterminated\r\nContent-Type: text/plain\r\n", "bad words\r\n"),
	}
	for _, raw := range msgs {
		h.deliver(supportAddr, raw)
	}
	for id := range msgs {
		d := h.waitDecided(id+"@customer.example", 1)
		if d.Outcome != store.OutcomeNewCase {
			t.Errorf("%s: %s (%s), want a best-effort case", id, d.Outcome, d.Signal)
			continue
		}
		if id != "8bit" && len(d.Warnings) == 0 {
			t.Errorf("%s: case without warnings", id)
		}
		c := h.caseByID(d.CaseID)
		if c.Subject == "" {
			t.Errorf("%s: case without a subject", id)
		}
	}
}

// A message whose processing panics is quarantined with reason panic, and
// is not offered again: it left the INBOX and a new worker does not see it.
func TestPanickingMessageQuarantinedOnce(t *testing.T) {
	h := newHarness(t, harnessOpts{noWorkers: true})
	// A pipeline without a renderer panics (nil dereference) as soon as a
	// new case needs its notifications: a real panic in the decision path.
	broken := New(h.store, nil, Options{OwnAddresses: []string{supportAddr}, Now: h.clock.Now}, h.pipeline.log, nil)
	h.pipeline = broken
	h.deliver(supportAddr, msg("alice@customer.example", "Boom", "boom@customer.example"))
	_, stop := h.runWorker(h.cfgs["support"])
	d := h.waitDecided("boom@customer.example", 1)
	if d.Outcome != store.OutcomeQuarantined+":panic" || !strings.Contains(d.Signal, "panic") {
		t.Fatalf("decision %s / %s, want quarantined:panic", d.Outcome, d.Signal)
	}
	h.waitFolder(supportAddr, "Quarantine", 1)
	stop()
	if n := len(h.allCases()); n != 0 {
		t.Fatalf("%d cases from a panicking decision (its transaction must roll back)", n)
	}
	// A restart finds nothing to retry.
	h.deliver(supportAddr, msg("bob@customer.example", "after", "after@customer.example"))
	h.runWorker(h.cfgs["support"])
	h.waitDecided("after@customer.example", 1)
	if ds, _ := h.store.Trace("boom@customer.example"); len(ds) != 1 {
		t.Fatalf("%d decisions about the panicking message, want 1 (not retried)", len(ds))
	}
	var _ mailbox.Handler = broken
}

// Messages committed together share one transaction; when one of them
// panics, the others are still committed and only that one is
// quarantined.
func TestPanicInABatchQuarantinesOnlyThatMessage(t *testing.T) {
	h := newHarness(t, harnessOpts{noWorkers: true})
	// Without a renderer a new case panics; an out-of-office needs none.
	broken := New(h.store, nil, Options{OwnAddresses: []string{supportAddr}, Now: h.clock.Now}, h.pipeline.log, nil)
	raws := []string{
		msg("carol@customer.example", "Out of Office", "ooo-batch@customer.example", "Auto-Submitted: auto-replied"),
		msg("alice@customer.example", "Boom", "boom-batch@customer.example"),
		msg("dave@customer.example", "Abwesenheitsnotiz", "ooo2-batch@customer.example", "Auto-Submitted: auto-replied"),
	}
	var batch []mailbox.Staged
	for i, raw := range raws {
		batch = append(batch, broken.Stage(context.Background(), &mailbox.Incoming{Mailbox: "support", UIDValidity: 1,
			UID: uint32(i + 1), Size: int64(len(raw)), Body: strings.NewReader(raw)}))
	}
	ds := broken.Commit(context.Background(), batch)
	want := []mailbox.Action{mailbox.Ack, mailbox.Quarantine, mailbox.Ack}
	for i, d := range ds {
		if d.Action != want[i] {
			t.Errorf("message %d: %v (%s), want %v", i+1, d.Action, d.Reason, want[i])
		}
	}
	for id, outcome := range map[string]string{
		"ooo-batch@customer.example":  store.OutcomeIgnored + ":automated",
		"boom-batch@customer.example": store.OutcomeQuarantined + ":panic",
		"ooo2-batch@customer.example": store.OutcomeIgnored + ":automated",
	} {
		if ds, _ := h.store.Trace(id); len(ds) != 1 || ds[0].Outcome != outcome {
			t.Errorf("%s: decisions %+v, want one %s", id, ds, outcome)
		}
	}
	if n := len(h.allCases()); n != 0 {
		t.Fatalf("%d cases from a panicking decision (its transaction must roll back)", n)
	}
}

// A server whose RFC822.SIZE understates a message (some only estimate
// it): Stage reads at most the in-memory bound into memory and streams the
// rest after it, and the whole message is stored.
func TestUnderstatedSizeStillStoresTheWholeMessage(t *testing.T) {
	h := newHarness(t, harnessOpts{noWorkers: true})
	raw := strings.Replace(msg("alice@customer.example", "Big log attached", "big-log@customer.example"),
		"Hello, please help.", strings.Repeat("a log line that goes on and on\r\n", inMemoryMax/30), 1)
	if len(raw) <= inMemoryMax {
		t.Fatalf("test message of %d bytes is not over the in-memory bound", len(raw))
	}
	st := h.pipeline.Stage(context.Background(), &mailbox.Incoming{Mailbox: "support", UIDValidity: 1, UID: 1,
		Size: 2048, Body: strings.NewReader(raw)})
	if d := h.pipeline.Commit(context.Background(), []mailbox.Staged{st})[0]; d.Action != mailbox.Ack {
		t.Fatalf("disposition %+v", d)
	}
	ds, _ := h.store.Trace("big-log@customer.example")
	if len(ds) != 1 || ds[0].Size != int64(len(raw)) {
		t.Fatalf("decisions %+v, want one of %d bytes", ds, len(raw))
	}
	f, err := h.store.OpenRaw(ds[0].RawRef)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, _ := io.ReadAll(f); string(got) != raw {
		t.Fatalf("raw store holds %d bytes, want the message's %d", len(got), len(raw))
	}
}
