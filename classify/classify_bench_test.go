package classify

import (
	"bytes"
	"testing"
)

// BenchmarkParseCorpus parses the shared corpus one message per op, cycling
// through it: ns/op is the mean cost of one real-world message, MB/s the
// parse rate. Compare runs with benchstat (-count 10).
func BenchmarkParseCorpus(b *testing.B) {
	files := loadCorpus(b)
	var total int64
	for _, f := range files {
		total += int64(len(f.data))
	}
	lim := DefaultLimits()
	b.SetBytes(total / int64(len(files)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		f := files[i%len(files)]
		i++
		msg, err := Parse(bytes.NewReader(f.data), lim)
		if err == nil && msg == nil {
			b.Fatalf("%s: no message and no error", f.rel)
		}
	}
}

// BenchmarkUrgencyMatch is the subject check every message goes through.
func BenchmarkUrgencyMatch(b *testing.B) {
	u := NewUrgency(DefaultUrgentPhrases())
	subjects := []string{"AW: WG: Produktion ausgefallen im Werk Süd", "Re: Invoice 2026-0042 is wrong",
		"Out of Office: Login fails after update", "PRODUCTION DOWN: checkout", "Odp: Awaria produkcji"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		u.Match(subjects[i%len(subjects)])
		i++
	}
}
