package classify

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"mime"
	"strings"
	"testing"
	"unicode"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// stripDiacritics is the test's own way to write a phrase without accents.
func stripDiacritics(s string) string {
	t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
	out, _, _ := transform.String(t, s)
	return strings.NewReplacer("ł", "l", "Ł", "L", "ß", "ss").Replace(out)
}

// encodedWord RFC 2047-encodes s in charset cs with encoding "Q" or "B";
// ok is false when s cannot be represented in cs.
func encodedWord(s, cs, enc string) (string, bool) {
	var raw []byte
	switch strings.ToLower(cs) {
	case "utf-8":
		raw = []byte(s)
	default:
		var e encoding.Encoding
		switch strings.ToLower(cs) {
		case "iso-8859-1":
			e = charmap.ISO8859_1
		case "windows-1252":
			e = charmap.Windows1252
		case "iso-8859-15":
			e = charmap.ISO8859_15
		case "koi8-r":
			e = charmap.KOI8R
		default:
			panic("test: unknown charset " + cs)
		}
		b, err := e.NewEncoder().Bytes([]byte(s))
		if err != nil {
			return "", false
		}
		raw = b
	}
	if enc == "B" {
		return "=?" + cs + "?B?" + base64.StdEncoding.EncodeToString(raw) + "?=", true
	}
	var b strings.Builder
	b.WriteString("=?" + cs + "?Q?")
	for _, c := range raw {
		switch {
		case c == ' ':
			b.WriteByte('_')
		case c >= 0x80 || c == '=' || c == '?' || c == '_' || c < 0x20:
			fmt.Fprintf(&b, "=%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteString("?=")
	return b.String(), true
}

// rawMessage builds a minimal message with the given header lines and body.
// Defaults are added for From, To, Message-ID and Date unless headers has
// them.
func rawMessage(headers []string, body string) []byte {
	var b bytes.Buffer
	defaults := []string{"From: Kunde <kunde@example.com>", "To: support@example.com", "Message-ID: <m1@example.com>", "Date: Mon, 02 Jun 2025 10:00:00 +0200"}
	for _, d := range defaults {
		key, _, _ := strings.Cut(d, ":")
		given := false
		for _, h := range headers {
			if k, _, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, key) {
				given = true
			}
		}
		if !given {
			b.WriteString(d + "\r\n")
		}
	}
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n" + body)
	return b.Bytes()
}

func mustParse(t *testing.T, raw []byte) *Message {
	t.Helper()
	m, err := Parse(bytes.NewReader(raw), DefaultLimits())
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, raw)
	}
	checkInvariants(t, "message", m)
	return m
}

func TestDefaultUrgentPhrasesVariants(t *testing.T) {
	phrases := DefaultUrgentPhrases()
	if len(phrases) < 40 {
		t.Fatalf("only %d default phrases", len(phrases))
	}
	u := NewUrgency(phrases)
	variants := []struct {
		name string
		f    func(string) string
	}{
		{"as is", func(p string) string { return p }},
		{"upper", strings.ToUpper},
		{"lower", strings.ToLower},
		{"mixed", func(p string) string {
			r := []rune(p)
			for i := range r {
				if i%2 == 0 {
					r[i] = unicode.ToUpper(r[i])
				} else {
					r[i] = unicode.ToLower(r[i])
				}
			}
			return string(r)
		}},
		{"extra white space", func(p string) string { return "  " + strings.ReplaceAll(p, " ", " \t  ") + "\t " }},
		{"NBSP", func(p string) string { return strings.ReplaceAll(p, " ", "\u00a0") }},
		{"narrow NBSP and thin space", func(p string) string { return strings.ReplaceAll(p, " ", "\u202f\u2009") }},
		{"prefixes", func(p string) string { return "Re: AW: WG: Fwd: RES: ENC: Odp: " + p }},
		{"more prefixes", func(p string) string {
			return "RE : Re[2]: Re(3): FW: TR: RV: PD: SV: VS: Antw: Doorst: R: I: Rif: YNT: 回复: 答复: 转发: Ответ: [EXT] [External] " + p
		}},
		{"no diacritics", stripDiacritics},
		{"embedded", func(p string) string { return "[Case #17] URGENT: " + p + " since 08:00 at plant 3 (ticket 99)" }},
		{"punctuation", func(p string) string { return "!!! " + strings.ReplaceAll(p, " ", "-") + "!!!" }},
		{"full width prefix", func(p string) string { return "Ｒｅ：" + p }},
		{"typographic apostrophe", func(p string) string { return strings.ReplaceAll(p, "'", "\u2019") }},
		{"decomposed", func(p string) string { return norm.NFD.String(p) }},
	}
	for _, p := range phrases {
		for _, v := range variants {
			subject := v.f(p)
			got, ok := u.Match(subject)
			if !ok {
				t.Errorf("%s / %s: Match(%q) found nothing", p, v.name, subject)
				continue
			}
			// Another phrase may be contained in this one ("Production down" in
			// "Production system down" is not, but "Produktion steht" is in
			// "Produktion steht still"); it must still be a default phrase.
			if got != p && !strings.Contains(" "+words(Fold(p))+" ", " "+words(Fold(got))+" ") {
				t.Errorf("%s / %s: Match(%q) = %q, not contained in the phrase", p, v.name, subject, got)
			}
		}
	}
}

// TestUrgentPhrasesThroughParse encodes every default phrase in the subject
// of a raw message (RFC 2047 Q and B, UTF-8, ISO-8859-1, windows-1252) and
// matches the decoded Message.Subject.
func TestUrgentPhrasesThroughParse(t *testing.T) {
	u := NewUrgency(DefaultUrgentPhrases())
	for _, p := range DefaultUrgentPhrases() {
		for _, cs := range []string{"UTF-8", "ISO-8859-1", "windows-1252"} {
			for _, enc := range []string{"Q", "B"} {
				word, ok := encodedWord(p, cs, enc)
				if !ok {
					continue // e.g. Polish "ł" has no ISO-8859-1 form
				}
				for _, subj := range []string{word, "Re: AW: " + word + " (Werk 2)", "Fwd: " + word} {
					m := mustParse(t, rawMessage([]string{"Subject: " + subj}, "body\r\n"))
					got, ok := u.Match(m.Subject)
					if !ok {
						t.Errorf("%s %s %s: subject %q decoded to %q: no match", p, cs, enc, subj, m.Subject)
						continue
					}
					if got != p && !strings.Contains(" "+words(Fold(p))+" ", " "+words(Fold(got))+" ") {
						t.Errorf("%s: matched unrelated phrase %q", p, got)
					}
				}
			}
		}
	}
	// A folded header line and a raw 8-bit Latin-1 subject.
	m := mustParse(t, rawMessage([]string{"Subject: =?iso-8859-1?q?Produ=E7=E3o?=\r\n =?iso-8859-1?q?_parada?= na linha 3"}, ""))
	if got, ok := u.Match(m.Subject); !ok || got != "Produção parada" {
		t.Errorf("folded encoded subject %q: Match = %q, %v", m.Subject, got, ok)
	}
	m = mustParse(t, rawMessage([]string{"Subject: Re: Produktion l\xe4uft nicht"}, ""))
	if got, ok := u.Match(m.Subject); !ok || got != "Produktion läuft nicht" {
		t.Errorf("raw Latin-1 subject %q: Match = %q, %v", m.Subject, got, ok)
	}
}

func TestUrgencyMatchCases(t *testing.T) {
	u := NewUrgency(DefaultUrgentPhrases())
	tests := []struct {
		subject string
		want    string // "" for no match
	}{
		{"Production Down", "Production down"},
		{"PRODUCTION DOWN!!!", "Production down"},
		{"prod down since 9am", "Prod down"},
		{"Produção parada", "Produção parada"},
		{"Producao parada", "Produção parada"},
		{"PRODUCAO PARADA", "Produção parada"},
		{"Re: Produktion steht still", "Produktion steht"},
		{"Produktionsausfall in Werk 2", "Produktionsausfall"},
		{"[EXT] Re: AW: Produktion ausgefallen", "Produktion ausgefallen"},
		{"Producción caída en planta", "Producción caída"},
		{"Production à l'arrêt depuis ce matin", "Production à l'arrêt"},
		{"production a l arret", "Production à l'arrêt"},
		{"Awaria produkcji!", "Awaria produkcji"},
		{"Produkcja nie dziala", "Produkcja nie działa"},
		{"Productie ligt plat", "Productie ligt plat"},
		{"productie-down", "Productie down"},
		{"Produzione ferma", "Produzione ferma"},
		{"production\u00a0down", "Production down"},
		{"production\tdown", "Production down"},
		{"Production\u2011down", "Production down"},
		// Decided: negation is not understood; a false urgent is cheaper.
		{"no production down expected", "Production down"},
		// Whole words only.
		{"productiondownload", ""},
		{"Production downtime planned for Sunday", ""},
		{"production download link broken", ""},
		{"Prod downloads are slow", ""},
		{"reproduction down the line", ""},
		{"Produktionsausfallversicherung", ""},
		{"Production upgrade", ""},
		{"Down production", ""},
		{"", ""},
		{"Re: Re: Re:", ""},
	}
	for _, tt := range tests {
		got, ok := u.Match(tt.subject)
		if ok != (tt.want != "") || got != tt.want {
			t.Errorf("Match(%q) = %q, %v; want %q", tt.subject, got, ok, tt.want)
		}
	}
}

func TestNewUrgency(t *testing.T) {
	u := NewUrgency([]string{"", "   ", "!!!", "Site Down", "site   down", "Système arrêté"})
	if len(u.phrases) != 2 {
		t.Fatalf("phrases = %+v, want 2 (empty, punctuation-only and repeated ones ignored)", u.phrases)
	}
	if got, ok := u.Match("Re: SITE-DOWN"); !ok || got != "Site Down" {
		t.Errorf("Match = %q, %v", got, ok)
	}
	if got, ok := u.Match("systeme arrete"); !ok || got != "Système arrêté" {
		t.Errorf("Match = %q, %v", got, ok)
	}
	var nilU *Urgency
	if _, ok := nilU.Match("production down"); ok {
		t.Error("nil Urgency matched")
	}
	if _, ok := NewUrgency(nil).Match("production down"); ok {
		t.Error("empty Urgency matched")
	}
	// DefaultUrgentPhrases returns a fresh slice.
	a := DefaultUrgentPhrases()
	a[0] = "changed"
	if DefaultUrgentPhrases()[0] == "changed" {
		t.Error("DefaultUrgentPhrases shares its slice")
	}
}

// Match reports the first phrase in configuration order, wherever in the
// subject each is found, also among phrases that begin with the same word.
func TestUrgencyMatchReportsTheFirstConfiguredPhrase(t *testing.T) {
	u := NewUrgency([]string{"Site down", "DB down now", "Server down", "DB down"})
	tests := []struct{ subject, want string }{
		{"server down, and the site down too", "Site down"},
		{"db down", "DB down"},
		{"db down now", "DB down now"},
		{"db down, server down", "Server down"},
		{"server down now, db down now", "DB down now"},
		{"db", ""},
	}
	for _, tt := range tests {
		got, ok := u.Match(tt.subject)
		if ok != (tt.want != "") || got != tt.want {
			t.Errorf("Match(%q) = %q, %v; want %q", tt.subject, got, ok, tt.want)
		}
	}
}

func TestFold(t *testing.T) {
	tests := []struct{ in, want string }{
		{"PRODUKTION  Ausgefällen", "produktion ausgefallen"},
		{"Produção Parada", "producao parada"},
		{"Straße", "strasse"},
		{"STRASSE", "strasse"},
		{"Przestój produkcji – łódź", "przestoj produkcji - lodz"},
		{"„Zitat“ ‚x‘ «y» ’z’", `"zitat" 'x' "y" 'z'`},
		{"a\u00a0b\u2009c\u3000d\te\r\nf", "a b c d e f"},
		{"ﬁle Ｒｅ：", "file re:"},
		{"soft\u00adhyphen zero\u200bwidth \u202eevil", "softhyphen zerowidth evil"},
		{"  trim  ", "trim"},
		{"İstanbul", "istanbul"},
		{"ÅNGSTRÖM Øre", "angstrom ore"},
		{"\xff\xfe", "\ufffd"},
	}
	for _, tt := range tests {
		if got := Fold(tt.in); got != tt.want {
			t.Errorf("Fold(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := Fold(Fold(tt.in)); got != Fold(tt.in) {
			t.Errorf("Fold not idempotent on %q: %q then %q", tt.in, Fold(tt.in), got)
		}
	}
}

func TestStripReplyPrefixes(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Re: x", "x"},
		{"RE : x", "x"},
		{"Re[2]: x", "x"},
		{"Re(2): x", "x"},
		{"Re^3: x", "x"},
		{"Re: AW: Fwd: x", "x"},
		{"AW: WG: FW: Fw: RES: ENC: Odp: PD: RV: TR: Antw: Doorst: SV: VS: Vs: R: I: Rif: YNT: x", "x"},
		{"回复: 答复：转发: Ответ: x", "x"},
		{"ＲＥ： x", "x"},
		{"[EXT] Re: [External] AW: x", "x"},
		{"[EXTERNAL] [SPAM] x", "x"},
		{"EXTERNAL: Re: x", "x"},
		{"Re: [Case #1042] Re: x", "[Case #1042] Re: x"},
		{"[Case #1042] x", "[Case #1042] x"},
		{"Reply needed: x", "Reply needed: x"},
		{"Regarding: x", "Regarding: x"},
		{"Re x", "Re x"},
		{"Re:", ""},
		{"  Re:  Re:   spaced  ", "spaced"},
		{"Fwd:Fwd:x", "x"},
		{"Ref: 1234", "1234"},
		{"", ""},
		{"[unclosed x", "[unclosed x"},
	}
	for _, tt := range tests {
		if got := StripReplyPrefixes(tt.in); got != tt.want {
			t.Errorf("StripReplyPrefixes(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCaseTag(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"[Case #1042] Printer on fire", 1042, true},
		{"Re: [Case #1042] Printer on fire", 1042, true},
		{"[case # 1042]", 1042, true},
		{"[Case#1042]", 1042, true},
		{"[CASE #1042]", 1042, true},
		{"[ Case #1042 ]", 1042, true},
		{"[Case\t#\t7]", 7, true},
		{"[EXT] [Case #1042] x", 1042, true},
		{"[EXT Case #1042] x", 1042, true},
		{"[EXTERNAL] Re: AW: [Case #55] x", 55, true},
		{"[Case #01042]", 1042, true},
		{"［Ｃａｓｅ ＃１０４２］", 1042, true},
		{"[Case #1] [Case #2]", 1, true},
		{"[Case #abc] [Case #9]", 9, true},
		{"[Case #18446744073709551615]", 18446744073709551615, true},
		{"[Case #18446744073709551616]", 0, false},
		{"[Case #99999999999999999999999999]", 0, false},
		{"[Case #0]", 0, false},
		{"[Case #abc]", 0, false},
		{"Case #12", 0, false},
		{"Case 12", 0, false},
		{"[Case 12]", 0, false},
		{"[Case #12abc]", 0, false},
		{"[Showcase #12]", 0, false},
		{"[Case #12", 0, false},
		{"Case #12]", 0, false},
		{"[[Case #12]", 12, true},
		{"", 0, false},
		{"\xff[Case #3]\xfe", 3, true},
	}
	for _, tt := range tests {
		got, ok := CaseTag(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("CaseTag(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	for _, id := range []uint64{1, 1042, 18446744073709551615} {
		tag := FormatCaseTag(id)
		if got, ok := CaseTag("Re: " + tag + " subject"); !ok || got != id {
			t.Errorf("CaseTag(FormatCaseTag(%d)) = %d, %v", id, got, ok)
		}
	}
	if got := FormatCaseTag(1042); got != "[Case #1042]" {
		t.Errorf("FormatCaseTag = %q", got)
	}
}

// TestMimeEncodedSubjectsStdlib cross-checks subject decoding against the
// standard library's encoder for UTF-8.
func TestMimeEncodedSubjectsStdlib(t *testing.T) {
	for _, s := range []string{"Produktionsausfall – Grüße", "日本語の件名", "emoji 🚨 production down"} {
		for _, enc := range []mime.WordEncoder{mime.QEncoding, mime.BEncoding} {
			m := mustParse(t, rawMessage([]string{"Subject: " + enc.Encode("utf-8", s)}, ""))
			if m.Subject != s {
				t.Errorf("subject %q decoded as %q", s, m.Subject)
			}
		}
	}
}
