package classify

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/textproto"
)

// field is one header field: canonical key and unfolded value. The value may
// hold raw 8-bit bytes and RFC 2047 encoded-words; nothing is decoded yet.
type field struct {
	key   string
	value string
}

// header is a header block in message order.
type header []field

func canonicalKey(k string) string { return textproto.CanonicalMIMEHeaderKey(k) }

// get returns the value of the first field named k, "" if none.
func (h header) get(k string) string {
	k = canonicalKey(k)
	for _, f := range h {
		if f.key == k {
			return f.value
		}
	}
	return ""
}

// has reports whether a field named k is present.
func (h header) has(k string) bool {
	k = canonicalKey(k)
	for _, f := range h {
		if f.key == k {
			return true
		}
	}
	return false
}

// values returns every value of the fields named k, in message order.
func (h header) values(k string) []string {
	k = canonicalKey(k)
	var out []string
	for _, f := range h {
		if f.key == k {
			out = append(out, f.value)
		}
	}
	return out
}

// count returns the number of fields named k.
func (h header) count(k string) int {
	k = canonicalKey(k)
	n := 0
	for _, f := range h {
		if f.key == k {
			n++
		}
	}
	return n
}

var (
	errHeaderTooBig = errors.New("header block exceeds the size limit")
	errNoHeader     = errors.New("no header field: the input does not start with a header")
)

// headerResult is what readHeader found.
type headerResult struct {
	h        header
	warnings []string
	// body is a line read past the header that belongs to the body (a
	// header block not ended by a blank line). It is prepended to the body.
	body []byte
}

// readLine reads one line including its line ending (none at EOF), adding its
// length to *n and failing with errHeaderTooBig once *n exceeds max. A line
// that fits br's buffer is returned in it, valid until br is read again;
// a longer one is copied together.
func readLine(br *bufio.Reader, n *int, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		*n += len(frag)
		if *n > max {
			return nil, errHeaderTooBig
		}
		if err == bufio.ErrBufferFull {
			line = append(line, frag...)
			continue
		}
		if line == nil {
			return frag, err
		}
		return append(line, frag...), err
	}
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

func validKey(k []byte) bool {
	if len(k) == 0 {
		return false
	}
	for _, c := range k {
		if c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// splitField splits a header line into a trimmed key and the raw value after
// the colon; ok is false when the line is not "key: value".
func splitField(line []byte) (key, value []byte, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i < 0 {
		return nil, nil, false
	}
	key = bytes.TrimRight(line[:i], " \t")
	if !validKey(key) {
		return nil, nil, false
	}
	return key, line[i+1:], true
}

// unfolding collects a folded field value as its lines come: each line
// is trimmed of surrounding spaces and tabs and the lines are joined with
// one space. The lines need not outlive the call that adds them.
type unfolding struct {
	val      []byte
	lastList bool // the last line ends in ";" or "," (a list wrapped without indentation)
}

func (u *unfolding) add(l []byte) {
	l = bytes.Trim(l, " \t\r")
	u.lastList = bytes.HasSuffix(l, []byte(";")) || bytes.HasSuffix(l, []byte(","))
	if len(l) == 0 {
		return
	}
	if len(u.val) > 0 {
		u.val = append(u.val, ' ')
	}
	u.val = append(u.val, l...)
}

// value returns the unfolded value and empties u for the next field.
func (u *unfolding) value() string {
	v := string(u.val)
	u.val, u.lastList = u.val[:0], false
	return v
}

// commonKeys maps header field names as mail usually spells them to their
// canonical form: most fields of a message are among them, and looking
// one up costs neither an allocation nor canonicalKey's pass.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "Message-Id",
		"In-Reply-To", "References", "Reply-To", "Sender", "Return-Path", "Received", "MIME-Version",
		"Mime-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Content-ID",
		"Content-Id", "Content-Language", "Content-Description", "DKIM-Signature", "Authentication-Results",
		"ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results", "Received-SPF", "X-Mailer",
		"User-Agent", "Thread-Topic", "Thread-Index", "Importance", "X-Priority", "Priority", "Precedence",
		"Auto-Submitted", "List-Id", "List-Unsubscribe", "Delivered-To", "X-Original-To", "Organization",
		"Accept-Language", "X-MS-Has-Attach", "X-MS-TNEF-Correlator", "X-Originating-IP", "Disposition-Notification-To"} {
		m[k] = canonicalKey(k)
	}
	return m
}()

// fieldKey is canonicalKey for a field name read from a header.
func fieldKey(k []byte) string {
	if c, ok := commonKeys[string(k)]; ok {
		return c
	}
	return canonicalKey(string(k))
}

// readHeader reads one header block from br, tolerating what real mail does
// wrong. top marks the message header (as opposed to a MIME part header):
// there a leading mbox "From " line is skipped and a first line that is not a
// header field is an error (errNoHeader); in a part it starts the body.
//
// Lines that are not "key: value" after the first field are appended to the
// previous field when that field's value ends in ";" or "," (a parameter list
// wrapped without indentation); otherwise they end the header and start the
// body. A "key" with invalid characters (spaces, 8-bit) is dropped.
func readHeader(br *bufio.Reader, max int, top bool) (headerResult, error) {
	var res headerResult
	var n int
	var cur unfolding // the value of the field being read
	var curKey string
	flush := func() {
		if curKey != "" {
			res.h = append(res.h, field{key: curKey, value: cur.value()})
		}
		curKey = ""
	}
	first := true
	for {
		line, err := readLine(br, &n, max)
		if err != nil && err != io.EOF {
			return res, err
		}
		if len(line) == 0 && err == io.EOF {
			break
		}
		content := trimEOL(line)
		if len(content) == 0 {
			break // the blank line ending the header
		}
		if first && top && bytes.HasPrefix(content, []byte("From ")) {
			if _, _, ok := splitField(content); !ok {
				res.warnings = append(res.warnings, "mbox \"From \" line before the header skipped")
				if err == io.EOF {
					break
				}
				continue
			}
		}
		switch {
		case isWSP(content[0]) && curKey != "":
			cur.add(content)
		case isWSP(content[0]) && first:
			// A header that starts with white space: read the line as a field.
			trimmed := bytes.TrimLeft(content, " \t")
			if k, v, ok := splitField(trimmed); ok {
				res.warnings = append(res.warnings, "header starts with white space")
				curKey = fieldKey(k)
				cur.add(v)
			} else if top {
				return res, errNoHeader
			} else {
				res.body = bytes.Clone(line) // out of br's buffer
				res.warnings = append(res.warnings, "MIME part without header")
				return res, nil
			}
		case isWSP(content[0]):
			res.warnings = append(res.warnings, "continuation line without a field dropped")
		default:
			k, v, ok := splitField(content)
			if ok {
				flush()
				curKey = fieldKey(k)
				cur.add(v)
				break
			}
			if first {
				if top {
					return res, errNoHeader
				}
				res.body = bytes.Clone(line) // out of br's buffer
				res.warnings = append(res.warnings, "MIME part without header")
				return res, nil
			}
			if bytes.IndexByte(content, ':') >= 0 {
				res.warnings = append(res.warnings, "malformed header field name dropped")
				flush()
				break
			}
			if curKey != "" && cur.lastList {
				res.warnings = append(res.warnings, "header line without indentation joined to the previous field")
				cur.add(content)
				break
			}
			res.warnings = append(res.warnings, "header not ended by a blank line")
			flush()
			res.body = bytes.Clone(line) // out of br's buffer
			return res, nil
		}
		first = false
		if err == io.EOF {
			break
		}
	}
	flush()
	return res, nil
}
