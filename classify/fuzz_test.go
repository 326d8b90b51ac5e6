package classify

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzSeedFiles are corpus files that exercise many paths; they seed
// FuzzParse when the corpus is present.
var fuzzSeedFiles = []string{
	"enmime/testdata/low-quality/bad-header-wrap.raw",
	"enmime/testdata/parts/nestedmulti.raw",
	"enmime/dsn/testdata/simple_dsn.raw",
	"mikel-mail/spec/fixtures/emails/multi_charset/japanese_iso_2022.eml",
	"mikel-mail/spec/fixtures/emails/attachment_emails/attachment_nonascii_filename.eml",
	"mikel-mail/spec/fixtures/emails/error_emails/content_transfer_encoding_x_uuencode.eml",
	"sisimai-set-of-emails/maildir/bsd/rfc3834-06.eml",
	"sisimai-set-of-emails/maildir/bsd/arf-01.eml",
	"talon/tests/fixtures/standard_replies/apple_mail_2.eml",
}

var fuzzInlineSeeds = []string{
	"",
	"From: a@b\r\n\r\n",
	"Subject: =?utf-8?B?!!!?= =?x?q?=FF?= \xff\r\n\r\nbody",
	"From: a@b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n--c\r\nContent-Type: text/html\r\n\r\n<p>x&amp;<script>y\r\n--c--\r\n--b--",
	"From: a@b\r\nContent-Type: text/plain; charset=shift_jis\r\nContent-Transfer-Encoding: base64\r\n\r\ngmWCWIJn=\r\n",
	"From: a@b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=\r\n=4=ZZ=\r",
	"From: a@b\r\nContent-Disposition: attachment; filename*0*=utf-8''%E2%80; filename*1*=%AE.exe\r\nContent-Type: application/x\r\n\r\nx",
	"From MAILER-DAEMON x\n Subject: y\nbad line\n\n",
	// Found by fuzzing: a broken Content-Type whose lowercasing changed
	// byte offsets (invalid UTF-8 before "charset=").
	"Content-TYpe:\x97ChArset=",
	"Message-ID: <a@b>\r\nReferences: <a@b> junk <c@[1.2.3.4]> <\r\nIn-Reply-To: >\r\nFrom: \"x\" <@r:a@b>, (c) <>\r\nDate: Mon, 32 Foo 2025\r\n\r\n",
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzInlineSeeds {
		f.Add([]byte(s))
	}
	for _, rel := range fuzzSeedFiles {
		if data, err := os.ReadFile(filepath.Join(corpusDir, filepath.FromSlash(rel))); err == nil {
			f.Add(data)
		}
	}
	// The whole corpus (small files), so fuzzing starts from real mail of
	// every kind.
	for _, data := range corpusSeeds(64 << 10) {
		f.Add(data)
	}
	lim := Limits{MaxHeaderBytes: 8 << 10, MaxParts: 50, MaxDepth: 8, MaxTextBytes: 16 << 10}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(bytes.NewReader(data), lim)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not *ParseError: %v", err, err)
			}
			if pe.Reason == "internal" {
				t.Fatalf("Parse panicked: %v", err)
			}
			return
		}
		if m == nil {
			t.Fatal("nil Message without error")
		}
		if !utf8.ValidString(m.Subject) || !utf8.ValidString(m.Text) || !utf8.ValidString(m.FromName) {
			t.Fatalf("invalid UTF-8: subject %q text %q", m.Subject, m.Text)
		}
		if strings.ContainsAny(m.Subject, "\r\n") {
			t.Fatalf("subject with line break: %q", m.Subject)
		}
		if len(m.Text) > lim.MaxTextBytes {
			t.Fatalf("text of %d bytes over the limit", len(m.Text))
		}
		if m.Bounce && m.Automated == "" {
			t.Fatal("Bounce without Automated")
		}
		for _, a := range m.Attachments {
			if !utf8.ValidString(a.Filename) || len(a.Filename) > 255 || strings.ContainsAny(a.Filename, "/\\\x00") {
				t.Fatalf("unsafe file name %q", a.Filename)
			}
		}
		// The derived functions must not panic on what Parse returns.
		CaseTag(m.Subject)
		StripReplyPrefixes(m.Subject)
	})
}

func FuzzUrgencyMatch(f *testing.F) {
	for _, s := range []string{
		"Production down", "Re: AW: Produktionsausfall", "Produção parada", "productiondownload",
		"[Case #12] Prod down", "İSTANBUL ǅ ß ẞ ﬃ", "\xff\xfe", "Ｒｅ：Produção\u00a0parada",
		"a\u0301\u0301\u0301", "[EXT] [Case #18446744073709551616]", "Re[2]: Re(3): Re^4:",
	} {
		f.Add(s)
	}
	u := NewUrgency(DefaultUrgentPhrases())
	defaults := map[string]bool{}
	for _, p := range DefaultUrgentPhrases() {
		defaults[p] = true
	}
	f.Fuzz(func(t *testing.T, s string) {
		phrase, ok := u.Match(s)
		if ok != (phrase != "") || (ok && !defaults[phrase]) {
			t.Fatalf("Match(%q) = %q, %v", s, phrase, ok)
		}
		folded := Fold(s)
		if !utf8.ValidString(folded) {
			t.Fatalf("Fold(%q) is not valid UTF-8", s)
		}
		if again := Fold(folded); again != folded {
			t.Fatalf("Fold not idempotent: %q -> %q -> %q", s, folded, again)
		}
		stripped := StripReplyPrefixes(s)
		if len(stripped) > len(s) {
			t.Fatalf("StripReplyPrefixes grew %q to %q", s, stripped)
		}
		if id, ok := CaseTag(s); ok && id == 0 {
			t.Fatalf("CaseTag(%q) = 0, true", s)
		}
		// A phrase used as a subject matches itself.
		if w := words(folded); w != "" && len(w) < 200 {
			if p, ok := NewUrgency([]string{s}).Match(s); !ok || p != s {
				// Prefix stripping may eat the whole phrase ("Re: x" as a
				// phrase, "x" left in the subject): only then may it fail.
				if StripReplyPrefixes(s) == strings.TrimSpace(s) {
					t.Fatalf("phrase %q does not match itself", s)
				}
			}
		}
	})
}
