package gen

import (
	"bytes"
	"testing"

	"github.com/caseintake/caseintake/classify"
)

// TestMix checks that the generator is seeded, sized and parses as intended.
func TestMix(t *testing.T) {
	a, b := New(7), New(7)
	u := classify.NewUrgency(classify.DefaultUrgentPhrases())
	counts := map[Kind]int{}
	var total int
	const n = 1000
	for i := range n {
		m := a.Next()
		if !bytes.Equal(m.Data, b.Next().Data) {
			t.Fatalf("message %d differs between two generators with the same seed", i)
		}
		if len(m.Data) < MinSize || len(m.Data) > MaxSize+4<<10 {
			t.Errorf("message %d: %d bytes, outside %d..%d", i, len(m.Data), MinSize, MaxSize)
		}
		total += len(m.Data)
		counts[m.Kind]++
		msg, err := classify.Parse(bytes.NewReader(m.Data), classify.DefaultLimits())
		if err != nil {
			t.Fatalf("message %d (%s) does not parse: %v\n%s", i, m.Kind, err, m.Data[:min(len(m.Data), 2000)])
		}
		_, urgent := u.Match(msg.Subject)
		if urgent != (m.Kind == Urgent) {
			t.Errorf("message %d (%s): urgent=%v for subject %q", i, m.Kind, urgent, msg.Subject)
		}
		if (msg.Automated != "") != (m.Kind == AutoReply) {
			t.Errorf("message %d (%s): automated=%q", i, m.Kind, msg.Automated)
		}
	}
	t.Logf("%d messages, mean %d bytes, kinds %v", n, total/n, counts)
	if counts[Urgent] < n/200 || counts[Urgent] > n/50 {
		t.Errorf("urgent share %d of %d, want about 1%%", counts[Urgent], n)
	}
}

func TestBigSize(t *testing.T) {
	if got := BigSize(1 << 20); got > 1<<20 || got < 1<<20-100 {
		t.Errorf("BigSize(1 MiB) = %d", got)
	}
}

// BenchmarkParseBacklog parses the backlog mix that make bench drains:
// the parse share of the drain's CPU, measurable without a mail server.
func BenchmarkParseBacklog(b *testing.B) {
	g := New(1)
	msgs := make([][]byte, 500)
	var total int64
	for i := range msgs {
		msgs[i] = g.Next().Data
		total += int64(len(msgs[i]))
	}
	b.SetBytes(total / int64(len(msgs)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := classify.Parse(bytes.NewReader(msgs[i%len(msgs)]), classify.DefaultLimits()); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
