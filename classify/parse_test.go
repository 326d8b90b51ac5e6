package classify

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// msg joins lines with CRLF.
func msg(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n"))
}

func hasWarning(m *Message, sub string) bool {
	for _, w := range m.Warnings {
		if strings.Contains(w, sub) {
			return true
		}
	}
	return false
}

func TestParseBasic(t *testing.T) {
	raw := msg(
		"Return-Path: <jm@kunde.example>",
		"Received: from a by b; Mon, 2 Jun 2025 10:00:01 +0200",
		"Received: from c by a; Mon, 2 Jun 2025 10:00:00 +0200",
		"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <JM@Kunde.Example>",
		"Reply-To: Helpdesk <Helpdesk@Kunde.Example>",
		"To: Support <support@example.com>, other@example.com",
		"To: second-field@example.com",
		"Cc: undisclosed-recipients:;",
		"Cc: \"Boss, The\" <boss@kunde.example>",
		"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus\r\n\tK=?utf-8?q?=C3=B6?=ln",
		"Date: Mon, 02 Jun 2025 10:00:00 +0200",
		"Message-ID: <a1@kunde.example>",
		"In-Reply-To: <c3@kunde.example> (message of yesterday)",
		"References: <a0@kunde.example>\r\n <c3@kunde.example>",
		"Content-Language: de-DE, en",
		"X-Priority: 1 (Highest)",
		"Importance: high",
		"",
		"Hallo,\r\nes geht nicht.\r\n",
	)
	m := mustParse(t, raw)
	want := &Message{
		MessageID:       "a1@kunde.example",
		InReplyTo:       []string{"c3@kunde.example"},
		References:      []string{"a0@kunde.example", "c3@kunde.example"},
		From:            "jm@kunde.example",
		FromName:        "Jürgen Müller",
		ReplyTo:         "helpdesk@kunde.example",
		To:              []string{"support@example.com", "other@example.com", "second-field@example.com"},
		Cc:              []string{"boss@kunde.example"},
		Subject:         "Grüße ausKöln",
		Text:            "Hallo,\nes geht nicht.",
		ContentLanguage: "de-de",
		ReceivedCount:   2,
	}
	if fmt.Sprint(m.InReplyTo, m.References, m.To, m.Cc) != fmt.Sprint(want.InReplyTo, want.References, want.To, want.Cc) ||
		m.MessageID != want.MessageID || m.From != want.From || m.FromName != want.FromName ||
		m.ReplyTo != want.ReplyTo || m.Text != want.Text ||
		m.ContentLanguage != want.ContentLanguage || m.ReceivedCount != want.ReceivedCount {
		t.Errorf("got  %+v\nwant %+v", m, want)
	}
	// "aus\r\n\tK" unfolds to "aus K", and the encoded-word glued to "K"
	// decodes in place.
	if m.Subject != "Grüße aus Köln" {
		t.Errorf("Subject = %q", m.Subject)
	}
	if !m.Date.Equal(time.Date(2025, 6, 2, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("Date = %v", m.Date)
	}
	if m.Automated != "" || m.Bounce || len(m.Attachments) != 0 {
		t.Errorf("Automated %q Bounce %v Attachments %v", m.Automated, m.Bounce, m.Attachments)
	}
	if len(m.Warnings) != 0 {
		t.Errorf("Warnings = %q", m.Warnings)
	}
}

// TestParseHeaderEdgeCases covers the table of go-message behaviours in the
// primer and what Parse makes of them.
func TestParseHeaderEdgeCases(t *testing.T) {
	tests := []struct {
		name   string
		header []string
		body   string
		check  func(t *testing.T, m *Message)
	}{
		{"Message-ID without brackets", []string{"Message-ID: abc@def"}, "", func(t *testing.T, m *Message) {
			if m.MessageID != "" || !hasWarning(m, "Message-ID") {
				t.Errorf("MessageID %q warnings %q", m.MessageID, m.Warnings)
			}
		}},
		{"Message-ID with comment and spaces", []string{"Message-ID: (c) <x.y@z>  "}, "", func(t *testing.T, m *Message) {
			if m.MessageID != "x.y@z" {
				t.Errorf("MessageID %q", m.MessageID)
			}
		}},
		{"Message-ID kept case", []string{"Message-ID: <AbC@Example.COM>"}, "", func(t *testing.T, m *Message) {
			if m.MessageID != "AbC@Example.COM" {
				t.Errorf("MessageID %q", m.MessageID)
			}
		}},
		{"References with garbage", []string{"References: <a@b> garbage <c@d>"}, "", func(t *testing.T, m *Message) {
			if fmt.Sprint(m.References) != "[a@b c@d]" || !hasWarning(m, "References") {
				t.Errorf("References %q warnings %q", m.References, m.Warnings)
			}
		}},
		{"References comma separated", []string{"References: <a@b>, <c@d>"}, "", func(t *testing.T, m *Message) {
			if fmt.Sprint(m.References) != "[a@b c@d]" {
				t.Errorf("References %q", m.References)
			}
		}},
		{"In-Reply-To with prose", []string{"In-Reply-To: Your message of Monday <x1@y.example>"}, "", func(t *testing.T, m *Message) {
			if fmt.Sprint(m.InReplyTo) != "[x1@y.example]" {
				t.Errorf("InReplyTo %q", m.InReplyTo)
			}
		}},
		{"empty In-Reply-To", []string{"In-Reply-To:"}, "", func(t *testing.T, m *Message) {
			if m.InReplyTo != nil {
				t.Errorf("InReplyTo %q", m.InReplyTo)
			}
		}},
		{"huge References", []string{"References: " + strings.Repeat("<r@x> ", 10) + func() string {
			var b strings.Builder
			for i := range 300 {
				fmt.Fprintf(&b, "<id%d@x> ", i)
			}
			return b.String()
		}()}, "", func(t *testing.T, m *Message) {
			if len(m.References) != 100 || m.References[0] != "r@x" || m.References[99] != "id299@x" || !hasWarning(m, "References has") {
				t.Errorf("References len %d first %q last %q", len(m.References), m.References[0], m.References[len(m.References)-1])
			}
		}},
		{"From undisclosed recipients", []string{"From: undisclosed-recipients:;"}, "", func(t *testing.T, m *Message) {
			if m.From != "" {
				t.Errorf("From %q", m.From)
			}
		}},
		{"From without dot in domain", []string{"From: jm@kunde"}, "", func(t *testing.T, m *Message) {
			if m.From != "jm@kunde" {
				t.Errorf("From %q", m.From)
			}
		}},
		{"From raw UTF-8 name", []string{"From: Jürgen <jm@kunde.example>"}, "", func(t *testing.T, m *Message) {
			if m.From != "jm@kunde.example" || m.FromName != "Jürgen" {
				t.Errorf("From %q name %q", m.From, m.FromName)
			}
		}},
		{"From raw Latin-1 name", []string{"From: J\xfcrgen M\xfcller <jm@kunde.example>"}, "", func(t *testing.T, m *Message) {
			if m.From != "jm@kunde.example" || m.FromName != "Jürgen Müller" {
				t.Errorf("From %q name %q", m.From, m.FromName)
			}
		}},
		{"From with comments", []string{"From: Pete(A wonderful \\) chap) <pete(his account)@silly.test(his host)>"}, "", func(t *testing.T, m *Message) {
			if m.From != "pete@silly.test" {
				t.Errorf("From %q", m.From)
			}
		}},
		{"From with unknown-charset name", []string{"From: =?x-unknown?q?M=FCller?= <m@x.example>"}, "", func(t *testing.T, m *Message) {
			if m.From != "m@x.example" || m.FromName != "Müller" || !hasWarning(m, "charset") {
				t.Errorf("From %q name %q warnings %q", m.From, m.FromName, m.Warnings)
			}
		}},
		{"From with newline in name", []string{"From: =?utf-8?q?Evil=0D=0ABcc=3A_x?= <e@x.example>"}, "", func(t *testing.T, m *Message) {
			if m.FromName != "Evil  Bcc: x" {
				t.Errorf("FromName %q", m.FromName)
			}
		}},
		{"Date yesterday", []string{"Date: yesterday"}, "", func(t *testing.T, m *Message) {
			if !m.Date.IsZero() || !hasWarning(m, "Date") {
				t.Errorf("Date %v warnings %q", m.Date, m.Warnings)
			}
		}},
		{"Date without weekday and seconds", []string{"Date: 2 Jun 2025 10:00 +0200"}, "", func(t *testing.T, m *Message) {
			if m.Date.IsZero() {
				t.Errorf("Date zero, warnings %q", m.Warnings)
			}
		}},
		{"Date in ISO 8601", []string{"Date: 2025-06-02T10:00:00+02:00"}, "", func(t *testing.T, m *Message) {
			if !m.Date.Equal(time.Date(2025, 6, 2, 8, 0, 0, 0, time.UTC)) {
				t.Errorf("Date %v", m.Date)
			}
		}},
		{"raw Latin-1 subject", []string{"Subject: Gr\xfc\xdfe"}, "", func(t *testing.T, m *Message) {
			if m.Subject != "Grüße" {
				t.Errorf("Subject %q", m.Subject)
			}
		}},
		{"raw UTF-8 subject", []string{"Subject: Grüße 日本"}, "", func(t *testing.T, m *Message) {
			if m.Subject != "Grüße 日本" {
				t.Errorf("Subject %q", m.Subject)
			}
		}},
		{"bad B encoded-word", []string{"Subject: =?utf-8?B?!!!?="}, "", func(t *testing.T, m *Message) {
			if m.Subject != "=?utf-8?B?!!!?=" || !hasWarning(m, "encoded-word") {
				t.Errorf("Subject %q warnings %q", m.Subject, m.Warnings)
			}
		}},
		{"B encoded-word without padding", []string{"Subject: =?utf-8?B?eHB0bw?="}, "", func(t *testing.T, m *Message) {
			if m.Subject != "xpto" {
				t.Errorf("Subject %q", m.Subject)
			}
		}},
		{"unknown charset in subject", []string{"Subject: =?x-klingon?q?Qapla=27?= ok"}, "", func(t *testing.T, m *Message) {
			if m.Subject != "Qapla' ok" || !hasWarning(m, "unknown charset") {
				t.Errorf("Subject %q warnings %q", m.Subject, m.Warnings)
			}
		}},
		{"UTF-8 character split over two words", []string{"Subject: =?utf-8?B?R3LD?= =?utf-8?B?vMOfZQ==?="}, "", func(t *testing.T, m *Message) {
			if m.Subject != "Grüße" {
				t.Errorf("Subject %q", m.Subject)
			}
		}},
		{"space between words dropped, kept around text", []string{"Subject: =?utf-8?q?a?= =?utf-8?q?b?= c =?utf-8?q?d?="}, "", func(t *testing.T, m *Message) {
			if m.Subject != "ab c d" {
				t.Errorf("Subject %q", m.Subject)
			}
		}},
		{"control characters in subject", []string{"Subject: =?utf-8?q?a=0D=0Ab=00c=09d=7F?=  "}, "", func(t *testing.T, m *Message) {
			if m.Subject != "a  b c d" {
				t.Errorf("Subject %q", m.Subject)
			}
		}},
		{"Content-Language", []string{"Content-Language: (comment) EN-us"}, "", func(t *testing.T, m *Message) {
			if m.ContentLanguage != "en-us" {
				t.Errorf("ContentLanguage %q", m.ContentLanguage)
			}
		}},
		{"Content-Language garbage", []string{"Content-Language: <script>"}, "", func(t *testing.T, m *Message) {
			if m.ContentLanguage != "" {
				t.Errorf("ContentLanguage %q", m.ContentLanguage)
			}
		}},
		{"x-uuencode body", []string{"Content-Transfer-Encoding: x-uuencode"}, "begin 644 a.txt\r\n#86)C\r\n`\r\nend\r\n", func(t *testing.T, m *Message) {
			if !hasWarning(m, "x-uuencode") || !strings.Contains(m.Text, "begin 644") {
				t.Errorf("Text %q warnings %q", m.Text, m.Warnings)
			}
		}},
		{"misspelt transfer encodings", []string{"Content-Transfer-Encoding: Quoted Printable"}, "a=3Db=\r\nc\r\n", func(t *testing.T, m *Message) {
			if m.Text != "a=bc" || len(m.Warnings) != 0 {
				t.Errorf("Text %q warnings %q", m.Text, m.Warnings)
			}
		}},
		{"unknown body charset", []string{"Content-Type: text/plain; charset=x-foo"}, "caf\xe9", func(t *testing.T, m *Message) {
			if m.Text != "café" || !hasWarning(m, "unknown charset") {
				t.Errorf("Text %q warnings %q", m.Text, m.Warnings)
			}
		}},
		{"header line without colon joined after ;", []string{"Content-Type: text/plain;", "charset=iso-8859-1"}, "caf\xe9", func(t *testing.T, m *Message) {
			if m.Text != "café" || !hasWarning(m, "joined") {
				t.Errorf("Text %q warnings %q", m.Text, m.Warnings)
			}
		}},
		{"header not ended by blank line", []string{"Subject: s", "this is already the body"}, "more body", func(t *testing.T, m *Message) {
			if m.Subject != "s" || !strings.HasPrefix(m.Text, "this is already the body") {
				t.Errorf("Subject %q Text %q", m.Subject, m.Text)
			}
		}},
		{"malformed field name dropped", []string{"Bad Name: x", "Subject: s"}, "", func(t *testing.T, m *Message) {
			if m.Subject != "s" || !hasWarning(m, "malformed header field name") {
				t.Errorf("Subject %q warnings %q", m.Subject, m.Warnings)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, mustParse(t, rawMessage(tt.header, tt.body)))
		})
	}
}

func TestParseLineEndingsAndShapes(t *testing.T) {
	// LF only.
	m := mustParse(t, []byte("From: a@b.example\nSubject: lf\nMessage-ID: <x@y>\n\nline1\nline2\n"))
	if m.Subject != "lf" || m.Text != "line1\nline2" || m.MessageID != "x@y" {
		t.Errorf("LF message: %+v", m)
	}
	// Header without body, without final newline.
	m = mustParse(t, []byte("From: a@b.example\r\nSubject: only header"))
	if m.Subject != "only header" || m.Text != "" {
		t.Errorf("header-only message: %+v", m)
	}
	// mbox From line and header starting with white space.
	m = mustParse(t, []byte("From MAILER-DAEMON  Mon Sep 20 19:29:27 2021\n  Subject: x\nFrom: a@b.example\n\nbody"))
	if m.Subject != "x" || !hasWarning(m, "mbox") || !hasWarning(m, "white space") {
		t.Errorf("mbox message: %+v", m)
	}
}

func TestParseCharsetSubjects(t *testing.T) {
	tests := []struct {
		header string
		want   string
	}{
		{"=?windows-1252?Q?Rechnung_=80_100?=", "Rechnung € 100"},
		{"=?windows-1252?Q?=93quoted=94_=96_dash?=", "“quoted” – dash"},
		{"=?ISO-8859-15?Q?Preis_=A4_5?=", "Preis € 5"},
		{"=?iso-8859-1?q?Gr=FC=DFe?=", "Grüße"},
		{koi8("Продукция остановлена"), "Продукция остановлена"},
		{"=?Shift_JIS?B?g2WDWINn?=", "テスト"},
		{"=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=", "テスト"},
		{"=?gb2312?B?suLK1A==?=", "测试"},
		{"=?big5?B?tPrF5w==?=", "測驗"},
		{"=?euc-kr?B?xde9usau?=", "테스트"},
		{"=?utf-8*de?q?Gr=C3=BC=C3=9Fe?=", "Grüße"},
		{"=?UTF-8?Q?=F0=9F=9A=A8_Alarm?=", "🚨 Alarm"},
		{"Gr\xfc\xdfe =?utf-8?q?und_mehr?=", "Grüße und mehr"},
		{"=?utf-8?q?invalid_=FF_byte?=", "invalid ÿ byte"},
	}
	for _, tt := range tests {
		m := mustParse(t, rawMessage([]string{"Subject: " + tt.header}, ""))
		if m.Subject != tt.want {
			t.Errorf("Subject %q decoded as %q, want %q (warnings %q)", tt.header, m.Subject, tt.want, m.Warnings)
		}
	}
}

func koi8(s string) string {
	w, _ := encodedWord(s, "KOI8-R", "B")
	return w
}

func TestParseBodyCharsets(t *testing.T) {
	tests := []struct {
		ct, cte, body, want string
	}{
		{"text/plain; charset=iso-8859-1", "8bit", "Gr\xfc\xdfe", "Grüße"},
		{"text/plain; charset=windows-1252", "quoted-printable", "=80 5", "€ 5"},
		{"text/plain; charset=koi8-r", "8bit", "\xf0\xd2\xc9\xd7\xc5\xd4", "Привет"},
		{"text/plain; charset=utf-8", "base64", base64.StdEncoding.EncodeToString([]byte("Grüße\r\n")), "Grüße"},
		{"text/plain", "8bit", "Gr\xfc\xdfe", "Grüße"},           // undeclared 8-bit: windows-1252
		{"text/plain; charset=utf-8", "8bit", "ok \xff", "ok ÿ"}, // mislabelled byte
		{"text/plain; charset=\"charset=us-ascii\"", "7bit", "x", "x"},
		{"text/plain; charset=us-ascii", "quoted-printable", "soft=\r\nbreak =3D ok=ZZ trailing   \r\nend", "softbreak = ok=ZZ trailing\nend"},
	}
	for _, tt := range tests {
		m := mustParse(t, rawMessage([]string{"Content-Type: " + tt.ct, "Content-Transfer-Encoding: " + tt.cte}, tt.body))
		if m.Text != tt.want {
			t.Errorf("%s / %s %q: Text %q, want %q (warnings %q)", tt.ct, tt.cte, tt.body, m.Text, tt.want, m.Warnings)
		}
	}
}

func TestParseHTMLText(t *testing.T) {
	html := `<!DOCTYPE html><html><head><title>Title</title><style>p{color:red}</style>
<script>alert("x<p>")</script><meta charset="utf-8"></head>
<body><p>Hello&nbsp;<b>World</b> &amp; friends&#33;</p><!-- hidden -->
<div>Line&nbsp;two<br>Line three</div><ul><li>one</li><li>two &euro; &#x20AC; &lt;tag&gt;</li></ul>
<table><tr><td>a</td><td>b</td></tr></table><p>5 &lt; 6 and 7 > 3</p></body></html>`
	want := "Hello World & friends!\nLine two\nLine three\none\ntwo € € <tag>\na b\n5 < 6 and 7 > 3"
	m := mustParse(t, rawMessage([]string{"MIME-Version: 1.0", "Content-Type: text/html; charset=utf-8"}, html))
	if m.Text != want {
		t.Errorf("Text = %q\nwant   %q", m.Text, want)
	}

	// text/plain wins even when it comes after the HTML part.
	raw := rawMessage([]string{"Content-Type: multipart/alternative; boundary=b1"},
		"--b1\r\nContent-Type: text/html\r\n\r\n<p>html version</p>\r\n--b1\r\nContent-Type: text/plain\r\n\r\nplain version\r\n--b1--\r\n")
	if m := mustParse(t, raw); m.Text != "plain version" {
		t.Errorf("alternative: Text = %q", m.Text)
	}

	// An empty text/plain alternative does not hide the HTML.
	raw = rawMessage([]string{"Content-Type: multipart/alternative; boundary=b1"},
		"--b1\r\nContent-Type: text/plain\r\n\r\n \r\n\r\n--b1\r\nContent-Type: text/html\r\n\r\n<p>only html</p>\r\n--b1--\r\n")
	if m := mustParse(t, raw); m.Text != "only html" {
		t.Errorf("empty plain alternative: Text = %q", m.Text)
	}

	// HTML only, charset from <meta>, no Content-Type charset.
	raw = rawMessage([]string{"Content-Type: text/html"}, `<html><head><meta http-equiv="Content-Type" content="text/html; charset=koi8-r"></head><body>`+"\xf0\xd2\xc9\xd7\xc5\xd4"+`</body></html>`)
	if m := mustParse(t, raw); m.Text != "Привет" {
		t.Errorf("meta charset: Text = %q", m.Text)
	}

	// Unterminated constructs.
	for _, h := range []string{"<p>a<script>b", "<!-- x", "a <b", "a < b", "<p title='>'>x</p>", "<", "&", "&#xFFFFFFFF;", "<style>"} {
		m := mustParse(t, rawMessage([]string{"Content-Type: text/html"}, h))
		if !utf8.ValidString(m.Text) {
			t.Errorf("%q: invalid text %q", h, m.Text)
		}
	}
}

func TestParseAttachments(t *testing.T) {
	pdf := bytes.Repeat([]byte{0, 1, 2, 0xff}, 1000)
	raw := rawMessage([]string{"MIME-Version: 1.0", `Content-Type: multipart/mixed; boundary="outer"`},
		"preamble\r\n--outer\r\n"+
			"Content-Type: text/plain; charset=utf-8\r\n\r\nSiehe Anhang.\r\n"+
			"--outer\r\n"+
			"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"+
			"Content-Disposition: attachment; filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf\r\n\r\n"+
			wrap76(base64.StdEncoding.EncodeToString(pdf))+"\r\n"+
			"--outer\r\n"+
			"Content-Type: text/plain\r\nContent-Disposition: attachment;\r\n filename*0*=iso-8859-1''%DCber;\r\n filename*1=\"sicht \";\r\n filename*2*=%E4.txt\r\n\r\n"+
			"12345\r\n"+
			"--outer\r\n"+
			"Content-Type: image/png; name=\"=?utf-8?B?QmlsZCDDvC5wbmc=?=\"\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\n"+
			"AAECAw==\r\n"+
			"--outer\r\n"+
			"Content-Type: application/octet-stream; name=\"../../etc/passwd\"\r\n\r\nroot\r\n"+
			"--outer\r\n"+
			"Content-Type: message/rfc822\r\n\r\nFrom: x@y\r\nSubject: inner\r\n\r\ninner body\r\n"+
			"--outer--\r\nepilogue\r\n")
	m := mustParse(t, raw)
	if m.Text != "Siehe Anhang." {
		t.Errorf("Text = %q", m.Text)
	}
	want := []Attachment{
		{"Rechnung März.pdf", "application/pdf", int64(len(pdf))},
		{"Übersicht ä.txt", "text/plain", 5},
		{"Bild ü.png", "image/png", 4},
		{"passwd", "application/octet-stream", 4},
		{"", "message/rfc822", 39},
	}
	if fmt.Sprintf("%+v", m.Attachments) != fmt.Sprintf("%+v", want) {
		t.Errorf("Attachments\n got  %+v\n want %+v", m.Attachments, want)
	}
	if len(m.Warnings) != 0 {
		t.Errorf("Warnings = %q", m.Warnings)
	}
}

func wrap76(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	b.WriteString(s)
	return b.String()
}

func TestSanitizeFilename(t *testing.T) {
	long := strings.Repeat("a", 1000) + ".pdf"
	longUTF8 := strings.Repeat("ä", 600) + ".docx"
	tests := []struct{ in, want string }{
		{"../../etc/passwd", "passwd"},
		{`..\..\windows\system32\cmd.exe`, "cmd.exe"},
		{`C:\Users\x\Rechnung.pdf`, "Rechnung.pdf"},
		{"C:evil.txt", "C_evil.txt"},
		{"invoice\u202efdp.exe", "invoicefdp.exe"},
		{"\u2066a\u2069\u200e\u200fb\u061c.txt", "ab.txt"},
		{"a\x00b\r\nc\x1bd\x7f.txt", "abcd.txt"},
		{"tab\there.txt", "tabhere.txt"},
		{"..", ""},
		{"/", ""},
		{"  .hidden  ", "hidden"},
		{"trailing dots...", "trailing dots"},
		{"\xff\xfe.bin", "ÿþ.bin"},
		{"e\u0301t\u0301e.txt", "\u00e9t\u0301e.txt"}, // NFC
		{"ok name (1).pdf", "ok name (1).pdf"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := sanitizeFilename(tt.in); got != tt.want {
			t.Errorf("sanitizeFilename(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	for _, in := range []string{long, longUTF8} {
		got := sanitizeFilename(in)
		if len(got) > 255 || !utf8.ValidString(got) || !strings.HasSuffix(got, in[strings.LastIndexByte(in, '.'):]) {
			t.Errorf("long name: %d bytes, valid %v, %q", len(got), utf8.ValidString(got), got[len(got)-10:])
		}
	}
	// Through Parse, hostile names in every encoding.
	raw := rawMessage([]string{`Content-Type: multipart/mixed; boundary="b"`},
		"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n"+
			"--b\r\nContent-Disposition: attachment; filename=\"=?utf-8?q?..=2F..=2Fevil=E2=80=AEgpj.exe?=\"\r\n\r\nx\r\n"+
			"--b\r\nContent-Disposition: attachment; filename*=utf-8''%2E%2E%2F%0D%0Ax%00.sh\r\n\r\nx\r\n"+
			"--b\r\nContent-Disposition: attachment; filename=\""+strings.Repeat("n", 1000)+".zip\"\r\n\r\nx\r\n"+
			"--b--\r\n")
	m := mustParse(t, raw)
	wantNames := []string{"evilgpj.exe", "x.sh", strings.Repeat("n", 251) + ".zip"}
	if len(m.Attachments) != len(wantNames) {
		t.Fatalf("Attachments = %+v", m.Attachments)
	}
	for i, a := range m.Attachments {
		if a.Filename != wantNames[i] {
			t.Errorf("attachment %d: %q, want %q", i, a.Filename, wantNames[i])
		}
	}
}

// TestParseMIMERobustness feeds broken MIME structures.
func TestParseMIMERobustness(t *testing.T) {
	tests := []struct {
		name     string
		header   []string
		body     string
		wantText string
		warning  string
	}{
		{"missing close delimiter", []string{`Content-Type: multipart/mixed; boundary="b"`},
			"--b\r\nContent-Type: text/plain\r\n\r\nunterminated\r\n", "unterminated", "not closed"},
		{"no boundary parameter", []string{`Content-Type: multipart/mixed`},
			"just text\r\n", "just text", "without boundary"},
		{"boundary never appears", []string{`Content-Type: multipart/mixed; boundary="zzz"`},
			"plain text after all\r\n", "plain text after all", "never found"},
		{"similar boundaries", []string{`Content-Type: multipart/mixed; boundary="b"`},
			"--b\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\ninner\r\n--b1--\r\n--b\r\nContent-Type: text/plain\r\n\r\nsecond\r\n--b--\r\n", "inner", ""},
		{"part without header", []string{`Content-Type: multipart/mixed; boundary="b"`},
			"--b\r\nno header here\r\n--b--\r\n", "no header here", "without header"},
		{"bad base64 text", []string{`Content-Type: text/plain`, "Content-Transfer-Encoding: base64"},
			"SGVsbG8*gV29ybGQh\r\n", "Hello World!", "base64"},
		{"text marked base64 that is not", []string{`Content-Type: text/plain`, "Content-Transfer-Encoding: base64"},
			"this is plain text, not base64\r\nreally\r\n", "this is plain text, not base64\nreally", "not base64"},
		{"concatenated base64 blocks", []string{`Content-Type: text/plain`, "Content-Transfer-Encoding: base64"},
			"SGk=\r\nIHRoZXJl\r\n", "Hi there", ""},
		{"invalid Content-Type", []string{`Content-Type: text/plain>`},
			"text\r\n", "text", "parsed leniently"},
		{"garbage Content-Type", []string{`Content-Type: ;;;`},
			"text\r\n", "text", "treated as text/plain"},
		{"parameter without semicolon", []string{`Content-Type: multipart/mixed boundary="b"`},
			"--b\r\n\r\nx\r\n--b--\r\n", "x", "parsed leniently"},
		{"very long preamble line", []string{`Content-Type: multipart/mixed; boundary="b"`},
			strings.Repeat("p", 100000) + "\r\n--b\r\n\r\nafter\r\n--b--", "after", ""},
		{"very long body line", []string{`Content-Type: multipart/mixed; boundary="b"`},
			"--b\r\n\r\n" + strings.Repeat("x", 50000) + "\r\n--b--", strings.Repeat("x", 50000), ""},
		{"boundary line with padding", []string{`Content-Type: multipart/mixed; boundary="b"`},
			"--b \t\r\n\r\npadded\r\n--b-- \r\n", "padded", ""},
		{"mixed line endings kept", []string{`Content-Type: multipart/mixed; boundary="b"`},
			"--b\r\n\r\na\nb\r\nc\rd\n\r\ne\r\n--b--\r\n", "a\nb\nc\nd\n\ne", ""},
		{"LF only multipart", []string{`Content-Type: multipart/mixed; boundary="b"`},
			"--b\nContent-Type: text/plain\n\nlf part\n--b--\n", "lf part", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustParse(t, rawMessage(tt.header, tt.body))
			if m.Text != tt.wantText {
				t.Errorf("Text = %q, want %q", m.Text, tt.wantText)
			}
			if tt.warning != "" && !hasWarning(m, tt.warning) {
				t.Errorf("no warning %q in %q", tt.warning, m.Warnings)
			}
		})
	}
}

// nested builds a message with depth nested multiparts.
func nested(depth int) []byte {
	var b strings.Builder
	b.WriteString("From: a@b.example\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n")
	for i := 1; i < depth; i++ {
		fmt.Fprintf(&b, "--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n", i-1, i)
	}
	fmt.Fprintf(&b, "--b%d\r\nContent-Type: text/plain\r\n\r\ndeep\r\n", depth-1)
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return []byte(b.String())
}

func manyParts(n int) []byte {
	var b strings.Builder
	b.WriteString("From: a@b.example\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n")
	for range n {
		b.WriteString("--b\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n")
	}
	b.WriteString("--b--\r\n")
	return []byte(b.String())
}

func TestParseLimits(t *testing.T) {
	lim := Limits{MaxHeaderBytes: 4096, MaxParts: 10, MaxDepth: 5, MaxTextBytes: 100}
	bigHeader := "From: a@b.example\r\nX-Big: " + strings.Repeat("x", 5000) + "\r\n\r\nbody"
	bigFolded := "From: a@b.example\r\nX-Big: x\r\n" + strings.Repeat(" folded continuation line\r\n", 300) + "\r\nbody"
	bigPartHeader := "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nX-Big: " + strings.Repeat("y", 5000) + "\r\n\r\nx\r\n--b--\r\n"
	tests := []struct {
		name   string
		raw    []byte
		reason string
	}{
		{"header size", []byte(bigHeader), "limit:header-size"},
		{"folded header size", []byte(bigFolded), "limit:header-size"},
		{"part header size", []byte(bigPartHeader), "limit:header-size"},
		{"parts", manyParts(11), "limit:parts"},
		{"depth", nested(6), "limit:depth"},
		{"no header", []byte("just some text\r\nwithout header\r\n"), "header"},
		{"empty", nil, "header"},
		{"blank line first", []byte("\r\nbody"), "header"},
		{"html file", []byte("<html xmlns:o=\"urn:x\">\r\n<body>hi</body></html>"), "header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(bytes.NewReader(tt.raw), lim)
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Reason != tt.reason {
				t.Fatalf("err = %v, want *ParseError %q", err, tt.reason)
			}
			if pe.Error() == "" || !strings.Contains(pe.Error(), tt.reason) {
				t.Errorf("Error() = %q", pe.Error())
			}
		})
	}
	// At the limits exactly: fine.
	for name, raw := range map[string][]byte{"10 parts": manyParts(10), "depth 5": nested(5)} {
		m, err := Parse(bytes.NewReader(raw), lim)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if name == "depth 5" && m.Text != "deep" {
			t.Errorf("%s: Text %q", name, m.Text)
		}
	}
	// The limit error keeps the header fields for logging and keys.
	raw := append([]byte("Message-ID: <lim@x>\r\nSubject: many\r\n"), manyParts(11)[len("From: a@b.example\r\n"):]...)
	m, err := Parse(bytes.NewReader(raw), lim)
	if err == nil || m == nil || m.MessageID != "lim@x" || m.Subject != "many" {
		t.Errorf("limit error: m %+v err %v", m, err)
	}
	// Text over the limit is truncated with a warning, on a rune boundary.
	m, err = Parse(bytes.NewReader([]byte("From: a@b.example\r\n\r\n"+strings.Repeat("ä", 200))), lim)
	if err != nil || len(m.Text) > 100 || len(m.Text) < 98 || !utf8.ValidString(m.Text) || !hasWarning(m, "truncated") {
		t.Errorf("truncation: %d bytes, err %v, warnings %q", len(m.Text), err, m.Warnings)
	}
	// Zero limits mean the defaults.
	if _, err := Parse(bytes.NewReader(manyParts(400)), Limits{}); err != nil {
		t.Errorf("zero Limits: %v", err)
	}
	if d := DefaultLimits(); d.MaxHeaderBytes != 256<<10 || d.MaxParts != 500 || d.MaxDepth != 20 || d.MaxTextBytes != 1<<20 {
		t.Errorf("DefaultLimits = %+v", d)
	}
}

type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestParseReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	for _, data := range []string{"", "From: a@b\r\nSub", "From: a@b\r\n\r\nbody", "From: a@b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\npart"} {
		_, err := Parse(&failingReader{data: []byte(data), err: boom}, DefaultLimits())
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Reason != "read" || !errors.Is(err, boom) {
			t.Errorf("%q: err = %v, want read error wrapping %v", data, err, boom)
		}
	}
	if _, err := Parse(nil, DefaultLimits()); err == nil {
		t.Error("nil reader: no error")
	}
}

// bigAttachment streams a message with a large base64 attachment without
// ever holding it.
type bigAttachment struct {
	head, tail []byte
	lines      int // base64 lines still to send
	line       []byte
	pos        int
	state      int
}

func newBigAttachment(lines int) *bigAttachment {
	return &bigAttachment{
		head: []byte("From: a@b.example\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\r\nsee attachment\r\n" +
			"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=big.bin\r\n\r\n"),
		tail:  []byte("--b--\r\n"),
		lines: lines,
		line:  []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("0123456789ab"), 19)) + "\r\n"), // 57 bytes... x4
	}
}

func (r *bigAttachment) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		var src []byte
		switch r.state {
		case 0:
			src = r.head
		case 1:
			if r.lines == 0 {
				r.state++
				continue
			}
			src = r.line
		case 2:
			src = r.tail
		default:
			if n == 0 {
				return 0, io.EOF
			}
			return n, nil
		}
		c := copy(p[n:], src[r.pos:])
		n += c
		r.pos += c
		if r.pos == len(src) {
			r.pos = 0
			if r.state == 1 {
				r.lines--
			} else {
				r.state++
			}
		}
	}
	return n, nil
}

func TestParseStreamsAttachments(t *testing.T) {
	const lines = 100000 // 228 bytes each: 22.8 MB decoded
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := Parse(newBigAttachment(lines), DefaultLimits())
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Attachments) != 1 || m.Attachments[0].Size != lines*228 || m.Attachments[0].Filename != "big.bin" || m.Text != "see attachment" {
		t.Fatalf("got %+v", m)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("Parse allocated %d bytes for a %d-byte attachment: it is not streaming", alloc, lines*228)
	}
}
