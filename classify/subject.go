package classify

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// foldRune maps the characters Fold treats specially after NFKC and
// lowercasing: letters that do not decompose into a base letter and a
// combining mark, typographic dashes and quotes, and invisible characters.
// It returns -1 to drop a rune and 0 when it has no special mapping.
func foldRune(r rune) rune {
	switch r {
	case '\u2010', '\u2011', '\u2012', '\u2013', '\u2014', '\u2015', '\u2212', '\u2e3a', '\u2e3b', '\ufe58', '\ufe63', '\uff0d':
		return '-'
	case '\u2018', '\u2019', '\u201a', '\u201b', '\u2032', '\u2035', '\u2039', '\u203a', '\u00b4', '\u0060':
		return '\''
	case '\u201c', '\u201d', '\u201e', '\u201f', '\u2033', '\u2036', '\u00ab', '\u00bb':
		return '"'
	case 'ł':
		return 'l'
	case 'ø':
		return 'o'
	case 'đ':
		return 'd'
	case 'ħ':
		return 'h'
	case 'ŧ':
		return 't'
	case 'ı':
		return 'i'
	}
	return 0
}

// Fold normalises text for comparison: NFKC (full-width and compatibility
// forms to their plain equivalents), lowercase, diacritics removed (NFD, drop
// nonspacing marks, NFC), "ß" to "ss", letters with strokes to their base
// letter ("ł" to "l", "ø" to "o"), typographic dashes and quotes to ASCII "-",
// "'" and `"`, invisible format characters (zero-width, soft hyphen, bidi
// controls) removed, control characters and every kind of space (NBSP, thin
// space, ideographic space) to one ASCII space, runs of white space
// collapsed, leading and trailing white space trimmed. Invalid UTF-8 becomes
// U+FFFD first. Fold is idempotent: Fold(Fold(s)) == Fold(s).
func Fold(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	// Lowercasing and decomposition can each expose work for the other (a
	// capital letter whose lowercase form carries a combining mark), so
	// iterate to a fixed point; two rounds suffice in practice.
	for range 4 {
		t := foldOnce(s)
		// An ASCII result is stable: every step maps ASCII to itself.
		if t == s || isASCII(t) {
			return t
		}
		s = t
	}
	return s
}

func foldOnce(s string) string {
	s = norm.NFKC.String(s)
	s = strings.ToLower(s)
	s = norm.NFD.String(s)
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		if unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Cf, r) {
			continue
		}
		if r == 'ß' {
			b.WriteString("ss")
			space = false
			continue
		}
		if m := foldRune(r); m > 0 {
			r = m
		}
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return norm.NFC.String(b.String())
}

// replyPrefixes are the reply and forward markers mail clients put before a
// subject, lowercased, in many languages.
var replyPrefixes = map[string]bool{
	// English and international
	"re": true, "fw": true, "fwd": true,
	// German, Dutch
	"aw": true, "wg": true, "antw": true, "antwort": true, "doorst": true,
	// Portuguese, Spanish, Catalan
	"res": true, "enc": true, "rv": true, "ref": true,
	// French
	"tr": true, "réf": true,
	// Italian
	"r": true, "i": true, "rif": true,
	// Polish, Czech, Slovak
	"odp": true, "pd": true, "př": true,
	// Scandinavian, Finnish, Icelandic
	"sv": true, "svar": true, "vs": true, "vb": true, "vl": true, "fs": true,
	// Hungarian, Turkish, Latvian
	"vá": true, "továbbítás": true, "ynt": true, "ilt": true, "i\u0307lt": true, "atb": true,
	// Greek
	"απ": true, "σχετ": true, "πρθ": true,
	// Russian, Ukrainian
	"ответ": true, "отв": true, "пересл": true, "від": true, "відп": true,
	// Chinese, Japanese, Korean
	"回复": true, "答复": true, "回覆": true, "答覆": true, "转发": true, "轉寄": true, "转寄": true, "轉發": true,
	"返信": true, "転送": true, "회신": true, "전달": true, "답장": true,
	// Hebrew, Arabic
	"השב": true, "הועבר": true, "رد": true,
	// Vietnamese, Indonesian
	"tl": true, "balas": true,
	// Gateway markers written like prefixes
	"ext": true, "external": true, "extern": true,
}

// gatewayTags are bracketed tags that mail gateways and list servers put in
// front of a subject, folded.
var gatewayTags = map[string]bool{
	"ext": true, "external": true, "extern": true, "externe": true, "externo": true, "esterno": true,
	"external email": true, "external e-mail": true, "external mail": true, "external sender": true,
	"external message": true, "externe e-mail": true, "externe mail": true, "e-mail externe": true,
	"correo externo": true, "email externo": true, "e-mail externo": true, "mail esterna": true,
	"caution": true, "caution external email": true, "warning external email": true,
	"spam": true, "suspected spam": true, "possible spam": true, "probable spam": true, "*spam*": true,
	"secure": true, "encrypt": true, "unverified sender": true, "ext sender": true,
}

// StripReplyPrefixes removes any sequence of reply and forward prefixes and
// gateway tags from the start of a subject: "Re:", "RE :", "Re[2]:",
// "Re(2):", "Re^2:", "AW:", "WG:", "Fwd:", "FW:", "RES:", "ENC:", "Odp:",
// "PD:", "RV:", "TR:", "Antw:", "Doorst:", "SV:", "VS:", "R:", "I:",
// "Rif:", "YNT:", "回复:", "答复:", "转发:", "Ответ:", ... (full-width colons
// too), and "[EXT]", "[External]", "[SPAM]"-style tags, case-insensitively
// and repeatedly ("Re: AW: [EXT] Fwd: x" gives "x"). Tags it does not know,
// such as "[Case #1042]", stay. Surrounding white space is trimmed; the rest
// of the subject is returned unchanged.
func StripReplyPrefixes(s string) string {
	s = strings.TrimFunc(s, unicode.IsSpace)
	for range 64 {
		n := stripOne(s)
		if n == 0 {
			break
		}
		s = strings.TrimLeftFunc(s[n:], unicode.IsSpace)
	}
	return strings.TrimFunc(s, unicode.IsSpace)
}

// stripOne returns the length of one prefix or gateway tag at the start of
// s, 0 if there is none.
func stripOne(s string) int {
	if s == "" {
		return 0
	}
	// Bracketed gateway tag.
	if s[0] == '[' || strings.HasPrefix(s, "［") {
		open := 1
		if s[0] != '[' {
			open = len("［")
		}
		end := strings.IndexAny(s[open:], "]］")
		if end < 0 || end > 60 {
			return 0
		}
		inner := strings.Trim(Fold(s[open:open+end]), " :")
		if gatewayTags[inner] {
			closeLen := 1
			if strings.HasPrefix(s[open+end:], "］") {
				closeLen = len("］")
			}
			return open + end + closeLen
		}
		return 0
	}
	// Word, optional counter, optional spaces, colon.
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsLetter(r) && !unicode.Is(unicode.Mn, r) {
			break
		}
		i += size
		if i > 40 {
			return 0
		}
	}
	if i == 0 {
		return 0
	}
	word := strings.ToLower(norm.NFKC.String(s[:i]))
	if !replyPrefixes[word] {
		return 0
	}
	j := i
	// Counter: [2], (2), ^2, or digits.
	if j < len(s) && (s[j] == '[' || s[j] == '(' || s[j] == '^') {
		closer := map[byte]byte{'[': ']', '(': ')', '^': 0}[s[j]]
		k := j + 1
		for k < len(s) && k-j < 6 && '0' <= s[k] && s[k] <= '9' {
			k++
		}
		if k == j+1 {
			return 0
		}
		if closer != 0 {
			if k >= len(s) || s[k] != closer {
				return 0
			}
			k++
		}
		j = k
	} else {
		for j < len(s) && j-i < 4 && '0' <= s[j] && s[j] <= '9' {
			j++
		}
	}
	for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	switch {
	case strings.HasPrefix(s[j:], ":"):
		return j + 1
	case strings.HasPrefix(s[j:], "："):
		return j + len("：")
	}
	return 0
}

// CaseTag finds the case tag "[Case #1042]" in a subject and returns the
// case number. The match is case-insensitive and tolerant of spaces
// ("[case # 1042]", "[Case#1042]", "[ Case #1042 ]") and of full-width
// forms; the tag may share its brackets with a gateway's text ("[EXT Case
// #1042]") and may follow other tags ("[EXT] [Case #1042]"). Without
// brackets there is no tag ("Case #12" is ordinary text). The first valid
// tag wins; a number that is 0 or does not fit in a uint64 is not a tag, and
// the search goes on after it.
func CaseTag(subject string) (id uint64, ok bool) {
	s := subject
	if !isASCII(s) {
		s = norm.NFKC.String(strings.ToValidUTF8(s, "\uFFFD"))
	}
	for {
		open := strings.IndexByte(s, '[')
		if open < 0 {
			return 0, false
		}
		s = s[open+1:]
		end := strings.IndexAny(s, "[]")
		if end < 0 {
			return 0, false
		}
		if s[end] == '[' {
			s = s[end:]
			continue
		}
		if id, ok := tagIn(s[:end]); ok {
			return id, true
		}
		s = s[end+1:]
	}
}

// tagIn finds "case #N" as a whole word inside the text of one bracket pair.
func tagIn(in string) (uint64, bool) {
	for i := 0; i+4 <= len(in); i++ {
		if !strings.EqualFold(in[i:i+4], "case") {
			continue
		}
		if i > 0 && isWordByte(in[i-1]) {
			continue
		}
		j := i + 4
		for j < len(in) && (in[j] == ' ' || in[j] == '\t') {
			j++
		}
		if j >= len(in) || in[j] != '#' {
			continue
		}
		j++
		for j < len(in) && (in[j] == ' ' || in[j] == '\t') {
			j++
		}
		k := j
		for k < len(in) && '0' <= in[k] && in[k] <= '9' {
			k++
		}
		if k == j || (k < len(in) && isWordByte(in[k])) {
			continue
		}
		id, err := strconv.ParseUint(in[j:k], 10, 64)
		if err != nil || id == 0 {
			continue
		}
		return id, true
	}
	return 0, false
}

func isWordByte(c byte) bool {
	return isASCIILetter(c) || ('0' <= c && c <= '9') || c == '_' || c >= 0x80
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// FormatCaseTag returns the subject tag for a case: "[Case #1042]".
func FormatCaseTag(id uint64) string {
	return "[Case #" + strconv.FormatUint(id, 10) + "]"
}
