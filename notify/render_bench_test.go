package notify

import (
	"strings"
	"testing"

	"github.com/caseintake/caseintake/casemodel"
)

// newCaseWithText is a new normal case whose opening message carries a
// text longer than the team notice's 2,000-character excerpt.
func newCaseWithText() (*casemodel.Case, string) {
	text := strings.Repeat("Our checkout page returns error 500 since the update at 10:00; grüße aus Köln. ", 30)
	c := casemodel.New(1042, "Checkout fails with error 500", "bob@shop.example", "Bob", "support", casemodel.Normal, t0)
	c.Messages = append(c.Messages, casemodel.Message{MessageID: "m1@shop.example", Direction: casemodel.In, Text: text})
	return c, text
}

// BenchmarkRenderNewCase queues what a new normal case sends (the
// acknowledgement and the team notice), as the intake does in its
// transaction for every new case of a backlog.
func BenchmarkRenderNewCase(b *testing.B) {
	r, err := testRendererTB(b)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		c, text := newCaseWithText()
		if _, err := r.NewCase(c, Event{Signal: "new", Text: text, TextOf: "m1@shop.example", ReplyTo: "m1@shop.example"}, true, t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkComposeNewCase renders the two messages a new normal case
// queued, as the notify worker does when it sends them.
func BenchmarkComposeNewCase(b *testing.B) {
	r, err := testRendererTB(b)
	if err != nil {
		b.Fatal(err)
	}
	c, text := newCaseWithText()
	rows, err := r.NewCase(c, Event{Signal: "new", Text: text, TextOf: "m1@shop.example", ReplyTo: "m1@shop.example"}, true, t0)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, o := range rows {
			if _, err := r.Compose(c, o); err != nil {
				b.Fatal(err)
			}
		}
	}
}
