package intake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/caseintake/caseintake/classify"
	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/mailbox"
	"github.com/caseintake/caseintake/notify"
	"github.com/caseintake/caseintake/store"
)

// TestRetryAfterAFixMakesTheQuarantinedMessageACase: a message quarantined
// under strict limits becomes a case when retried by a pipeline with the
// limits raised (an upgrade or a config fix), once.
func TestRetryAfterAFixMakesTheQuarantinedMessageACase(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := notify.NewRenderer(config.SMTP{From: "Support <" + supportAddr + ">", EnvelopeSender: "<>"}, config.Notify{Team: []string{teamAddr}})
	if err != nil {
		t.Fatal(err)
	}
	pipeline := func(lim classify.Limits) *Pipeline {
		return New(st, r, Options{ReopenWindow: time.Hour, OwnAddresses: []string{supportAddr}, Limits: lim}, slog.New(slog.DiscardHandler), nil)
	}
	strict := classify.DefaultLimits()
	strict.MaxDepth = 2
	var raw strings.Builder
	raw.WriteString("From: alice@customer.example\r\nSubject: nested\r\nMessage-ID: <nest@customer.example>\r\nMIME-Version: 1.0\r\n")
	for i := range 5 {
		fmt.Fprintf(&raw, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	raw.WriteString("Content-Type: text/plain\r\n\r\nhello\r\n")
	disp := pipeline(strict).Handle(context.Background(), &mailbox.Incoming{Mailbox: "support", UIDValidity: 1, UID: 7,
		Size: int64(raw.Len()), InternalDate: time.Now(), Body: strings.NewReader(raw.String())})
	if disp.Action != mailbox.Quarantine {
		t.Fatalf("strict pipeline: %+v, want quarantine", disp)
	}
	q, err := st.Quarantined(0)
	if err != nil || len(q) != 1 {
		t.Fatalf("quarantine list: %v %v", q, err)
	}

	fixed := pipeline(classify.DefaultLimits())
	d, err := fixed.Retry(q[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if d.Outcome != store.OutcomeNewCase || d.Supersedes != q[0].Seq || d.UID != 7 {
		t.Fatalf("retry decision %+v", d)
	}
	if left, _ := st.Quarantined(0); len(left) != 0 {
		t.Fatalf("still listed as quarantined: %+v", left)
	}
	again, err := fixed.Retry(q[0].Seq)
	if err != nil || again.Outcome != store.OutcomeIgnored+":duplicate" {
		t.Fatalf("second retry: %+v %v", again, err)
	}
	if cs, _ := st.ListCases(store.Filter{}); len(cs) != 1 {
		t.Fatalf("%d cases, want 1", len(cs))
	}
	if _, err := fixed.Retry(d.Seq); !errors.Is(err, store.ErrNotRetryable) {
		t.Fatalf("retry of a case decision: %v, want ErrNotRetryable", err)
	}
	if _, err := fixed.Retry(999); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("retry of an unknown record: %v", err)
	}
}

func TestRetryOfAnUndownloadedMessageSaysWhatToDo(t *testing.T) {
	h := newHarness(t, harnessOpts{noWorkers: true})
	disp := h.pipeline.Handle(context.Background(), &mailbox.Incoming{Mailbox: "support", UIDValidity: 1, UID: 3,
		MessageID: "huge@customer.example", Size: 1 << 30, Oversize: true})
	if disp.Action != mailbox.Quarantine {
		t.Fatalf("%+v", disp)
	}
	q, _ := h.store.Quarantined(0)
	_, err := h.pipeline.Retry(q[0].Seq)
	if !errors.Is(err, store.ErrNotRetryable) || !strings.Contains(err.Error(), "raise max_message_size") {
		t.Fatalf("err = %v", err)
	}
}
