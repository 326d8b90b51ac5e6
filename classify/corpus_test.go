package classify

import (
	"bytes"
	"errors"
	"io/fs"
	"net/mail"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// corpusDir is the shared corpus of real-world mail, outside the module.
const corpusDir = "../../shared/corpus"

// corpusFile is one message file of the corpus.
type corpusFile struct {
	rel  string // path relative to corpusDir, with "/"
	data []byte
}

// loadCorpus reads every message file of the corpus (not the LICENSE,
// SOURCE and README files), or skips the test when the corpus is absent.
func loadCorpus(tb testing.TB) []corpusFile {
	tb.Helper()
	if _, err := os.Stat(corpusDir); err != nil {
		tb.Skipf("corpus not found at %s (it lives outside the repository, in /work/shared/corpus): %v", corpusDir, err)
	}
	var files []corpusFile
	err := filepath.WalkDir(corpusDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		name := d.Name()
		for _, p := range []string{"LICENSE", "SOURCE", "README"} {
			if strings.HasPrefix(name, p) {
				return nil
			}
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(corpusDir, path)
		files = append(files, corpusFile{rel: filepath.ToSlash(rel), data: data})
		return nil
	})
	if err != nil {
		tb.Fatalf("reading corpus: %v", err)
	}
	if len(files) == 0 {
		tb.Skipf("corpus at %s holds no message files", corpusDir)
	}
	return files
}

func topFolder(rel string) string {
	top, _, _ := strings.Cut(rel, "/")
	return top
}

// perFileTimeout bounds the time one corpus file may take to parse.
const perFileTimeout = 2 * time.Second

// parseBounded parses data and fails the test if Parse panics (reported as
// Reason "internal") or takes longer than perFileTimeout; a Parse that does
// not return at all stops the test after five times that.
func parseBounded(t *testing.T, name string, data []byte) (*Message, error) {
	t.Helper()
	type result struct {
		msg *Message
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		m, err := Parse(bytes.NewReader(data), DefaultLimits())
		done <- result{m, err}
	}()
	var msg *Message
	var err error
	select {
	case r := <-done:
		msg, err = r.msg, r.err
	case <-time.After(5 * perFileTimeout):
		t.Fatalf("%s: Parse did not return within %v", name, 5*perFileTimeout)
	}
	if d := time.Since(start); d > perFileTimeout {
		t.Errorf("%s: Parse took %v (limit %v)", name, d, perFileTimeout)
	}
	var pe *ParseError
	if errors.As(err, &pe) && pe.Reason == "internal" {
		t.Errorf("%s: Parse panicked: %v", name, err)
	}
	if err == nil {
		checkInvariants(t, name, msg)
	}
	return msg, err
}

func TestCorpusSweep(t *testing.T) {
	files := loadCorpus(t)
	type counts struct{ files, parsed, parseErr, automated, bounce, withText int }
	stats := map[string]*counts{}
	reasons := map[string]int{}
	for _, f := range files {
		top := topFolder(f.rel)
		c := stats[top]
		if c == nil {
			c = &counts{}
			stats[top] = c
		}
		c.files++
		msg, err := parseBounded(t, f.rel, f.data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Errorf("%s: error is %T, want *ParseError: %v", f.rel, err, err)
				continue
			}
			c.parseErr++
			reasons[top+" "+pe.Reason]++
			continue
		}
		c.parsed++
		if msg.Automated != "" {
			c.automated++
		}
		if msg.Bounce {
			c.bounce++
		}
		if msg.Text != "" {
			c.withText++
		}
	}
	var tops []string
	for k := range stats {
		tops = append(tops, k)
	}
	sort.Strings(tops)
	for _, top := range tops {
		c := stats[top]
		t.Logf("%-26s files %3d  parsed %3d  ParseError %3d  automated %3d  bounce %3d  with text %3d",
			top, c.files, c.parsed, c.parseErr, c.automated, c.bounce, c.withText)
	}
	var rs []string
	for k, n := range reasons {
		rs = append(rs, k+": "+strconv.Itoa(n))
	}
	sort.Strings(rs)
	t.Logf("ParseError reasons: %s", strings.Join(rs, ", "))
}

// notAutomatedBSD lists files of sisimai's bsd set that are not automatic
// mail, with the reason; every other file there must be classified.
var notAutomatedBSD = map[string]string{
	// Sent by a person with Apple Mail ("Forward the message.", then the
	// bounce quoted with ">"): sisimai digs the bounce out of the quote, but
	// the mail itself is a customer forwarding a bounce, which must open a
	// case. No header marks it, and "Fwd: Returned mail" is deliberately not
	// matched (subject heuristics apply only without a reply or forward
	// prefix).
	"lhost-sendmail-14.eml": "a person forwarding a bounce (Fwd:, Apple Mail, own words before the quote)",
}

func TestSisimaiBouncesAutomated(t *testing.T) {
	files := loadCorpus(t)
	total, flagged := 0, 0
	for _, f := range files {
		if !strings.HasPrefix(f.rel, "sisimai-set-of-emails/maildir/bsd/") {
			continue
		}
		total++
		msg, err := parseBounded(t, f.rel, f.data)
		if err != nil {
			t.Errorf("%s: %v", f.rel, err)
			continue
		}
		if msg.Automated != "" {
			flagged++
			continue
		}
		if reason, ok := notAutomatedBSD[filepath.Base(f.rel)]; ok {
			t.Logf("%s: not automated, as expected: %s", f.rel, reason)
			continue
		}
		t.Errorf("%s: not classified as automated (subject %q, from %q)", f.rel, msg.Subject, msg.From)
	}
	if total == 0 {
		t.Skip("sisimai bsd set not found in the corpus")
	}
	t.Logf("sisimai maildir/bsd: %d of %d classified automated (%.1f%%)", flagged, total, 100*float64(flagged)/float64(total))
	if flagged+len(notAutomatedBSD) < total {
		t.Errorf("automated rate %d/%d is under 100%%", flagged, total)
	}
}

func TestSisimaiNotBounces(t *testing.T) {
	files := loadCorpus(t)
	total, flagged, bounces := 0, 0, 0
	for _, f := range files {
		if !strings.HasPrefix(f.rel, "sisimai-set-of-emails/maildir/not/") {
			continue
		}
		total++
		msg, err := parseBounded(t, f.rel, f.data)
		if err != nil {
			t.Logf("%s: ParseError %v", f.rel, err)
			continue
		}
		if msg.Automated != "" {
			flagged++
		}
		if msg.Bounce {
			bounces++
		}
		t.Logf("%s: automated %q bounce %v", f.rel, msg.Automated, msg.Bounce)
	}
	t.Logf("sisimai maildir/not: %d of %d flagged automated, %d as bounces", flagged, total, bounces)
}

// TestHumanMailNotAutomated checks that ordinary replies from people (the
// talon and crisp corpora) are not flagged as automated.
func TestHumanMailNotAutomated(t *testing.T) {
	files := loadCorpus(t)
	checked := 0
	for _, f := range files {
		top := topFolder(f.rel)
		if top != "talon" && top != "crisp-email-reply-parser" {
			continue
		}
		msg, err := parseBounded(t, f.rel, f.data)
		if err != nil || msg.From == "" {
			continue // a body fragment, not a full message
		}
		checked++
		if msg.Automated != "" || msg.Bounce {
			t.Errorf("%s: human mail flagged automated: %q (bounce %v)", f.rel, msg.Automated, msg.Bounce)
		}
	}
	t.Logf("%d full messages from people checked", checked)
	if checked == 0 {
		t.Skip("no full human messages in the corpus")
	}
}

func BenchmarkParse(b *testing.B) {
	files := loadCorpus(b)
	var total int64
	for _, f := range files {
		total += int64(len(f.data))
	}
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		for _, f := range files {
			_, _ = Parse(bytes.NewReader(f.data), DefaultLimits())
		}
	}
}

// TestCorpusHTMLText extracts text from the HTML reply bodies of real mail
// clients (talon's html_replies), wrapped in an HTML-only message.
func TestCorpusHTMLText(t *testing.T) {
	files := loadCorpus(t)
	n := 0
	for _, f := range files {
		if !strings.HasPrefix(f.rel, "talon/") || !strings.HasSuffix(f.rel, ".html") {
			continue
		}
		n++
		raw := append([]byte("From: a@b.example\r\nContent-Type: text/html\r\n\r\n"), f.data...)
		m, err := parseBounded(t, f.rel, raw)
		if err != nil {
			t.Errorf("%s: %v", f.rel, err)
			continue
		}
		if len(m.Text) < 20 {
			t.Errorf("%s: little text extracted: %q", f.rel, m.Text)
		}
		for _, bad := range []string{"<div", "<p>", "<p ", "<br", "<style", "<script", "</", "&nbsp;", "&amp;", "mso-", "{"} {
			if strings.Contains(strings.ToLower(m.Text), bad) {
				t.Errorf("%s: text still contains %q:\n%s", f.rel, bad, m.Text)
			}
		}
		if os.Getenv("CLASSIFY_SHOW_HTML") != "" {
			t.Logf("%s:\n%s", f.rel, m.Text)
		}
	}
	if n == 0 {
		t.Skip("no HTML replies in the corpus")
	}
}

// parseDate reads every Date that net/mail.ParseDate reads as ParseDate
// does (same instant, same zone offset): its fast path for the common
// form must not change what a date means.
func TestCorpusDatesAsNetMail(t *testing.T) {
	var n int
	for _, f := range loadCorpus(t) {
		hdr, _, _ := bytes.Cut(f.data, []byte("\n\n"))
		if h2, _, ok := bytes.Cut(f.data, []byte("\r\n\r\n")); ok && len(h2) < len(hdr) {
			hdr = h2
		}
		for _, line := range strings.Split(string(hdr), "\n") {
			v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), "Date:")
			if !ok {
				continue
			}
			v = strings.TrimSpace(v)
			want, err := mail.ParseDate(v)
			if err != nil {
				continue
			}
			n++
			got := parseDate(v, func(string) {})
			_, wantOff := want.Zone()
			_, gotOff := got.Zone()
			if !got.Equal(want) || gotOff != wantOff {
				t.Errorf("%s: Date %q read as %v, net/mail reads %v", f.rel, v, got, want)
			}
		}
	}
	if n < 100 {
		t.Fatalf("only %d Date headers net/mail reads in the corpus", n)
	}
	t.Logf("%d Date headers agree", n)
}
