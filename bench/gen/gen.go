// Package gen generates realistic support mail for the benchmark: seeded,
// so the same seed gives the same bytes on every machine.
//
// The mix: mostly new requests, a share of replies (In-Reply-To and
// References to an earlier generated message, "Re:"/"AW:" subjects), a
// share of auto-replies (Auto-Submitted, out-of-office subjects) and about
// 1 % "Production Down" in the customers' languages. Bodies are text, or
// text and HTML alternatives, in UTF-8, ISO-8859-1, ISO-8859-2 or
// Windows-1252 (quoted-printable or base64, RFC 2047 subjects); sizes run
// log-uniformly from 2 KB to 200 KB, padded with base64 attachments.
package gen

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"mime"
	"mime/quotedprintable"
	"strings"
	"time"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
)

// Kind is what a generated message is meant to exercise.
type Kind string

// The kinds of message the generator writes.
const (
	Request   Kind = "new"
	Reply     Kind = "reply"
	AutoReply Kind = "auto-reply"
	Urgent    Kind = "urgent"
)

// Message is one generated mail.
type Message struct {
	Kind      Kind
	MessageID string // with angle brackets, as in the header
	Data      []byte // CRLF line endings
}

// Sizes of the generated mail.
const (
	MinSize = 2 << 10
	MaxSize = 200 << 10
)

// Generator writes messages; it is not safe for concurrent use.
type Generator struct {
	r    *rand.Rand
	n    int
	sent []string // Message-IDs of earlier new requests (reply targets)
	date time.Time
}

// New returns a generator seeded with seed.
func New(seed uint64) *Generator {
	return &Generator{
		r:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		date: time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC),
	}
}

type lang struct {
	code     string
	charsets []string
	words    []string
	urgent   []string
	reply    string
	ooo      string
}

var langs = []lang{
	{"en", []string{"utf-8", "us-ascii", "windows-1252"},
		strings.Fields("the server application report invoice login error please could you check our account since yesterday customers cannot access database backup update version release ticket thanks regards urgent issue problem page timeout certificate"),
		[]string{"Production Down", "PRODUCTION DOWN: checkout", "production down since 09:00"}, "Re: ", "Out of Office: "},
	{"de", []string{"utf-8", "iso-8859-1", "windows-1252"},
		strings.Fields("der Server die Anwendung Rechnung Anmeldung Fehler bitte prüfen Sie unser Konto seit gestern können Kunden nicht zugreifen Datenbank Sicherung Aktualisierung größer Grüße Störung Zertifikat Übertragung schließen"),
		[]string{"Produktionsausfall", "Produktion ausgefallen", "DRINGEND: Produktionsausfall Werk Süd"}, "AW: ", "Abwesenheitsnotiz: "},
	{"pt", []string{"utf-8", "iso-8859-1"},
		strings.Fields("o servidor aplicação relatório fatura acesso erro por favor verificar nossa conta desde ontem clientes não conseguem banco de dados cópia atualização versão obrigado atenção"),
		[]string{"Produção parada", "Produção fora do ar"}, "RES: ", "Resposta automática: "},
	{"fr", []string{"utf-8", "iso-8859-1", "windows-1252"},
		strings.Fields("le serveur l'application rapport facture connexion erreur veuillez vérifier notre compte depuis hier les clients ne peuvent accéder base de données sauvegarde mise à jour merci cordialement"),
		[]string{"Production arrêtée", "Arrêt de production"}, "RE: ", "Réponse automatique : "},
	{"pl", []string{"utf-8", "iso-8859-2"},
		strings.Fields("serwer aplikacja raport faktura logowanie błąd proszę sprawdzić nasze konto od wczoraj klienci nie mogą uzyskać dostępu baza danych kopia aktualizacja dziękuję pozdrawiam żółć"),
		[]string{"Awaria produkcji", "Produkcja zatrzymana"}, "Odp: ", "Autoodpowiedź: "},
}

var topics = []string{"Login fails after update", "Invoice 2026-%d is wrong", "Export job stuck", "Question about licence %d",
	"Slow response times on dashboard", "Certificate expires soon", "API returns 502", "Cannot reset password",
	"Feature request: CSV import", "Backup of tenant %d failed"}

var attachments = []struct{ name, ctype string }{
	{"screenshot.png", "image/png"}, {"report.pdf", "application/pdf"}, {"logs.zip", "application/zip"},
	{"export.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}, {"trace.txt.gz", "application/gzip"},
}

func encoderFor(charset string) *encoding.Encoder {
	switch charset {
	case "iso-8859-1":
		return charmap.ISO8859_1.NewEncoder()
	case "iso-8859-2":
		return charmap.ISO8859_2.NewEncoder()
	case "windows-1252":
		return charmap.Windows1252.NewEncoder()
	}
	return nil
}

// toCharset encodes s in charset, replacing what it cannot hold.
func toCharset(s, charset string) string {
	if charset == "us-ascii" {
		var b strings.Builder
		for _, r := range s {
			if r < 0x80 {
				b.WriteRune(r)
			} else {
				b.WriteByte('?')
			}
		}
		return b.String()
	}
	enc := encoderFor(charset)
	if enc == nil {
		return s
	}
	out, err := encoding.ReplaceUnsupported(enc).String(s)
	if err != nil {
		return s
	}
	return out
}

func (g *Generator) sentence(l lang, words int) string {
	var b strings.Builder
	for i := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(l.words[g.r.IntN(len(l.words))])
	}
	b.WriteString(".")
	s := b.String()
	return strings.ToUpper(s[:1]) + s[1:]
}

func (g *Generator) paragraphs(l lang, bytesWanted int) string {
	var b strings.Builder
	for b.Len() < bytesWanted {
		for range 3 + g.r.IntN(4) {
			b.WriteString(g.sentence(l, 6+g.r.IntN(12)))
			b.WriteByte(' ')
		}
		b.WriteString("\n\n")
	}
	return b.String()
}

func (g *Generator) size() int {
	lo, hi := math.Log(MinSize), math.Log(MaxSize)
	return int(math.Exp(lo + g.r.Float64()*(hi-lo)))
}

// Next returns the next message.
func (g *Generator) Next() Message {
	g.n++
	g.date = g.date.Add(time.Duration(5+g.r.IntN(60)) * time.Second)
	l := langs[g.r.IntN(len(langs))]
	if g.r.IntN(3) > 0 {
		l = langs[0] // most customers write English
	}
	charset := l.charsets[g.r.IntN(len(l.charsets))]
	kind := Request
	switch p := g.r.IntN(1000); {
	case p < 10:
		kind = Urgent
	case p < 70:
		kind = AutoReply
	case p < 220 && len(g.sent) > 0:
		kind = Reply
	}
	cust := g.r.IntN(2000)
	from := fmt.Sprintf("customer%d@client%d.example", cust, cust%97)
	msgID := fmt.Sprintf("<gen.%d.%x@client%d.example>", g.n, g.r.Uint32(), cust%97)
	topic := topics[g.r.IntN(len(topics))]
	if strings.Contains(topic, "%d") {
		topic = fmt.Sprintf(topic, g.r.IntN(10000))
	}
	subject := topic
	var hdr strings.Builder
	switch kind {
	case Urgent:
		subject = l.urgent[g.r.IntN(len(l.urgent))] + " - " + topic
	case AutoReply:
		subject = l.ooo + topic
		hdr.WriteString("Auto-Submitted: auto-replied\r\n")
		if g.r.IntN(2) == 0 {
			hdr.WriteString("Precedence: bulk\r\n")
		}
	case Reply:
		parent := g.sent[g.r.IntN(len(g.sent))]
		subject = l.reply + topic
		fmt.Fprintf(&hdr, "In-Reply-To: %s\r\nReferences: %s\r\n", parent, parent)
	}
	if kind == Request || kind == Urgent {
		g.sent = append(g.sent, msgID)
		if len(g.sent) > 500 {
			g.sent = g.sent[len(g.sent)-500:]
		}
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "Return-Path: <%s>\r\n", from)
	for i := range 2 + g.r.IntN(3) {
		fmt.Fprintf(&b, "Received: from mx%d.client%d.example (mx%d.client%d.example [192.0.2.%d])\r\n\tby mail.example.test with ESMTPS id %08X\r\n\tfor <support@example.test>; %s\r\n",
			i, cust%97, i, cust%97, 1+g.r.IntN(250), g.r.Uint32(), g.date.Format(time.RFC1123Z))
	}
	fmt.Fprintf(&b, "From: %s <%s>\r\n", mime.QEncoding.Encode(charsetLabel(charset), toCharset(l.words[0]+" Kunde "+fmt.Sprint(cust), charset)), from)
	b.WriteString("To: Support <support@example.test>\r\n")
	fmt.Fprintf(&b, "Subject: %s\r\n", encodeSubject(subject, charset))
	fmt.Fprintf(&b, "Date: %s\r\n", g.date.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: %s\r\n", msgID)
	fmt.Fprintf(&b, "Content-Language: %s\r\n", l.code)
	b.WriteString(hdr.String())
	b.WriteString("MIME-Version: 1.0\r\n")

	target := g.size()
	text := g.paragraphs(l, min(target/2, 1000+g.r.IntN(3000)))
	withHTML := g.r.IntN(2) == 0
	cte := "quoted-printable"
	if g.r.IntN(4) == 0 {
		cte = "base64"
	}
	outer := fmt.Sprintf("=_outer_%d_%x", g.n, g.r.Uint64())
	inner := fmt.Sprintf("=_alt_%d_%x", g.n, g.r.Uint64())
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\nThis is a multi-part message in MIME format.\r\n", outer)
	fmt.Fprintf(&b, "--%s\r\n", outer)
	if withHTML {
		fmt.Fprintf(&b, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n--%s\r\n", inner, inner)
	}
	writeText(&b, "text/plain", charset, cte, toCharset(text, charset))
	if withHTML {
		fmt.Fprintf(&b, "--%s\r\n", inner)
		html := "<html><body><p>" + strings.ReplaceAll(htmlEscape(text), "\n\n", "</p>\n<p>") + "</p></body></html>\n"
		writeText(&b, "text/html", charset, cte, toCharset(html, charset))
		fmt.Fprintf(&b, "--%s--\r\n", inner)
	}
	// Attachments fill the message up to its target size.
	for n := 0; b.Len()+200 < target && n < 3; n++ {
		a := attachments[g.r.IntN(len(attachments))]
		left := target - b.Len() - 200
		if n < 2 && left > 8<<10 && g.r.IntN(2) == 0 {
			left = left / 2
		}
		fmt.Fprintf(&b, "--%s\r\nContent-Type: %s; name=\"%s\"\r\nContent-Disposition: attachment; filename=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", outer, a.ctype, a.name, a.name)
		writeBase64(&b, g.r, left*3/4*76/78)
	}
	fmt.Fprintf(&b, "--%s--\r\n", outer)
	return Message{Kind: kind, MessageID: msgID, Data: b.Bytes()}
}

func charsetLabel(cs string) string {
	if cs == "us-ascii" {
		return "utf-8"
	}
	return cs
}

func encodeSubject(s, charset string) string {
	plain := true
	for _, r := range s {
		if r >= 0x80 {
			plain = false
		}
	}
	if plain {
		return s
	}
	if charset == "us-ascii" {
		charset = "utf-8"
	}
	return mime.BEncoding.Encode(charset, toCharset(s, charset))
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func writeText(b *bytes.Buffer, ctype, charset, cte, body string) {
	fmt.Fprintf(b, "Content-Type: %s; charset=\"%s\"\r\nContent-Transfer-Encoding: %s\r\n\r\n", ctype, charset, cte)
	body = strings.ReplaceAll(body, "\n", "\r\n")
	if cte == "base64" {
		writeBase64Bytes(b, []byte(body))
		return
	}
	w := quotedprintable.NewWriter(b)
	io.WriteString(w, body)
	w.Close()
	b.WriteString("\r\n")
}

// writeBase64 writes n random bytes, base64 in 76-column lines.
func writeBase64(b *bytes.Buffer, r *rand.Rand, n int) {
	raw := make([]byte, n)
	for i := 0; i+8 <= len(raw); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			raw[i+j] = byte(v >> (8 * j))
		}
	}
	writeBase64Bytes(b, raw)
}

func writeBase64Bytes(b *bytes.Buffer, raw []byte) {
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	b.WriteString("\r\n")
}

// Big writes one message of about size bytes whose attachment (base64)
// takes all but the first kilobytes; it streams, never holding it whole.
func Big(w io.Writer, size int) (int64, error) {
	var b bytes.Buffer
	b.WriteString("From: Big Sender <big@client1.example>\r\nTo: support@example.test\r\nSubject: Full memory dump for the crash\r\n")
	b.WriteString("Date: Mon, 02 Nov 2026 08:00:00 +0000\r\nMessage-ID: <big.1@client1.example>\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: multipart/mixed; boundary=\"=_big\"\r\n\r\n--=_big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe dump is attached.\r\n")
	b.WriteString("--=_big\r\nContent-Type: application/octet-stream; name=\"core.bin\"\r\nContent-Disposition: attachment; filename=\"core.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	tail := "--=_big--\r\n"
	total := int64(0)
	n, err := w.Write(b.Bytes())
	total += int64(n)
	if err != nil {
		return total, err
	}
	r := rand.New(rand.NewPCG(1, 2))
	line := make([]byte, 57)
	enc := make([]byte, 78)
	for total+78+int64(len(tail)) <= int64(size) {
		for i := range line {
			line[i] = byte(r.Uint32())
		}
		base64.StdEncoding.Encode(enc, line)
		enc[76], enc[77] = '\r', '\n'
		n, err := w.Write(enc)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	n, err = io.WriteString(w, tail)
	return total + int64(n), err
}

// BigSize is the exact size Big writes for size.
func BigSize(size int) int64 {
	n, _ := Big(io.Discard, size)
	return n
}
