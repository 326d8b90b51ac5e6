package notify

import (
	"strings"
	"testing"

	"github.com/caseintake/caseintake/casemodel"
)

// BenchmarkRenderNewCase renders what a new normal case sends (the
// acknowledgement and the team notice) with a 2,000-character excerpt:
// a backlog renders this for every message.
func BenchmarkRenderNewCase(b *testing.B) {
	r, err := testRendererTB(b)
	if err != nil {
		b.Fatal(err)
	}
	text := strings.Repeat("Our checkout page returns error 500 since the update at 10:00; grüße aus Köln. ", 30)
	b.ReportAllocs()
	for b.Loop() {
		c := casemodel.New(1042, "Checkout fails with error 500", "bob@shop.example", "Bob", "support", casemodel.Normal, t0)
		c.Messages = append(c.Messages, casemodel.Message{MessageID: "m1@shop.example", Direction: casemodel.In})
		if _, err := r.NewCase(c, Event{Signal: "new", Text: text, ReplyTo: "m1@shop.example"}, true, t0); err != nil {
			b.Fatal(err)
		}
	}
}
