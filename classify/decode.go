package classify

import (
	"mime"
	"net/mail"
	"strings"
	"time"

	gomail "github.com/emersion/go-message/mail"
)

// warnFunc records a tolerated problem.
type warnFunc func(string)

// decodeWords decodes RFC 2047 encoded-words anywhere in s (also inside
// quoted strings and glued to other text, as broken mailers write them) and
// turns the rest into valid UTF-8 (raw 8-bit bytes as windows-1252).
// Adjacent encoded-words separated only by white space are joined; their
// bytes are joined before charset decoding, so a character split across two
// words survives. A word that cannot be decoded is kept as it is.
func decodeWords(s string, warn warnFunc) string {
	if !strings.Contains(s, "=?") {
		return fixUTF8(s)
	}
	var out strings.Builder
	var pend []byte
	var pendCS string
	pending := false
	flush := func() {
		if pending {
			d, ok := decodeCharset(pendCS, pend)
			if !ok {
				warn("unknown charset " + label(pendCS) + " in an encoded-word")
			}
			out.WriteString(d)
		}
		pending, pend, pendCS = false, nil, ""
	}
	i := 0
	for i < len(s) {
		j := strings.Index(s[i:], "=?")
		if j < 0 {
			flush()
			out.WriteString(fixUTF8(s[i:]))
			break
		}
		lit := s[i : i+j]
		cs, data, n, ok := parseEncodedWord(s[i+j:])
		if !ok {
			if n > 0 {
				warn("malformed encoded-word kept as text")
			}
			flush()
			out.WriteString(fixUTF8(s[i : i+j+2]))
			i += j + 2
			continue
		}
		switch {
		case pending && strings.Trim(lit, " \t") == "" && strings.EqualFold(cs, pendCS):
			pend = append(pend, data...)
		case pending && strings.Trim(lit, " \t") == "":
			flush()
			pending, pend, pendCS = true, data, cs
		default:
			flush()
			out.WriteString(fixUTF8(lit))
			pending, pend, pendCS = true, data, cs
		}
		i += j + n
	}
	flush()
	return out.String()
}

// parseEncodedWord parses "=?charset?E?text?=" at the start of s. It returns
// the charset (RFC 2231 language suffix removed), the decoded bytes and the
// length consumed. When s is not an encoded word, ok is false and n is 0;
// when it looks like one but its text is broken (bad base64), ok is false and
// n > 0.
func parseEncodedWord(s string) (cs string, data []byte, n int, ok bool) {
	if !strings.HasPrefix(s, "=?") {
		return "", nil, 0, false
	}
	rest := s[2:]
	q := strings.IndexByte(rest, '?')
	if q <= 0 || q > 64 {
		return "", nil, 0, false
	}
	cs = rest[:q]
	if strings.ContainsAny(cs, " \t\r\n\"()<>@,;:/[]=") {
		return "", nil, 0, false
	}
	if star := strings.IndexByte(cs, '*'); star >= 0 {
		cs = cs[:star]
	}
	rest = rest[q+1:]
	if len(rest) < 2 || rest[1] != '?' {
		return "", nil, 0, false
	}
	enc := rest[0] | 0x20
	if enc != 'b' && enc != 'q' {
		return "", nil, 0, false
	}
	rest = rest[2:]
	end := strings.Index(rest, "?=")
	if end < 0 || end > 4096 {
		return "", nil, 0, false
	}
	text := rest[:end]
	if strings.ContainsAny(text, "\r\n") {
		return "", nil, 0, false
	}
	n = 2 + q + 1 + 2 + end + 2
	if enc == 'b' {
		d, good := decodeB64Word(text)
		if !good {
			return "", nil, n, false
		}
		return cs, d, n, true
	}
	return cs, decodeQWord(text), n, true
}

// decodeB64Word decodes the text of a B encoded-word; padding may be missing.
// It fails when the text holds characters outside the base64 alphabet.
func decodeB64Word(text string) ([]byte, bool) {
	text = strings.TrimRight(strings.TrimSpace(text), "=")
	for i := 0; i < len(text); i++ {
		if b64Value[text[i]] == 0xff {
			return nil, false
		}
	}
	return decodeBase64Lenient([]byte(text)), true
}

// decodeQWord decodes the text of a Q encoded-word; invalid escapes are kept.
func decodeQWord(text string) []byte {
	out := make([]byte, 0, len(text))
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '_':
			out = append(out, ' ')
		case c == '=' && i+2 < len(text) && isHex(text[i+1]) && isHex(text[i+2]):
			out = append(out, unhex(text[i+1])<<4|unhex(text[i+2]))
			i += 2
		default:
			out = append(out, c)
		}
	}
	return out
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return 0
}

// address is one parsed mailbox.
type address struct {
	name  string // decoded display name
	email string // lowercased addr-spec, "" when the mailbox has none
	local string // lowercased local part, or the bare word for "MAILER-DAEMON"
}

// maxAddressHeader bounds the part of an address field that is parsed.
const maxAddressHeader = 64 << 10

// parseAddressList parses an address field. It tries the strict RFC 5322
// parser first (with every charset for encoded display names) and falls back
// to a lenient scan that recovers what it can from broken fields.
func parseAddressList(v string, warn warnFunc) []address {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	if len(v) > maxAddressHeader {
		warn("address field truncated for parsing")
		v = v[:maxAddressHeader]
	}
	if list, err := gomail.ParseAddressList(v); err == nil {
		out := make([]address, 0, len(list))
		for _, a := range list {
			if a == nil {
				continue
			}
			ad := makeAddress(a.Name, a.Address, warn)
			if ad.email != "" || ad.local != "" {
				out = append(out, ad)
			}
		}
		return out
	}
	warn("malformed address field parsed leniently")
	var out []address
	for _, piece := range splitAddresses(v) {
		if a, ok := lenientAddress(piece, warn); ok {
			out = append(out, a)
		}
	}
	return out
}

func makeAddress(name, email string, warn warnFunc) address {
	if strings.Contains(name, "=?") {
		name = decodeWords(name, warn)
	}
	name = oneLine(fixUTF8(name))
	email = strings.ToLower(strings.TrimSpace(fixUTF8(email)))
	a := address{name: name}
	if validAddrSpec(email) {
		a.email = email
		a.local = email[:strings.LastIndexByte(email, '@')]
	} else if email != "" && !strings.ContainsAny(email, " \t@") {
		a.local = email
	}
	return a
}

// validAddrSpec accepts the addr-specs real mail uses: a local part and a
// domain around the last "@", no white space, controls or RFC 5322 specials
// (quoted local parts with specials are not worth the risk), brackets only
// for a domain literal.
func validAddrSpec(s string) bool {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || len(s) > 320 {
		return false
	}
	domain := s[at+1:]
	if strings.ContainsAny(s[:at], "[]") {
		return false
	}
	if strings.ContainsAny(domain, "[]") && !(strings.HasPrefix(domain, "[") && strings.HasSuffix(domain, "]")) {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\uFFFD' || strings.ContainsRune("<>(),;:\\\"", r) {
			return false
		}
	}
	return true
}

// splitAddresses splits an address list at commas and semicolons outside
// quotes, angle brackets and comments, and drops group names ("team: a, b;").
func splitAddresses(v string) []string {
	var out []string
	var cur strings.Builder
	inQuote, inAngle, depth := false, false, 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case inQuote:
			if c == '\\' && i+1 < len(v) {
				cur.WriteByte(c)
				i++
				c = v[i]
			} else if c == '"' {
				inQuote = false
			}
		case depth > 0:
			if c == '(' {
				depth++
			} else if c == ')' {
				depth--
			}
		case c == '"':
			inQuote = true
		case c == '(':
			depth++
		case c == '<':
			inAngle = true
		case c == '>':
			inAngle = false
		case (c == ',' || c == ';') && !inAngle:
			out = append(out, cur.String())
			cur.Reset()
			continue
		case c == ':' && !inAngle:
			// "group:" — forget the group name.
			if !strings.Contains(cur.String(), "@") {
				cur.Reset()
				continue
			}
		}
		cur.WriteByte(c)
	}
	out = append(out, cur.String())
	return out
}

// lenientAddress extracts a mailbox from one piece of a broken list.
func lenientAddress(p string, warn warnFunc) (address, bool) {
	p = strings.TrimSpace(p)
	if p == "" {
		return address{}, false
	}
	var name, email string
	if lt := strings.LastIndexByte(p, '<'); lt >= 0 {
		gt := strings.IndexByte(p[lt:], '>')
		if gt < 0 {
			gt = len(p) - lt
		}
		email = p[lt+1 : lt+gt]
		name = p[:lt]
	} else {
		// addr-spec with an optional "(comment)" display name.
		rest, comment := stripComments(p)
		fields := strings.Fields(rest)
		for _, f := range fields {
			if strings.Contains(f, "@") {
				email = f
				break
			}
		}
		if email == "" && len(fields) == 1 {
			email = fields[0]
		}
		name = comment
	}
	name = strings.TrimSpace(name)
	if len(name) >= 2 && name[0] == '"' && name[len(name)-1] == '"' {
		name = strings.ReplaceAll(name[1:len(name)-1], `\"`, `"`)
	}
	email, _ = stripComments(email)
	email = strings.Join(strings.Fields(email), "")
	email = strings.Trim(email, `"'`)
	// Obsolete source route: "@relay.example:user@example.com".
	if strings.HasPrefix(email, "@") {
		if i := strings.LastIndexByte(email, ':'); i >= 0 {
			email = email[i+1:]
		}
	}
	a := makeAddress(decodeWords(name, warn), email, warn)
	return a, a.email != "" || a.local != ""
}

// stripComments removes "(...)" comments (nesting allowed) from s and
// returns the rest and the text of the first comment.
func stripComments(s string) (rest, comment string) {
	var b, c strings.Builder
	depth := 0
	first := true
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '(':
			depth++
			if depth > 1 && first {
				c.WriteByte(ch)
			}
		case ch == ')' && depth > 0:
			depth--
			if depth == 0 {
				first = false
			} else if first {
				c.WriteByte(ch)
			}
		case depth > 0:
			if first {
				c.WriteByte(ch)
			}
		default:
			b.WriteByte(ch)
		}
	}
	return b.String(), strings.TrimSpace(c.String())
}

// parseMsgIDs parses a Message-ID list with go-message (so that IDs come out
// exactly as go-message returns them elsewhere). On a syntax error it keeps
// the IDs read so far and recovers the later "<...>" IDs that parse on their
// own. IDs that are not valid UTF-8 or hold control characters are dropped.
func parseMsgIDs(key, v string, warn warnFunc) []string {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	var h gomail.Header
	h.Set(key, v)
	ids, err := h.MsgIDList(key)
	if err != nil {
		warn("malformed " + key + " field: kept the valid IDs")
		seen := make(map[string]bool, len(ids))
		for _, id := range ids {
			seen[id] = true
		}
		rest := v
		for {
			lt := strings.IndexByte(rest, '<')
			if lt < 0 {
				break
			}
			gt := strings.IndexByte(rest[lt:], '>')
			if gt < 0 {
				break
			}
			var one gomail.Header
			one.Set(key, rest[lt:lt+gt+1])
			if l, err := one.MsgIDList(key); err == nil {
				for _, id := range l {
					if !seen[id] {
						seen[id] = true
						ids = append(ids, id)
					}
				}
			}
			rest = rest[lt+gt+1:]
		}
	}
	out := ids[:0]
	for _, id := range ids {
		if goodMsgID(id) {
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// parseMessageID parses the Message-ID field; "" when missing or malformed.
func parseMessageID(v string, warn warnFunc) string {
	if strings.TrimSpace(v) == "" {
		return ""
	}
	var h gomail.Header
	h.Set("Message-Id", v)
	id, err := h.MessageID()
	if err != nil || !goodMsgID(id) {
		warn("malformed Message-ID ignored")
		return ""
	}
	return id
}

func goodMsgID(id string) bool {
	if id == "" || len(id) > 998 {
		return false
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f || r == '\uFFFD' || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return !strings.ContainsAny(id, " \t") && strings.ToValidUTF8(id, "") == id
}

// commonDateLayout is RFC 5322's date-time, the day of the week included.
const commonDateLayout = "Mon, 2 Jan 2006 15:04:05 -0700"

// dateLayouts are tried after net/mail.ParseDate fails.
var dateLayouts = []string{
	commonDateLayout,
	"Mon, 2 Jan 2006 15:04:05 MST",
	"Mon, 2 Jan 2006 15:04 -0700",
	"Mon, 2 Jan 06 15:04:05 -0700",
	"Mon, 2 Jan 06 15:04:05 MST",
	"Mon, 2 Jan 2006 15:04:05",
	"2 Jan 2006 15:04:05 -0700",
	"2 Jan 2006 15:04:05 MST",
	"2 Jan 2006 15:04:05",
	"2 Jan 06 15:04:05 -0700",
	"Mon, Jan 2 2006 15:04:05 -0700",
	"Mon, 2 January 2006 15:04:05 -0700",
	"Mon Jan 2 15:04:05 2006",
	"Mon Jan 2 15:04:05 MST 2006",
	"Mon Jan 2 15:04:05 -0700 2006",
	"2006-01-02T15:04:05Z07:00",
	"2006-01-02 15:04:05 -0700",
	"2006-01-02 15:04:05",
	"Monday, January 2, 2006 3:04 PM",
	"Monday, January 2, 2006 15:04:05 -0700",
}

// parseDate parses a Date field; the zero time when it cannot.
func parseDate(v string, warn warnFunc) time.Time {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}
	}
	if len(v) > 200 {
		warn("unparsable Date ignored")
		return time.Time{}
	}
	// Most mail writes RFC 5322's own form, which this one layout reads
	// exactly as net/mail.ParseDate does; ParseDate tries its layouts in
	// turn and spent 2.7 µs and 72 allocations to get there.
	t, err := time.Parse(commonDateLayout, v)
	if err != nil {
		t, err = mail.ParseDate(v)
	}
	if err != nil {
		s, _ := stripComments(v)
		s = strings.Join(strings.Fields(strings.ReplaceAll(s, ",", ", ")), " ")
		s = strings.ReplaceAll(s, " ,", ",")
		for _, l := range dateLayouts {
			if t2, err2 := time.Parse(l, s); err2 == nil {
				t, err = t2, nil
				break
			}
		}
		if err == nil {
			warn("non-standard Date parsed leniently")
		}
	}
	if err != nil || t.Year() < 1900 || t.Year() > 9999 {
		warn("unparsable Date ignored")
		return time.Time{}
	}
	return t
}

// parseMediaType parses a Content-Type or Content-Disposition value. It uses
// mime.ParseMediaType and fills in from a lenient parser what that rejects
// (duplicate parameters, unquoted specials, unterminated quotes, RFC 2231
// values in charsets other than UTF-8). The value is lowercased; "" when v
// names no type. Parameter values are decoded to valid UTF-8, including RFC
// 2047 encoded-words, which some mailers put in file names.
func parseMediaType(v string, warn warnFunc) (string, map[string]string) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", nil
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		mt, params = lenientMediaType(v, warn)
		if err != mime.ErrInvalidMediaParameter || len(params) > 0 {
			warn("malformed parameters in " + label(firstWord(v)) + " header parsed leniently")
		}
	} else if strings.Contains(v, "*") {
		_, lparams := lenientMediaType(v, warn)
		low := strings.ToLower(v)
		for k, val := range lparams {
			// The lenient parser also decodes RFC 2231 values in charsets
			// other than UTF-8, which mime.ParseMediaType drops.
			if _, ok := params[k]; !ok || strings.Contains(low, k+"*") {
				params[k] = val
			}
		}
	}
	for k, val := range params {
		if strings.Contains(val, "=?") {
			val = decodeWords(val, warn)
		}
		params[k] = fixUTF8(val)
	}
	return strings.ToLower(mt), params
}

func firstWord(v string) string {
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v)
}

// lenientMediaType is the fallback parser for parseMediaType.
func lenientMediaType(v string, warn warnFunc) (string, map[string]string) {
	segs := splitParams(v)
	mt, extra := splitMediaType(segs[0])
	if extra != "" {
		// "application/pdf name=x.pdf": a parameter without its semicolon.
		segs = append([]string{segs[0], extra}, segs[1:]...)
	}
	params := map[string]string{}
	type part struct {
		val string
		ext bool
	}
	cont := map[string]map[int]part{}
	for _, seg := range segs[1:] {
		k, val, ok := strings.Cut(seg, "=")
		if !ok {
			// "text/html;iso-8859-1": a bare charset name.
			if cs := normCharset(seg); strings.HasPrefix(mt, "text/") && cs != "" && params["charset"] == "" {
				if _, known := charsetReader(cs, strings.NewReader("")); known {
					params["charset"] = cs
				}
			}
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		val = unquote(strings.TrimSpace(val))
		if k == "" {
			continue
		}
		ext := strings.HasSuffix(k, "*")
		base := strings.TrimSuffix(k, "*")
		if i := strings.LastIndexByte(base, '*'); i > 0 {
			idx := 0
			good := true
			for _, c := range base[i+1:] {
				if c < '0' || c > '9' || idx > 1000 {
					good = false
					break
				}
				idx = idx*10 + int(c-'0')
			}
			if good && len(base) > i+1 {
				name := base[:i]
				if cont[name] == nil {
					cont[name] = map[int]part{}
				}
				if _, dup := cont[name][idx]; !dup {
					cont[name][idx] = part{val, ext}
				}
				continue
			}
		}
		if ext {
			val = decode2231(val, warn)
		}
		if _, dup := params[base]; !dup {
			params[base] = val
		}
	}
	for name, parts := range cont {
		if _, ok := params[name]; ok {
			continue
		}
		var buf []byte
		cs := ""
		extended := false
		for i := 0; ; i++ {
			p, ok := parts[i]
			if !ok {
				break
			}
			val := p.val
			if i == 0 && p.ext {
				extended = true
				if sp := strings.SplitN(val, "'", 3); len(sp) == 3 {
					cs, val = sp[0], sp[2]
				}
			}
			if p.ext {
				val = pctDecode(val)
			}
			buf = append(buf, val...)
		}
		val, ok := decodeCharset(cs, buf)
		if extended && !ok {
			warn("unknown charset " + label(cs) + " in a parameter")
		}
		params[name] = val
	}
	return mt, params
}

// splitMediaType takes the "type/subtype" token from the start of the first
// segment of a Content-Type value, dropping characters that cannot be in
// one ("text/plain>"). extra is what followed it in the segment.
func splitMediaType(seg string) (mt, extra string) {
	seg = strings.TrimSpace(seg)
	i := 0
	slash := false
	for i < len(seg) {
		c := seg[i]
		if c == '/' && !slash {
			slash = true
			i++
			continue
		}
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?=", c) >= 0 {
			break
		}
		i++
	}
	mt = strings.ToLower(seg[:i])
	if !slash || strings.HasPrefix(mt, "/") || strings.HasSuffix(mt, "/") {
		return "", ""
	}
	rest := strings.TrimSpace(seg[i:])
	if strings.Contains(rest, "=") {
		extra = rest
	}
	return mt, extra
}

// decode2231 decodes an RFC 2231 extended value charset'lang'pct-encoded.
func decode2231(v string, warn warnFunc) string {
	parts := strings.SplitN(v, "'", 3)
	if len(parts) != 3 {
		return fixUTF8(pctDecode(v))
	}
	s, ok := decodeCharset(parts[0], []byte(pctDecode(parts[2])))
	if !ok {
		warn("unknown charset " + label(parts[0]) + " in a parameter")
	}
	return s
}

func pctDecode(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

// splitParams splits at semicolons outside double quotes.
func splitParams(v string) []string {
	var out []string
	start := 0
	inQuote := false
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\':
			if inQuote {
				i++
			}
		case '"':
			inQuote = !inQuote
		case ';':
			if !inQuote {
				out = append(out, v[start:i])
				start = i + 1
			}
		}
	}
	return append(out, v[start:])
}

// unquote removes surrounding double quotes (also an unterminated opening
// one) and backslash escapes.
func unquote(v string) string {
	if !strings.HasPrefix(v, `"`) {
		return v
	}
	v = v[1:]
	v = strings.TrimSuffix(v, `"`)
	if !strings.Contains(v, `\`) {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}
