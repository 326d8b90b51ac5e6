package classify

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Limits bound what Parse will read, so hostile mail cannot exhaust memory
// or time. A zero or negative field means its default (see DefaultLimits).
type Limits struct {
	MaxHeaderBytes int // per header block, top-level and nested parts (default 256 KiB)
	MaxParts       int // MIME parts in total, containers included, the top-level entity not (default 500)
	MaxDepth       int // multipart nesting depth; a top-level multipart has depth 1 (default 20)
	MaxTextBytes   int // of decoded body text kept in Message.Text (default 1 MiB); more is truncated with a warning, not an error
}

// DefaultLimits returns the limits Parse uses for fields left zero.
func DefaultLimits() Limits {
	return Limits{
		MaxHeaderBytes: 256 << 10,
		MaxParts:       500,
		MaxDepth:       20,
		MaxTextBytes:   1 << 20,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.MaxParts <= 0 {
		l.MaxParts = d.MaxParts
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxTextBytes <= 0 {
		l.MaxTextBytes = d.MaxTextBytes
	}
	return l
}

// Attachment describes one attached file. The body is never kept.
type Attachment struct {
	Filename    string // decoded (RFC 2231/2047), sanitised: no path separators, no control or bidi-override chars, at most 255 bytes; "" if the part has no name
	ContentType string // lowercased media type without parameters, e.g. "application/pdf"
	Size        int64  // decoded bytes (counted while discarding; never buffered)
}

// Message is what the case logic needs from one mail. Every string is valid
// UTF-8.
type Message struct {
	MessageID  string   // without <>; "" if missing or malformed
	InReplyTo  []string // without <>; partial lists kept
	References []string // without <>; partial lists kept; at most 100 (the first and the last 99)
	From       string   // lowercased addr-spec of the first From address; "" if none
	FromName   string   // decoded display name of that address
	ReplyTo    string   // lowercased addr-spec of the first Reply-To address, "" if none
	To, Cc     []string // lowercased addr-specs, from every To and Cc field
	// Subject is decoded to valid UTF-8 (RFC 2047 in any charset; raw 8-bit
	// bytes as UTF-8 when valid, else windows-1252), with CR, LF and other
	// control characters replaced by spaces, and trimmed.
	Subject string
	Date    time.Time // as written in the Date field (its own zone); zero if missing or unparsable
	// Text is the first non-empty text/plain body part (not an attachment);
	// if there is none, the text extracted from the first text/html part
	// (tags stripped, entities decoded, <script>/<style> dropped). Line
	// endings are "\n"; leading blank lines and trailing white space are
	// removed.
	Text string
	// Attachments lists every part that is not body text, in message order:
	// files, inline images, attached messages, delivery-status reports.
	Attachments     []Attachment
	ContentLanguage string // first tag of Content-Language, lowercased ("de", "en-us"), "" if none
	ReceivedCount   int    // number of Received: header fields (loop detection)
	// Automated is "" for mail from a person; otherwise the strongest signal
	// that marks it automatic, human readable, e.g. "Auto-Submitted:
	// auto-replied", "Precedence: bulk", "List-Id present", "null
	// Return-Path", "sender MAILER-DAEMON", "multipart/report (delivery
	// status)", "own notification (X-Caseintake-Notification)", "subject
	// looks like an auto-reply: Out of Office".
	Automated string
	// Bounce marks a delivery status notification or bounce: a
	// multipart/report of any report-type (so also read receipts and abuse
	// reports), a message/delivery-status part, a MAILER-DAEMON/postmaster
	// sender, X-Failed-Recipients, or a bounce subject. It is set whenever
	// any of these is present, even if a stronger signal names the message
	// in Automated, and implies Automated != "".
	Bounce bool
	// Report is the content of a delivery status notification
	// (message/delivery-status and the returned message's header), nil
	// when the message has no such part.
	Report   *DeliveryReport
	Warnings []string // tolerated problems: unknown charset, bad base64, malformed Message-ID, text truncated, ...
}

// ParseError says why a message cannot be read at all (the caller
// quarantines it). Reason is a short code:
//
//	"header"            no header field could be read (not a mail message)
//	"read"              the reader failed
//	"limit:header-size" a header block is larger than Limits.MaxHeaderBytes
//	"limit:parts"       more MIME parts than Limits.MaxParts
//	"limit:depth"       multipart nesting deeper than Limits.MaxDepth
//	"internal"          a bug in this package (a recovered panic)
type ParseError struct {
	Reason string // short code, see above
	Err    error  // what went wrong, for logs
}

// Error implements error.
func (e *ParseError) Error() string {
	if e.Err == nil {
		return "classify: " + e.Reason
	}
	return "classify: " + e.Reason + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *ParseError) Unwrap() error { return e.Err }

const maxWarnings = 50
const maxReferences = 100

// parser holds the state of one Parse call.
type parser struct {
	lim      Limits
	msg      *Message
	warned   map[string]bool
	parts    int
	facts    autoFacts
	htmlText string
	haveText bool
	haveHTML bool
}

func (p *parser) warn(w string) {
	if p.warned[w] {
		return
	}
	if len(p.msg.Warnings) >= maxWarnings {
		if len(p.msg.Warnings) == maxWarnings {
			p.msg.Warnings = append(p.msg.Warnings, "more warnings omitted")
		}
		return
	}
	p.warned[w] = true
	p.msg.Warnings = append(p.msg.Warnings, w)
}

// limitError is a limit exceeded inside the body walk.
type limitError struct{ reason, detail string }

func (e *limitError) Error() string { return e.detail }

// Parse reads a raw message. Header problems, unknown charsets, malformed
// base64/QP, missing boundaries, raw 8-bit headers and bad encoded-words give
// a best-effort Message with Warnings, not an error. An error (*ParseError)
// only when nothing usable can be read: no header field, a read error, or a
// limit exceeded. When the top-level header was read before the error, the
// returned Message holds what it gave (MessageID, From, Subject, ...) for
// logging and keys, but the message must still be treated as unreadable;
// otherwise the Message is nil. Parse streams: it never holds attachment
// bodies in memory.
func Parse(r io.Reader, lim Limits) (msg *Message, err error) {
	defer func() {
		if rec := recover(); rec != nil {
			msg, err = nil, &ParseError{Reason: "internal", Err: fmt.Errorf("panic: %v", rec)}
		}
	}()
	if r == nil {
		return nil, &ParseError{Reason: "read", Err: errors.New("nil reader")}
	}
	lim = lim.withDefaults()
	src := &errTracker{r: r}
	br := getReader(src)
	defer putReader(br)
	res, herr := readHeader(br, lim.MaxHeaderBytes, true)
	if src.err != nil {
		return nil, &ParseError{Reason: "read", Err: src.err}
	}
	switch {
	case errors.Is(herr, errHeaderTooBig):
		return nil, &ParseError{Reason: "limit:header-size", Err: fmt.Errorf("message header larger than %d bytes", lim.MaxHeaderBytes)}
	case herr != nil:
		return nil, &ParseError{Reason: "header", Err: herr}
	case len(res.h) == 0:
		return nil, &ParseError{Reason: "header", Err: errNoHeader}
	}
	p := &parser{lim: lim, msg: &Message{}, warned: map[string]bool{}}
	for _, w := range res.warnings {
		p.warn(w)
	}
	p.headers(res.h)

	var body io.Reader = br
	if len(res.body) > 0 {
		body = io.MultiReader(bytes.NewReader(res.body), br)
	}
	werr := p.entity(res.h, body, 0)
	if src.err != nil {
		return p.msg, &ParseError{Reason: "read", Err: src.err}
	}
	var le *limitError
	if errors.As(werr, &le) {
		return p.msg, &ParseError{Reason: le.reason, Err: le}
	}
	if werr != nil {
		return p.msg, &ParseError{Reason: "read", Err: werr}
	}
	if !p.haveText && p.haveHTML {
		p.msg.Text = p.htmlText
	}
	p.msg.Automated, p.msg.Bounce = detectAutomated(res.h, p.facts)
	if p.msg.Automated == "" {
		p.msg.Bounce = false
	}
	return p.msg, nil
}

// headers fills the Message fields that come from the top-level header.
func (p *parser) headers(h header) {
	m := p.msg
	warn := p.warn
	if h.has("Message-Id") {
		m.MessageID = parseMessageID(h.get("Message-Id"), warn)
	} else {
		warn("missing Message-ID")
	}
	m.InReplyTo = parseMsgIDs("In-Reply-To", h.get("In-Reply-To"), warn)
	m.References = parseMsgIDs("References", h.get("References"), warn)
	if len(m.References) > maxReferences {
		warn(fmt.Sprintf("References has %d IDs: kept the first and the last %d", len(m.References), maxReferences-1))
		refs := append([]string{m.References[0]}, m.References[len(m.References)-(maxReferences-1):]...)
		m.References = refs
	}
	fromRaw := h.get("From")
	p.facts.fromRaw = fromRaw
	for _, a := range parseAddressList(fromRaw, warn) {
		p.facts.from = &a
		m.From = a.email
		m.FromName = a.name
		break
	}
	for _, a := range parseAddressList(h.get("Reply-To"), warn) {
		if a.email != "" {
			m.ReplyTo = a.email
			p.facts.replyTo = &a
			break
		}
	}
	m.To = addrSpecs(h.values("To"), warn)
	m.Cc = addrSpecs(h.values("Cc"), warn)
	m.Subject = oneLine(decodeWords(h.get("Subject"), warn))
	p.facts.subject = m.Subject
	m.Date = parseDate(h.get("Date"), warn)
	m.ContentLanguage = contentLanguage(h.get("Content-Language"))
	m.ReceivedCount = h.count("Received")
}

func addrSpecs(fields []string, warn warnFunc) []string {
	var out []string
	for _, f := range fields {
		for _, a := range parseAddressList(f, warn) {
			if a.email != "" {
				out = append(out, a.email)
			}
		}
	}
	return out
}

// contentLanguage returns the first language tag, lowercased, "" if none.
func contentLanguage(v string) string {
	v, _ = stripComments(v)
	for _, t := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == ';' }) {
		t = strings.ToLower(t)
		if len(t) > 35 {
			return ""
		}
		for i := 0; i < len(t); i++ {
			c := t[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return ""
			}
		}
		return t
	}
	return ""
}

// entity handles one MIME entity: the message itself or a part. depth is
// the number of multiparts around it.
func (p *parser) entity(h header, body io.Reader, depth int) error {
	ctRaw := h.get("Content-Type")
	mt, params := parseMediaType(ctRaw, p.warn)
	if mt == "" || !strings.Contains(mt, "/") {
		if strings.TrimSpace(ctRaw) != "" {
			p.warn("invalid Content-Type treated as text/plain")
		}
		mt, params = "text/plain", map[string]string{}
		if cs, ok := paramsCharset(ctRaw); ok {
			params["charset"] = cs
		}
	}
	if strings.HasPrefix(mt, "multipart/") {
		boundary := params["boundary"]
		switch {
		case boundary == "":
			p.warn("multipart without boundary read as text")
			return p.leaf(h, "text/plain", params, body)
		case len(boundary) > maxBoundary:
			p.warn("multipart boundary too long; body read as text")
			return p.leaf(h, "text/plain", params, body)
		}
		if depth+1 > p.lim.MaxDepth {
			return &limitError{"limit:depth", fmt.Sprintf("multipart nesting deeper than %d", p.lim.MaxDepth)}
		}
		if mt == "multipart/report" && p.facts.reportType == "" {
			p.facts.reportType = strings.ToLower(strings.TrimSpace(params["report-type"]))
			if p.facts.reportType == "" {
				p.facts.reportType = "-"
			}
		}
		return p.multipart(h, body, boundary, depth+1)
	}
	return p.leaf(h, mt, params, body)
}

// paramsCharset finds a charset parameter in a Content-Type too broken to
// parse.
func paramsCharset(v string) (string, bool) {
	// ASCII lowercasing keeps byte offsets (strings.ToLower does not on
	// invalid UTF-8).
	low := []byte(v)
	for k, c := range low {
		if 'A' <= c && c <= 'Z' {
			low[k] = c + 'a' - 'A'
		}
	}
	i := strings.Index(string(low), "charset=")
	if i < 0 {
		return "", false
	}
	cs := v[i+len("charset="):]
	if j := strings.IndexAny(cs, "; \t"); j >= 0 {
		cs = cs[:j]
	}
	cs = strings.Trim(cs, `"'`)
	return cs, cs != ""
}

// multipart walks the parts of one multipart body; h is its header.
func (p *parser) multipart(h header, body io.Reader, boundary string, depth int) error {
	mr := newMultipartReader(body, boundary)
	defer putReader(mr.br)
	// Keep the preamble only in case no delimiter line ever comes.
	var pre bytes.Buffer
	preamble := mr.preamble()
	_, _ = io.Copy(&pre, io.LimitReader(preamble, int64(p.lim.MaxTextBytes)))
	_, _ = io.Copy(io.Discard, preamble)
	if !mr.found {
		if len(bytes.TrimSpace(pre.Bytes())) > 0 {
			p.warn("multipart boundary never found; body read as text")
			return p.leaf(h, "text/plain", map[string]string{}, &pre)
		}
		p.warn("multipart without parts")
		return nil
	}
	for {
		pr, err := mr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		p.parts++
		if p.parts > p.lim.MaxParts {
			return &limitError{"limit:parts", fmt.Sprintf("more than %d MIME parts", p.lim.MaxParts)}
		}
		if err := p.part(pr, depth); err != nil {
			return err
		}
	}
	if !mr.closed {
		p.warn("multipart not closed by its final boundary")
	}
	return nil
}

// part reads one part of a multipart body: its header, then its entity.
func (p *parser) part(pr io.Reader, depth int) error {
	pbr := getReader(pr)
	defer putReader(pbr)
	res, herr := readHeader(pbr, p.lim.MaxHeaderBytes, false)
	if errors.Is(herr, errHeaderTooBig) {
		return &limitError{"limit:header-size", fmt.Sprintf("MIME part header larger than %d bytes", p.lim.MaxHeaderBytes)}
	}
	for _, w := range res.warnings {
		p.warn(w)
	}
	var pbody io.Reader = pbr
	if len(res.body) > 0 {
		pbody = io.MultiReader(bytes.NewReader(res.body), pbr)
	}
	return p.entity(res.h, pbody, depth)
}

// leaf handles a non-multipart entity: body text, a delivery report part,
// or an attachment. h may be nil.
func (p *parser) leaf(h header, mt string, params map[string]string, body io.Reader) error {
	disp, dparams := parseMediaType(h.get("Content-Disposition"), p.warn)
	name := dparams["filename"]
	if name == "" {
		name = params["name"]
	}
	if mt == "message/delivery-status" || mt == "message/global-delivery-status" {
		p.facts.dsnPart = true
	}
	isBody := disp != "attachment" && name == "" && (mt == "text/plain" || mt == "text/html")
	wanted := mt == "text/plain" && !p.haveText || mt == "text/html" && !p.haveText && !p.haveHTML
	if isBody && !wanted {
		// A body text not taken (the HTML alternative after the plain
		// text, a second text part) is skipped undecoded. Decoding it only
		// to discard it had been 6 % of parsing a backlog, and how it is
		// encoded says nothing about the text the case keeps.
		_, err := io.Copy(io.Discard, body)
		return ignoreEOF(err)
	}
	cte := h.get("Content-Transfer-Encoding")
	if isBody && normEncoding(cte) == "base64" {
		br := getReader(body)
		defer putReader(br)
		peek, _ := br.Peek(2048)
		body = br
		if !looksBase64(peek) {
			p.warn("text marked base64 is not base64: read as is")
			cte = ""
		}
	}
	if !isBody && normEncoding(cte) == "base64" && !p.reportPart(mt) {
		// The attachment's size is all we keep: count, don't decode.
		size, bad := base64Size(body)
		if bad {
			p.warn("malformed base64 decoded leniently")
		}
		p.attachment(name, mt, size)
		return nil
	}
	dec, ok := decodeTransfer(cte, body)
	if cd, pooled := dec.(interface{ release() }); pooled {
		defer cd.release()
	}
	if !ok {
		p.warn("unknown Content-Transfer-Encoding " + label(normEncoding(cte)) + ": body kept undecoded")
	}
	if qp, isQP := dec.(*qpReader); isQP {
		defer func() {
			if qp.bad {
				p.warn("malformed quoted-printable kept as written")
			}
		}()
	}
	if b64, isB64 := dec.(*base64Reader); isB64 {
		defer func() {
			if b64.st.bad {
				p.warn("malformed base64 decoded leniently")
			}
		}()
	}
	switch {
	case isBody && mt == "text/plain" && !p.haveText:
		// An empty text/plain part (HTML-only mail with a blank alternative)
		// does not count: the next text part, or the HTML, gives the text.
		p.msg.Text = p.readText(dec, params["charset"], false)
		p.haveText = p.msg.Text != ""
		return nil
	case isBody && mt == "text/html" && !p.haveText && !p.haveHTML:
		p.haveHTML = true
		p.htmlText = p.readText(dec, params["charset"], true)
		return nil
	}
	var src io.Reader = dec
	if p.reportPart(mt) {
		head, err := io.ReadAll(io.LimitReader(dec, maxReportPart))
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return ignoreEOF(err)
		}
		p.readReportPart(mt, head)
		src = io.MultiReader(bytes.NewReader(head), dec)
	}
	cr := &countingReader{r: src}
	_, err := io.Copy(io.Discard, cr)
	p.attachment(name, mt, cr.n)
	return ignoreEOF(err)
}

// attachment records an attachment by its (sanitised) name, type and
// decoded size; its content is not kept.
func (p *parser) attachment(name, mt string, size int64) {
	p.msg.Attachments = append(p.msg.Attachments, Attachment{
		Filename:    sanitizeFilename(name),
		ContentType: mt,
		Size:        size,
	})
}

// looksBase64 reports whether the start of a body is plausibly base64: most
// of its lines hold only base64 characters, without inner spaces.
func looksBase64(b []byte) bool {
	good, bad := 0, 0
	for _, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimRight(line, " \t\r")
		if len(line) == 0 {
			continue
		}
		invalid := 0
		for _, c := range line {
			if b64Value[c] == 0xff && c != '=' {
				invalid++
			}
		}
		// Prose has spaces; base64 has none, maybe a stray character.
		if bytes.ContainsAny(line, " \t") == false && invalid*10 <= len(line) {
			good++
		} else {
			bad++
		}
	}
	return bad == 0 || good > bad
}

func ignoreEOF(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return nil
	}
	return err
}

// readText reads body text through its charset, up to the text limit (for
// HTML, a multiple of it, before extraction), and returns valid UTF-8 with
// "\n" line endings.
func (p *parser) readText(r io.Reader, cs string, isHTML bool) string {
	limit := p.lim.MaxTextBytes
	if isHTML {
		limit *= 4
	}
	cs = normCharset(cs)
	// What is read is copied into the text before this returns.
	buf := textBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledText {
			textBuffers.Put(buf)
		}
	}()
	if isHTML && cs == "" {
		// Read raw, then look for a <meta charset>.
		raw, trunc := readLimited(r, limit, buf)
		if trunc {
			p.warn("HTML body truncated before text extraction")
		}
		if sniffed := sniffHTMLCharset(raw); sniffed != "" && !isUTF8Label(sniffed) {
			if s, ok := decodeCharset(sniffed, raw); ok {
				return p.finishText(htmlToText([]byte(s)), false)
			}
			p.warn("unknown charset " + label(sniffed) + " in HTML")
		}
		return p.finishText(htmlToText([]byte(fixUTF8(string(raw)))), false)
	}
	cr, ok := charsetReader(cs, r)
	if !ok {
		p.warn("unknown charset " + label(cs) + ": text kept as raw bytes")
	}
	raw, trunc := readLimited(cr, limit, buf)
	s := fixUTF8(string(raw))
	if isHTML {
		if trunc {
			p.warn("HTML body truncated before text extraction")
		}
		return p.finishText(htmlToText([]byte(s)), false)
	}
	return p.finishText(s, trunc)
}

// textBuffers recycles readText's buffers (those up to maxPooledText).
var textBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledText = 1 << 20

// readLimited reads up to limit bytes into buf (emptied first) and
// discards the rest, reporting whether there was more.
func readLimited(r io.Reader, limit int, buf *bytes.Buffer) ([]byte, bool) {
	buf.Reset()
	_, _ = io.Copy(buf, io.LimitReader(r, int64(limit)+1))
	if buf.Len() > limit {
		_, _ = io.Copy(io.Discard, r)
		return buf.Bytes()[:limit], true
	}
	return buf.Bytes(), false
}

// finishText normalises line endings and applies the text limit.
func (p *parser) finishText(s string, truncated bool) string {
	s = normalizeNewlines(s)
	// Drop blank lines before the text and white space after it.
	s = strings.TrimRight(s, " \t\n")
	for {
		line, rest, ok := strings.Cut(s, "\n")
		if !ok || strings.TrimSpace(line) != "" {
			break
		}
		s = rest
	}
	if len(s) > p.lim.MaxTextBytes {
		s = truncUTF8(s, p.lim.MaxTextBytes)
		truncated = true
	}
	if truncated {
		// A cut can split a multi-byte character at the end of the raw bytes.
		s = strings.TrimRight(s, "\uFFFD")
		p.warn(fmt.Sprintf("text truncated to %d bytes", p.lim.MaxTextBytes))
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s
}
