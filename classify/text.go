package classify

import (
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/unicode/norm"
)

// fixUTF8 returns s as valid UTF-8. Valid UTF-8 sequences are kept; every
// byte that is not part of one is decoded as windows-1252 (a superset of
// ISO-8859-1 in its printable range), which is what raw 8-bit header and body
// text from Western mail clients almost always is.
func fixUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + len(s)/4)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 {
			b.WriteRune(charmap.Windows1252.DecodeByte(s[i]))
			i++
			continue
		}
		b.WriteString(s[i : i+size])
		i += size
	}
	return b.String()
}

// normCharset lowercases and trims a charset label.
func normCharset(cs string) string {
	cs = strings.ToLower(strings.TrimSpace(cs))
	cs = strings.Trim(cs, `"'`)
	// charset="charset=us-ascii"
	cs = strings.TrimPrefix(cs, "charset=")
	return strings.Trim(cs, `"' `)
}

// isUTF8Label reports whether cs names UTF-8 or a subset of it (or is empty).
func isUTF8Label(cs string) bool {
	switch cs {
	case "", "utf-8", "utf8", "us-ascii", "ascii", "us_ascii", "ansi_x3.4-1968", "x-utf_8j", "unicode-1-1-utf-8":
		return true
	}
	return false
}

// charsetReader returns a reader converting r from cs to UTF-8; ok is false
// when cs is unknown (r is returned unchanged). UTF-8 labels return r.
func charsetReader(cs string, r io.Reader) (io.Reader, bool) {
	cs = normCharset(cs)
	if isUTF8Label(cs) {
		return r, true
	}
	if len(cs) > 64 {
		return r, false
	}
	cr, err := charset.Reader(cs, r)
	if err != nil || cr == nil {
		return r, false
	}
	return cr, true
}

// decodeCharset converts b from charset cs to valid UTF-8. ok is false when
// the charset is unknown; the bytes are then kept with fixUTF8.
func decodeCharset(cs string, b []byte) (string, bool) {
	cs = normCharset(cs)
	if isUTF8Label(cs) {
		return fixUTF8(string(b)), true
	}
	r, ok := charsetReader(cs, strings.NewReader(string(b)))
	if !ok {
		return fixUTF8(string(b)), false
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(len(b))*4+16))
	if err != nil {
		return fixUTF8(string(b)), false
	}
	return fixUTF8(string(out)), true
}

// oneLine replaces control characters (C0, DEL, C1, and the Unicode line and
// paragraph separators) with spaces and trims surrounding white space. s must
// be valid UTF-8.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// truncUTF8 cuts s to at most n bytes without splitting a rune.
func truncUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// label makes a header value safe and short for Message.Automated.
func label(s string) string {
	s = oneLine(fixUTF8(s))
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 80 {
		s = truncUTF8(s, 77) + "..."
	}
	return s
}

// normalizeNewlines turns CRLF and lone CR into LF.
func normalizeNewlines(s string) string {
	if !strings.Contains(s, "\r") {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}

// isBidiOrFormat reports runes that must never appear in a file name: the
// Unicode format characters (bidi embeddings, overrides and isolates, zero
// width characters, soft hyphen, BOM) and the other invisible separators.
func isBidiOrFormat(r rune) bool {
	return unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
}

// maxFilenameBytes bounds Attachment.Filename.
const maxFilenameBytes = 255

// sanitizeFilename turns a decoded attachment name into a safe base name:
// valid UTF-8 in NFC, no directory part, no path separators, no control or
// format (bidi) characters, no leading or trailing dots and spaces, at most
// 255 bytes with the extension kept when it must be shortened.
func sanitizeFilename(name string) string {
	name = fixUTF8(name)
	name = strings.Map(func(r rune) rune {
		switch {
		case r < 0x20 || (r >= 0x7f && r < 0xa0):
			return -1
		case isBidiOrFormat(r):
			return -1
		case r == utf8.RuneError:
			return '_'
		}
		return r
	}, name)
	name = norm.NFC.String(name)
	// Keep the last path component; "\" is a separator for mail from Windows.
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	// Drive letters and alternate data streams ("C:x", "a.txt:evil").
	name = strings.ReplaceAll(name, ":", "_")
	name = strings.Trim(name, " .\t")
	if name == "" {
		return ""
	}
	if len(name) > maxFilenameBytes {
		ext := ""
		if i := strings.LastIndexByte(name, '.'); i > 0 && len(name)-i <= 16 {
			ext = name[i:]
		}
		name = truncUTF8(name[:len(name)-len(ext)], maxFilenameBytes-len(ext)) + ext
		name = strings.TrimRight(name, " ")
	}
	return name
}
