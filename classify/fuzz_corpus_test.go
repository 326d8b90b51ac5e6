package classify

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// corpusSeeds returns the contents of every corpus message file of at most
// maxSize bytes, in a stable order; none when the corpus is absent.
func corpusSeeds(maxSize int64) [][]byte {
	var paths []string
	_ = filepath.WalkDir(corpusDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		for _, skip := range []string{"LICENSE", "SOURCE", "README", "."} {
			if strings.HasPrefix(d.Name(), skip) {
				return nil
			}
		}
		if fi, err := d.Info(); err == nil && fi.Size() <= maxSize {
			paths = append(paths, path)
		}
		return nil
	})
	sort.Strings(paths)
	var out [][]byte
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			out = append(out, b)
		}
	}
	return out
}

// rawSubject returns the unfolded, undecoded Subject field of a message.
func rawSubject(msg []byte) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(msg))
	sc.Buffer(nil, 1<<20)
	var val []string
	in := false
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			break
		}
		if in && (line[0] == ' ' || line[0] == '\t') {
			val = append(val, line)
			continue
		}
		if in {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Subject") {
			val, in = []string{v}, true
		}
	}
	return strings.Join(val, "\r\n"), in
}

// FuzzDecodeSubject drives subject decoding (RFC 2047 in any charset, raw
// 8-bit, broken encoded-words) and everything that reads the decoded
// subject: one line of valid UTF-8, bounded growth and time, no panic.
// Seeded with every Subject field of the corpus.
func FuzzDecodeSubject(f *testing.F) {
	for _, s := range []string{
		"", "=?utf-8?q?Produktionsausfall?=", "=?utf-8?B?UHJvZHVjdGlvbiBkb3du?= =?utf-8?B?IQ==?=",
		"=?iso-2022-jp?B?GyRCJUYlOSVIGyhC?=", "=?x-unknown?q?=FF=FE?=", "=?utf-8*de?q?a?=", "=?utf-8?q?a\r\n b?=",
		"\xe4\xf6\xfc raw latin-1", "=?=?=?", "=?utf-8?B?====?=", "Re: AW: [Case #12] =?utf-8?q?Produ=C3=A7=C3=A3o_parada?=",
	} {
		f.Add(s)
	}
	for _, m := range corpusSeeds(1 << 20) {
		if s, ok := rawSubject(m); ok {
			f.Add(s)
		}
	}
	u := NewUrgency(DefaultUrgentPhrases())
	f.Fuzz(func(t *testing.T, raw string) {
		start := time.Now()
		var warnings int
		s := oneLine(decodeWords(raw, func(string) { warnings++ }))
		if !utf8.ValidString(s) {
			t.Fatalf("decoded subject is not UTF-8: %q", s)
		}
		if strings.ContainsAny(s, "\r\n\x00") {
			t.Fatalf("decoded subject has a line break or NUL: %q", s)
		}
		// Decoding may widen bytes (windows-1252 to UTF-8, 2022-JP escapes
		// to kanji), never explode.
		if len(s) > 4*len(raw)+16 {
			t.Fatalf("%d input bytes decoded to %d", len(raw), len(s))
		}
		StripReplyPrefixes(s)
		CaseTag(s)
		u.Match(s)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("decoding %d bytes took %v", len(raw), d)
		}
	})
}
