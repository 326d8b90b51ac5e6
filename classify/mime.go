package classify

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"sync"
)

// maxBoundary bounds the boundary parameter; RFC 2046 allows 70 characters.
const maxBoundary = 200

// multipartReader splits a multipart body into parts, one line at a time.
// It is tolerant: a missing close delimiter ends the last part at the end of
// the input, and a body without any delimiter line is reported through
// noDelimiter so that the caller can keep it as text.
type multipartReader struct {
	br      *bufio.Reader
	dash    []byte // "--" + boundary
	cur     *partReader
	started bool
	closed  bool // the close delimiter was seen
	eof     bool // the input ended before the close delimiter
	found   bool // a delimiter line was seen
}

func newMultipartReader(r io.Reader, boundary string) *multipartReader {
	return &multipartReader{
		br:   getReader(r),
		dash: []byte("--" + boundary),
	}
}

// preamble returns a reader over the text before the first delimiter line.
// It must be read (or discarded) before the first call to next.
func (m *multipartReader) preamble() io.Reader {
	m.started = true
	m.cur = &partReader{m: m, atLineStart: true}
	return m.cur
}

// next returns the next part's raw stream (header and body), or io.EOF.
// The previous part is discarded.
func (m *multipartReader) next() (*partReader, error) {
	if !m.started {
		_, _ = io.Copy(io.Discard, m.preamble())
	}
	if m.cur != nil {
		_, _ = io.Copy(io.Discard, m.cur)
		m.cur = nil
	}
	if m.closed || m.eof {
		return nil, io.EOF
	}
	m.cur = &partReader{m: m, atLineStart: true}
	return m.cur, nil
}

// delimiter reports whether line (with its line ending) is a delimiter line
// for this multipart and whether it is the close delimiter. Transport padding
// (spaces and tabs) after the boundary is allowed.
func (m *multipartReader) delimiter(line []byte) (isDelim, isClose bool) {
	if !bytes.HasPrefix(line, m.dash) {
		return false, false
	}
	rest := line[len(m.dash):]
	if bytes.HasPrefix(rest, []byte("--")) {
		isClose = true
		rest = rest[2:]
	}
	rest = bytes.TrimRight(rest, " \t\r\n")
	if len(rest) != 0 {
		return false, false
	}
	return true, isClose
}

// partReader reads one part of a multipart body (or its preamble) up to the
// next delimiter line. The line ending before a delimiter belongs to the
// delimiter, so it is held back until the next line is known.
type partReader struct {
	m           *multipartReader
	held        [2]byte // line ending of the previous line, not yet returned
	nheld       int
	preBuf      [2]byte
	pre         []byte // held line ending being returned (aliases preBuf)
	pending     []byte // content being returned (aliases the bufio buffer)
	atLineStart bool
	done        bool
}

func (p *partReader) Read(b []byte) (int, error) {
	for {
		if len(p.pre) > 0 {
			n := copy(b, p.pre)
			p.pre = p.pre[n:]
			return n, nil
		}
		if len(p.pending) > 0 {
			n := copy(b, p.pending)
			p.pending = p.pending[n:]
			return n, nil
		}
		if p.done {
			return 0, io.EOF
		}
		if p.atLineStart && p.lines() {
			continue
		}
		frag, err := p.m.br.ReadSlice('\n')
		if len(frag) == 0 && err != nil {
			// End of input (or a read error, which the top-level reader
			// records): the held line ending is content.
			p.done = true
			p.m.eof = true
			p.pre = p.preBuf[:copy(p.preBuf[:], p.held[:p.nheld])]
			p.nheld = 0
			continue
		}
		full := err == nil || err == io.EOF
		if p.atLineStart && full {
			if isDelim, isClose := p.m.delimiter(frag); isDelim {
				p.done = true
				p.m.found = true
				p.nheld = 0
				if isClose {
					p.m.closed = true
				}
				if err == io.EOF && !isClose {
					p.m.eof = true
				}
				return 0, io.EOF
			}
		}
		content := frag
		var eol []byte
		if bytes.HasSuffix(content, []byte("\n")) {
			content = content[:len(content)-1]
			eol = []byte("\n")
			if bytes.HasSuffix(content, []byte("\r")) {
				content = content[:len(content)-1]
				eol = []byte("\r\n")
			}
		}
		p.pre = p.preBuf[:copy(p.preBuf[:], p.held[:p.nheld])]
		p.nheld = copy(p.held[:], eol)
		p.pending = content
		p.atLineStart = len(eol) > 0
		if err == io.EOF {
			// Last line without a line ending; the next read ends the part.
			p.atLineStart = false
		}
		if len(p.pre) == 0 && len(p.pending) == 0 && err == io.EOF {
			continue
		}
	}
}

// lines takes, in one step, the whole lines at the front of the buffered
// input among which no delimiter line can be: those up to the first line
// that starts with "-". Their content is returned as is; only the last
// line ending is held back. Attachments come as thousands of short lines,
// and a line at a time cost a quarter of parsing a backlog.
func (p *partReader) lines() bool {
	br := p.m.br
	buf, _ := br.Peek(br.Buffered())
	if len(buf) == 0 || buf[0] == '-' {
		return false
	}
	cut := indexDashLine(buf) + 1
	if cut == 0 {
		cut = bytes.LastIndexByte(buf, '\n') + 1
	}
	if cut == 0 {
		return false // no whole line buffered
	}
	content, eol := buf[:cut-1], []byte("\n")
	if bytes.HasSuffix(content, []byte("\r")) {
		content, eol = content[:len(content)-1], []byte("\r\n")
	}
	p.pre = p.preBuf[:copy(p.preBuf[:], p.held[:p.nheld])]
	p.nheld = copy(p.held[:], eol)
	p.pending = content // valid until br is read again, after it is returned
	_, _ = br.Discard(cut)
	return true
}

// indexDashLine is bytes.Index(buf, "\n-"), found from the "-" rather
// than the line ending: base64 has no "-" at all, so an attachment's
// buffer is one vectorised scan instead of a call per 78-byte line (which
// had been a twentieth of parsing a backlog).
func indexDashLine(buf []byte) int {
	for off := 0; ; {
		i := bytes.IndexByte(buf[off:], '-')
		if i < 0 {
			return -1
		}
		if at := off + i; at > 0 && buf[at-1] == '\n' {
			return at - 1
		}
		off += i + 1
	}
}

// normEncoding normalises a Content-Transfer-Encoding value, mapping the
// misspellings seen in real mail to what they mean.
func normEncoding(v string) string {
	v = strings.ToLower(strings.TrimSpace(v))
	if i := strings.IndexAny(v, ";("); i >= 0 {
		v = v[:i]
	}
	v = strings.Trim(strings.TrimSpace(v), `"'`)
	compact := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '-', '_':
			return -1
		}
		return r
	}, v)
	switch compact {
	case "", "7bit", "8bit", "binary", "7bits", "8bits", "plain", "text", "none", "ascii", "usascii":
		return "identity"
	case "quotedprintable", "quoted", "qp":
		return "quoted-printable"
	case "base64", "b64":
		return "base64"
	}
	return v
}

// decodeTransfer wraps r with the decoder for the transfer encoding cte.
// ok is false for an encoding it does not know; r is returned as is.
func decodeTransfer(cte string, r io.Reader) (io.Reader, bool) {
	switch normEncoding(cte) {
	case "identity":
		return r, true
	case "quoted-printable":
		return newQPReader(r), true
	case "base64":
		return newBase64Reader(r), true
	}
	return r, false
}

// b64Value maps a byte to its base64 value, 0xff for anything else. Both the
// standard and the URL-safe alphabets are accepted.
var b64Value = func() [256]byte {
	var t [256]byte
	for i := range t {
		t[i] = 0xff
	}
	const std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(std); i++ {
		t[std[i]] = byte(i)
	}
	t['-'] = 62
	t['_'] = 63
	return t
}()

// b64State decodes base64 leniently: characters outside the alphabet are
// skipped, "=" ends a group wherever it appears (so concatenated encoded
// blocks decode), and a trailing partial group yields what it holds.
type b64State struct {
	quad [4]byte
	n    int
	bad  bool
}

func (s *b64State) feed(in, out []byte) []byte {
	for _, c := range in {
		v := b64Value[c]
		if v == 0xff {
			switch c {
			case '=':
				out = s.flush(out)
			case ' ', '\t', '\r', '\n':
			default:
				s.bad = true
			}
			continue
		}
		s.quad[s.n] = v
		s.n++
		if s.n == 4 {
			out = append(out, s.quad[0]<<2|s.quad[1]>>4, s.quad[1]<<4|s.quad[2]>>2, s.quad[2]<<6|s.quad[3])
			s.n = 0
		}
	}
	return out
}

func (s *b64State) flush(out []byte) []byte {
	switch s.n {
	case 1:
		s.bad = true
	case 2:
		out = append(out, s.quad[0]<<2|s.quad[1]>>4)
	case 3:
		out = append(out, s.quad[0]<<2|s.quad[1]>>4, s.quad[1]<<4|s.quad[2]>>2)
	}
	s.n = 0
	return out
}

// b64Class sorts bytes for measureClean: 1 for the alphabet, 0 for the
// whitespace the decoder skips quietly, 1<<8 for anything else, so that a
// sum over eight bytes counts both kinds at once.
var b64Class = func() [256]uint32 {
	var t [256]uint32
	for c := range t {
		switch {
		case b64Value[c] != 0xff:
			t[c] = 1
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
		default:
			t[c] = 1 << 8
		}
	}
	return t
}()

// measure is feed without the output: how many bytes in decodes to.
// Attachments are most of a backlog's bytes, so what precedes the first
// "=" (the padding that ends an encoded block) is counted by measureClean
// when it holds only the alphabet and whitespace; the rest, or a run with
// a stray byte, takes the exact path.
func (s *b64State) measure(in []byte) int64 {
	end := len(in)
	if i := bytes.IndexByte(in, '='); i >= 0 {
		end = i
	}
	n, ok := s.measureClean(in[:end])
	switch {
	case !ok:
		return s.measureExact(in)
	case end < len(in):
		return n + s.measureExact(in[end:])
	}
	return n
}

// measureClean is measure for a run without "=", in one pass without
// branches. It reports false, and leaves s as it was, when the run holds
// a byte outside the alphabet and whitespace.
func (s *b64State) measureClean(in []byte) (int64, bool) {
	var alpha uint64
	var other uint32
	rest := in
	for len(rest) >= 8 {
		v := b64Class[rest[0]] + b64Class[rest[1]] + b64Class[rest[2]] + b64Class[rest[3]] +
			b64Class[rest[4]] + b64Class[rest[5]] + b64Class[rest[6]] + b64Class[rest[7]]
		alpha += uint64(v & 0xff)
		other |= v >> 8
		rest = rest[8:]
	}
	for _, c := range rest {
		v := b64Class[c]
		alpha += uint64(v & 0xff)
		other |= v >> 8
	}
	if other != 0 {
		return 0, false
	}
	k := uint64(s.n) + alpha
	s.n = int(k % 4)
	return int64(k / 4 * 3), true
}

// measureExact is measure a byte at a time. It counts the alphabet
// characters of a run in a local and settles the groups only at "=" and
// at the end.
func (s *b64State) measureExact(in []byte) (n int64) {
	k := int64(s.n) // alphabet characters not yet settled into groups
	for _, c := range in {
		if b64Value[c] != 0xff {
			k++
			continue
		}
		switch c {
		case '=':
			n += k / 4 * 3
			s.n = int(k % 4)
			n += s.measureFlush()
			k = 0
		case ' ', '\t', '\r', '\n':
		default:
			s.bad = true
		}
	}
	s.n = int(k % 4)
	return n + k/4*3
}

// measureFlush is flush without the output.
func (s *b64State) measureFlush() int64 {
	k := s.n
	s.n = 0
	if k == 1 {
		s.bad = true
		return 0
	}
	return int64(max(k-1, 0))
}

// readerPool recycles the 4 KiB buffered readers Parse puts over the
// message, each multipart body and each part: a backlog's messages have
// several parts each, and these buffers were a quarter of what parsing
// allocated.
var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}

// getReader returns a pooled buffered reader over r; putReader gives it
// back once nothing reads from it.
func getReader(r io.Reader) *bufio.Reader {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readerPool.Put(br)
}

// sizeBuffers recycles base64Size's read buffers.
var sizeBuffers = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// base64Size is how many bytes decoding r with the lenient decoder gives,
// and whether it was malformed, without decoding: an attachment's size
// needs no more. Like the decoder, it takes a read error for the end.
func base64Size(r io.Reader) (size int64, bad bool) {
	var s b64State
	bp := sizeBuffers.Get().(*[32 << 10]byte)
	defer sizeBuffers.Put(bp)
	buf := bp[:]
	for {
		n, err := r.Read(buf)
		size += s.measure(buf[:n])
		if err != nil {
			return size + s.measureFlush(), s.bad
		}
	}
}

func decodeBase64Lenient(in []byte) []byte {
	var s b64State
	out := s.feed(in, make([]byte, 0, len(in)*3/4+3))
	return s.flush(out)
}

// chunkDecoder turns a decoder that works a chunk at a time into a
// streaming io.Reader; base64Reader and qpReader share it. A read error
// ends the stream like EOF: what was decoded so far is the body.
type chunkDecoder struct {
	r      io.Reader
	bufs   *chunkBuffers // taken at the first Read, given back by release
	out    []byte        // decoded, not yet returned
	buf    []byte        // the decode step's output while it runs
	eof    bool
	decode func(in, out []byte) []byte // appends in, decoded, to out
	flush  func(out []byte) []byte     // appends what is left at the end
}

// chunkBuffers are a decoder's input and output buffers, pooled: a
// backlog's messages have several decoded parts each.
type chunkBuffers struct {
	in  [4096]byte
	out []byte
}

var chunkPool = sync.Pool{New: func() any { return &chunkBuffers{out: make([]byte, 0, 6<<10)} }}

func (d *chunkDecoder) Read(p []byte) (int, error) {
	for {
		if len(d.out) > 0 {
			n := copy(p, d.out)
			d.out = d.out[n:]
			return n, nil
		}
		if d.eof {
			return 0, io.EOF
		}
		if d.bufs == nil {
			d.bufs = chunkPool.Get().(*chunkBuffers)
		}
		n, err := d.r.Read(d.bufs.in[:])
		d.bufs.out = d.decode(d.bufs.in[:n], d.bufs.out[:0])
		if err != nil {
			d.bufs.out = d.flush(d.bufs.out)
			d.eof = true
		}
		d.out = d.bufs.out
	}
}

// release gives the decoder's buffers back once it has been read; what
// it had decoded and not returned is dropped.
func (d *chunkDecoder) release() {
	if d.bufs == nil {
		return
	}
	if cap(d.bufs.out) <= 64<<10 {
		chunkPool.Put(d.bufs)
	}
	d.bufs, d.out, d.buf = nil, nil, nil
}

// base64Reader is a streaming lenient base64 decoder.
type base64Reader struct {
	chunkDecoder
	st b64State
}

func newBase64Reader(r io.Reader) *base64Reader {
	d := &base64Reader{}
	d.chunkDecoder = chunkDecoder{r: r, decode: d.st.feed, flush: d.st.flush}
	return d
}

// qpReader is a streaming lenient quoted-printable decoder: invalid escapes
// are kept literally, "=" before a line ending (with optional white space)
// is a soft line break, and white space at the end of a line is dropped.
type qpReader struct {
	chunkDecoder
	state int  // qpNormal, qpEq, qpEqHex, qpEqWS, qpCR
	h1    byte // first hex digit after "="
	ws    []byte
	bad   bool // an invalid escape was kept literally
}

func newQPReader(r io.Reader) *qpReader {
	d := &qpReader{}
	d.chunkDecoder = chunkDecoder{
		r: r,
		decode: func(in, out []byte) []byte {
			d.buf = out
			for len(in) > 0 {
				if d.state == qpNormal {
					// A run of bytes that decode to themselves, appended
					// at once: most of a text body.
					if n := qpLiteralRun(in); n > 0 {
						d.emitWS()
						d.buf = append(d.buf, in[:n]...)
						in = in[n:]
						continue
					}
					// An escape whole in this chunk, decoded at once:
					// most of a text in a language other than English.
					if len(in) >= 3 && in[0] == '=' && isHex(in[1]) && isHex(in[2]) {
						d.emitWS()
						d.buf = append(d.buf, unhex(in[1])<<4|unhex(in[2]))
						in = in[3:]
						continue
					}
				}
				d.step(in[0])
				in = in[1:]
			}
			return d.buf
		},
		flush: func(out []byte) []byte {
			d.buf = out
			d.finish()
			return d.buf
		},
	}
	return d
}

// qpLiteralRun is the length of the run at the start of in that decodes
// to itself: bytes qpLiteral marks, and white space followed by one of
// them (white space is dropped only at the end of a line, and left to
// step when what follows it is not in this chunk).
func qpLiteralRun(in []byte) int {
	n := 0
	for n < len(in) {
		switch c := in[n]; {
		case qpLiteral[c]:
			n++
		case (c == ' ' || c == '\t') && n+1 < len(in) && qpLiteral[in[n+1]]:
			n += 2
		default:
			return n
		}
	}
	return n
}

// qpLiteral marks the bytes that step, in qpNormal, appends as they are.
var qpLiteral = func() (t [256]bool) {
	for i := range t {
		t[i] = true
	}
	for _, c := range "= \t\r\n" {
		t[c] = false
	}
	return t
}()

const (
	qpNormal = iota
	qpEq
	qpEqHex
	qpEqWS
	qpCR
)

func (d *qpReader) emitWS() {
	d.buf = append(d.buf, d.ws...)
	d.ws = d.ws[:0]
}

func (d *qpReader) step(c byte) {
	switch d.state {
	case qpNormal:
		switch c {
		case '=':
			d.state = qpEq
		case ' ', '\t':
			d.ws = append(d.ws, c)
			if len(d.ws) > 1024 {
				d.emitWS()
			}
		case '\r':
			d.state = qpCR
		case '\n':
			d.ws = d.ws[:0]
			d.buf = append(d.buf, '\n')
		default:
			d.emitWS()
			d.buf = append(d.buf, c)
		}
	case qpCR:
		d.state = qpNormal
		if c == '\n' {
			d.ws = d.ws[:0]
			d.buf = append(d.buf, '\r', '\n')
			return
		}
		d.emitWS()
		d.buf = append(d.buf, '\r')
		d.step(c)
	case qpEq:
		d.emitWS()
		switch {
		case isHex(c):
			d.h1 = c
			d.state = qpEqHex
		case c == ' ' || c == '\t' || c == '\r':
			d.state = qpEqWS
		case c == '\n':
			d.state = qpNormal // soft line break
		default:
			d.state = qpNormal
			d.bad = true
			d.buf = append(d.buf, '=')
			d.step(c)
		}
	case qpEqHex:
		d.state = qpNormal
		if isHex(c) {
			d.buf = append(d.buf, unhex(d.h1)<<4|unhex(c))
			return
		}
		d.bad = true
		d.buf = append(d.buf, '=', d.h1)
		d.step(c)
	case qpEqWS:
		switch c {
		case ' ', '\t', '\r':
		case '\n':
			d.state = qpNormal // soft line break
		default:
			d.state = qpNormal
			d.bad = true
			d.buf = append(d.buf, '=')
			d.step(c)
		}
	}
}

func (d *qpReader) finish() {
	switch d.state {
	case qpEqHex:
		d.bad = true
		d.buf = append(d.buf, '=', d.h1)
	case qpCR:
		d.buf = append(d.buf, '\r')
	}
	d.ws = d.ws[:0]
	d.state = qpNormal
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// errTracker remembers the first error other than io.EOF from the input, so
// that Parse can tell a read failure from the end of a message.
type errTracker struct {
	r   io.Reader
	err error
}

func (t *errTracker) Read(p []byte) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}
