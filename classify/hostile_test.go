package classify

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestParseHostileInputsBounded feeds inputs built to make a careless parser
// slow or hungry; each must finish quickly without error other than a
// limit.
func TestParseHostileInputsBounded(t *testing.T) {
	var recipients strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&recipients, "\"Person %d\" <p%d@example.com>, ", i, i)
	}
	var words strings.Builder
	for i := range 20000 {
		cs := []string{"utf-8", "iso-8859-1", "koi8-r", "x-nope"}[i%4]
		fmt.Fprintf(&words, "=?%s?q?a=E9?= ", cs)
	}
	var received strings.Builder
	for range 5000 {
		received.WriteString("Received: from a by b\r\n")
	}
	tests := []struct {
		name string
		raw  string
	}{
		{"deep comments in From", "From: " + strings.Repeat("(", 100000) + "a@b\r\n\r\n"},
		{"deep comments in Date", "From: a@b\r\nDate: " + strings.Repeat("(", 150) + "\r\n\r\n"},
		{"5000 recipients", "From: a@b\r\nTo: " + recipients.String() + "\r\n\r\n"},
		{"20000 encoded-words", "From: a@b\r\nSubject: " + words.String() + "\r\n\r\n"},
		{"unterminated encoded-words", "From: a@b\r\nSubject: " + strings.Repeat("=?utf-8?q?", 20000) + "\r\n\r\n"},
		{"5000 Received", "From: a@b\r\n" + received.String() + "\r\n"},
		{"many References garbage", "From: a@b\r\nReferences: " + strings.Repeat("<a <b@c> > ", 20000) + "\r\n\r\n"},
		{"10 MB line", "From: a@b\r\n\r\n" + strings.Repeat("x", 10<<20)},
		{"10 MB line in a part", "From: a@b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/x\r\n\r\n" + strings.Repeat("x", 10<<20) + "\r\n--b--"},
		{"HTML open tags", "From: a@b\r\nContent-Type: text/html\r\n\r\n" + strings.Repeat("<a <script ", 100000)},
		{"HTML scripts", "From: a@b\r\nContent-Type: text/html\r\n\r\n" + strings.Repeat("<script>x</script><style>", 50000)},
		{"HTML entities", "From: a@b\r\nContent-Type: text/html\r\n\r\n" + strings.Repeat("&amp;&#1234;&#xffffff;&", 50000)},
		{"nested multiparts to the limit", string(nested(20))},
		{"500 parts", string(manyParts(500))},
		{"boundary-like lines", "From: a@b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n" + strings.Repeat("--bb\r\n--b-\r\n--b x\r\n", 100000) + "--b--"},
		{"long parameter list", "From: a@b\r\nContent-Type: text/plain" + strings.Repeat("; a*1*=x", 20000) + "\r\n\r\nx"},
		{"many header fields", "From: a@b\r\n" + strings.Repeat("X: y\r\n", 40000) + "\r\n"},
		{"base64 garbage", "From: a@b\r\nContent-Transfer-Encoding: base64\r\n\r\n" + strings.Repeat("!@#$%^&*()", 1<<20)},
		{"qp garbage", "From: a@b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + strings.Repeat("= =\t=\r=Z=", 1<<20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			m, err := Parse(strings.NewReader(tt.raw), DefaultLimits())
			// A generous bound: linear work on these inputs takes well
			// under a second, even with -race on a loaded 2-core machine,
			// while a quadratic blow-up on them takes hours. Speed itself
			// is measured by BenchmarkParse, not here.
			if d := time.Since(start); d > time.Minute {
				t.Errorf("took %v: work is not bounded by the input size", d)
			}
			if err != nil {
				if pe, ok := err.(*ParseError); !ok || !strings.HasPrefix(pe.Reason, "limit:") {
					t.Errorf("err = %v", err)
				}
				return
			}
			checkInvariants(t, tt.name, m)
		})
	}
}

// TestParseConcurrent runs Parse and Match from many goroutines (for -race).
func TestParseConcurrent(t *testing.T) {
	u := NewUrgency(DefaultUrgentPhrases())
	raw := rawMessage([]string{"Subject: =?utf-8?q?Re=3A_Produ=C3=A7=C3=A3o_parada?=", `Content-Type: multipart/mixed; boundary="b"`},
		"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b\r\nContent-Type: application/pdf; name=a.pdf\r\n\r\ny\r\n--b--\r\n")
	done := make(chan error)
	for range 8 {
		go func() {
			for range 50 {
				m, err := Parse(bytes.NewReader(raw), DefaultLimits())
				if err != nil {
					done <- err
					return
				}
				if p, ok := u.Match(m.Subject); !ok || p != "Produção parada" {
					done <- fmt.Errorf("Match = %q, %v", p, ok)
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
