package classify

import (
	"bufio"
	"bytes"
	"strings"
)

// DeliveryReport is what a delivery status notification (RFC 3464) says:
// which message it is about and for which recipients delivery failed.
type DeliveryReport struct {
	// OriginalMessageID is the Message-ID (without <>) of the message the
	// report is about, from the returned message or headers part
	// (message/rfc822, text/rfc822-headers, message/global[-headers]); ""
	// if the report does not return it.
	OriginalMessageID string
	// Failed lists, lowercased, the recipients with "Action: failed"
	// (Final-Recipient, else Original-Recipient).
	Failed []string
	// Status and Diagnostic are those of the first failed recipient, e.g.
	// "5.1.1" and "smtp; 550 5.1.1 user unknown".
	Status     string
	Diagnostic string
}

// maxReportPart bounds how much of a delivery-status or returned-headers
// part is read to fill DeliveryReport; the rest is only counted.
const maxReportPart = 64 << 10

// reportPart reports whether a leaf of media type mt feeds the delivery
// report: the status part anywhere, the returned message only inside a
// multipart/report.
func (p *parser) reportPart(mt string) bool {
	switch mt {
	case "message/delivery-status", "message/global-delivery-status":
		return true
	case "message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers":
		return p.facts.reportType != "" || p.facts.dsnPart
	}
	return false
}

// readReportPart reads the start of a report part (at most maxReportPart
// bytes, already decoded) into p.msg.Report.
func (p *parser) readReportPart(mt string, data []byte) {
	if p.msg.Report == nil {
		p.msg.Report = &DeliveryReport{}
	}
	rep := p.msg.Report
	br := bufio.NewReaderSize(bytes.NewReader(data), 4096)
	switch mt {
	case "message/delivery-status", "message/global-delivery-status":
		// Per-message fields, a blank line, then one block per recipient.
		for {
			res, err := readHeader(br, maxReportPart, false)
			if len(res.h) > 0 {
				p.reportRecipient(rep, res.h)
			}
			if err != nil || len(res.h) == 0 {
				break
			}
		}
	default:
		if rep.OriginalMessageID != "" {
			break
		}
		res, _ := readHeader(br, maxReportPart, false)
		if v := res.h.get("Message-ID"); v != "" {
			rep.OriginalMessageID = parseMessageID(v, func(string) {})
		}
	}
}

func (p *parser) reportRecipient(rep *DeliveryReport, h header) {
	if !strings.EqualFold(firstToken(h.get("Action")), "failed") {
		return
	}
	addr := reportAddr(h.get("Final-Recipient"))
	if addr == "" {
		addr = reportAddr(h.get("Original-Recipient"))
	}
	if addr == "" {
		return
	}
	for _, a := range rep.Failed {
		if a == addr {
			return
		}
	}
	if len(rep.Failed) >= 100 {
		return
	}
	rep.Failed = append(rep.Failed, addr)
	if rep.Status == "" {
		rep.Status = cleanReportText(firstToken(h.get("Status")), 20)
		rep.Diagnostic = cleanReportText(h.get("Diagnostic-Code"), 300)
	}
}

// reportAddr takes "rfc822; user@example.com" (the address type is
// optional in practice) to "user@example.com".
func reportAddr(v string) string {
	if _, after, ok := strings.Cut(v, ";"); ok {
		v = after
	}
	v = strings.Trim(strings.TrimSpace(v), "<>")
	if !strings.Contains(v, "@") || strings.ContainsAny(v, " \t\r\n") || len(v) > 320 {
		return ""
	}
	return strings.ToLower(v)
}

func cleanReportText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = truncateUTF8(s, n)
	}
	return s
}

func truncateUTF8(s string, n int) string {
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
