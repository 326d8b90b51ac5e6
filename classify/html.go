package classify

import (
	"bytes"
	"html"
	"strings"
)

// blockTags end a line of text when they open or close.
var blockTags = map[string]bool{
	"address": true, "article": true, "aside": true, "blockquote": true, "br": true,
	"center": true, "dd": true, "div": true, "dl": true, "dt": true, "fieldset": true,
	"figure": true, "footer": true, "form": true, "h1": true, "h2": true, "h3": true,
	"h4": true, "h5": true, "h6": true, "header": true, "hr": true, "li": true,
	"main": true, "nav": true, "ol": true, "p": true, "pre": true, "section": true,
	"table": true, "tbody": true, "thead": true, "tfoot": true, "tr": true, "ul": true,
	"body": true, "html": true,
}

// rawTags hold no readable text; everything up to their end tag is dropped.
var rawTags = map[string]bool{"script": true, "style": true, "title": true, "template": true, "noembed": true, "object": true, "svg": true}

// htmlText is the builder behind htmlToText: it collapses white space the
// way a browser does and turns block boundaries into line breaks.
type htmlText struct {
	b     strings.Builder
	space bool // a space is due before the next word
}

func (t *htmlText) text(s string) {
	if s == "" {
		return
	}
	if isHTMLSpace(rune(s[0])) {
		t.space = true
	}
	for idx, f := range strings.FieldsFunc(s, isHTMLSpace) {
		if (idx > 0 || t.space) && !t.atLineStart() {
			t.b.WriteByte(' ')
		}
		t.b.WriteString(f)
		t.space = false
	}
	if isHTMLSpace(rune(s[len(s)-1])) {
		t.space = true
	}
}

func (t *htmlText) atLineStart() bool {
	s := t.b.String()
	return len(s) == 0 || s[len(s)-1] == '\n'
}

// newline ends the current line, if any: a block boundary.
func (t *htmlText) newline() {
	t.space = false
	if !t.atLineStart() {
		t.b.WriteByte('\n')
	}
}

// br is a line break: consecutive ones make blank lines.
func (t *htmlText) br() {
	t.space = false
	t.b.WriteByte('\n')
}

func isHTMLSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f'
}

// htmlToText extracts readable text from an HTML document: tags are removed,
// <script>, <style> and <title> contents dropped, comments skipped, character
// references decoded, white space collapsed, block elements and <br> turned
// into line breaks. It never fails; unterminated constructs end the text.
func htmlToText(src []byte) string {
	var t htmlText
	i := 0
	for i < len(src) {
		lt := bytes.IndexByte(src[i:], '<')
		if lt < 0 {
			t.textRaw(src[i:])
			break
		}
		if lt > 0 {
			t.textRaw(src[i : i+lt])
		}
		i += lt
		rest := src[i:]
		switch {
		case bytes.HasPrefix(rest, []byte("<!--")):
			end := bytes.Index(rest[4:], []byte("-->"))
			if end < 0 {
				i = len(src)
			} else {
				i += 4 + end + 3
			}
		case len(rest) > 1 && (rest[1] == '!' || rest[1] == '?'):
			end := bytes.IndexByte(rest, '>')
			if end < 0 {
				i = len(src)
			} else {
				i += end + 1
			}
		case len(rest) > 1 && (isASCIILetter(rest[1]) || (rest[1] == '/' && len(rest) > 2 && isASCIILetter(rest[2]))):
			name, closing, n := parseTag(rest)
			i += n
			if name == "br" {
				t.br()
			} else if blockTags[name] {
				t.newline()
			} else if name == "td" || name == "th" {
				t.space = true
			}
			if !closing && rawTags[name] {
				end := indexFold(src[i:], "</"+name)
				if end < 0 {
					i = len(src)
				} else {
					i += end
				}
			}
		default:
			t.textRaw(rest[:1])
			i++
		}
	}
	return cleanText(t.b.String())
}

func (t *htmlText) textRaw(b []byte) {
	s := string(b)
	if strings.IndexByte(s, '&') >= 0 {
		s = html.UnescapeString(s)
	}
	t.text(strings.ReplaceAll(s, "\u00a0", " "))
}

func isASCIILetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

// parseTag reads a start or end tag at the start of s ("<" included) and
// returns its lowercased name, whether it is an end tag and its length. An
// unterminated tag extends to the end of s.
func parseTag(s []byte) (name string, closing bool, n int) {
	i := 1
	if i < len(s) && s[i] == '/' {
		closing = true
		i++
	}
	start := i
	for i < len(s) && (isASCIILetter(s[i]) || ('0' <= s[i] && s[i] <= '9') || s[i] == '-' || s[i] == ':') {
		i++
	}
	name = strings.ToLower(string(s[start:i]))
	var quote byte
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			// Only a quote that opens an attribute value counts.
			if i > 0 && (s[i-1] == '=' || isHTMLSpace(rune(s[i-1]))) {
				quote = c
			}
		case c == '>':
			return name, closing, i + 1
		}
	}
	return name, closing, len(s)
}

// indexFold finds needle (ASCII, lowercase) in s ignoring ASCII case.
func indexFold(s []byte, needle string) int {
	n := len(needle)
	for i := 0; i+n <= len(s); i++ {
		j := bytes.IndexByte(s[i:], '<')
		if j < 0 {
			return -1
		}
		i += j
		if i+n > len(s) {
			return -1
		}
		if strings.EqualFold(string(s[i:i+n]), needle) {
			return i
		}
	}
	return -1
}

// cleanText trims every line, drops runs of more than one blank line and
// trims the whole text.
func cleanText(s string) string {
	lines := strings.Split(s, "\n")
	out := lines[:0]
	blank := 0
	for _, l := range lines {
		l = strings.TrimRight(strings.TrimLeft(l, " \t\u00a0"), " \t\u00a0")
		if l == "" {
			blank++
			if blank > 1 {
				continue
			}
		} else {
			blank = 0
		}
		out = append(out, l)
	}
	return strings.TrimSpace(strings.Join(out, "\n"))
}

// sniffHTMLCharset finds a charset declared in a <meta> tag near the start of
// an HTML document; "" if none.
func sniffHTMLCharset(b []byte) string {
	if len(b) > 4096 {
		b = b[:4096]
	}
	low := bytes.ToLower(b)
	i := bytes.Index(low, []byte("charset="))
	if i < 0 {
		return ""
	}
	// Only inside a <meta ...> tag.
	meta := bytes.LastIndex(low[:i], []byte("<meta"))
	if meta < 0 || bytes.IndexByte(low[meta:i], '>') >= 0 {
		return ""
	}
	v := low[i+len("charset="):]
	v = bytes.TrimLeft(v, `"' `)
	end := 0
	for end < len(v) && end < 40 {
		c := v[end]
		if !(isASCIILetter(c) || ('0' <= c && c <= '9') || c == '-' || c == '_' || c == '.' || c == ':') {
			break
		}
		end++
	}
	return string(v[:end])
}
