package classify

import (
	"strings"
)

// NotificationHeader is the header field caseintake puts on every mail it
// sends; Parse marks mail carrying it as Automated ("own notification").
const NotificationHeader = "X-Caseintake-Notification"

// autoFacts are the body-level facts automated-mail detection needs.
type autoFacts struct {
	reportType string // report-type of the first multipart/report; "-" if it has none
	dsnPart    bool   // a message/delivery-status part was seen
	from       *address
	fromRaw    string
	replyTo    *address // first Reply-To address, nil if none
	subject    string
}

// daemonLocals are sender local parts of delivery systems.
var daemonLocals = map[string]bool{
	"mailer-daemon": true, "mailer_daemon": true, "mailerdaemon": true, "mail-daemon": true,
	"maildaemon": true, "postmaster": true, "post_master": true,
}

// noReplyLocal reports sender local parts that say no person reads replies:
// "noreply", "no-reply", "do-not-reply", also with a suffix ("noreply-alerts").
func noReplyLocal(local string) bool {
	for _, p := range []string{"noreply", "no-reply", "no_reply", "donotreply", "do-not-reply", "do_not_reply", "dontreply", "dont-reply"} {
		if local == p {
			return true
		}
		if strings.HasPrefix(local, p) && len(local) > len(p) {
			switch local[len(p)] {
			case '-', '_', '.', '+':
				return true
			}
		}
	}
	return false
}

// daemonNames are display names of delivery systems, folded.
var daemonNames = map[string]bool{
	"mail delivery system": true, "mail delivery subsystem": true, "mail delivery service": true,
	"mailer daemon": true, "mailer-daemon": true, "mail administrator": true, "postmaster": true,
	"mail system": true, "mail delivery": true,
}

// subjectRule is one subject heuristic.
type subjectRule struct {
	given  string // for the label
	tokens string // words(Fold(given))
	// prefix and inner are tokens as they are matched, made once: a
	// subject is checked against every rule.
	prefix string // tokens + " "
	inner  string // " " + tokens + " "
	nwords int    // words in tokens
	colon  bool   // the phrase must be followed by ":" (a one-word prefix like "Auto:")
	bounce bool
	// anywhere allows the phrase anywhere in a subject that has no reply
	// prefix; otherwise it must start the subject.
	anywhere bool
}

func rules(list []string, bounce bool) []subjectRule {
	var out []subjectRule
	for _, g := range list {
		r := subjectRule{given: g, bounce: bounce}
		if strings.HasPrefix(g, "*") {
			r.anywhere = true
			g = g[1:]
			r.given = g
		}
		if strings.HasSuffix(g, ":") {
			r.colon = true
			g = strings.TrimSuffix(g, ":")
			r.given = strings.TrimSuffix(r.given, ":")
		}
		r.tokens = words(Fold(g))
		r.prefix, r.inner, r.nwords = r.tokens+" ", " "+r.tokens+" ", len(strings.Fields(r.tokens))
		out = append(out, r)
	}
	return out
}

// subjectRules are the last-resort subject heuristics, for auto-replies and
// bounces that set no header. A phrase matches at the start of the subject
// (after gateway tags, but not after "Re:" or "Fwd:", so that a person
// forwarding a bounce is not mistaken for the bounce); phrases marked "*"
// also match inside a subject without a reply prefix; a trailing ":" means
// the colon is required.
var subjectRules = append(rules([]string{
	"Out of Office", "Out of the Office", "Automatic reply", "Automatic response", "Auto reply",
	"Autoreply", "Auto-reply", "Auto response", "Autoresponse", "Auto-response", "AutoRespons",
	"Auto:", "Autosvar", "Automatisk svar", "Automatisch antwoord", "Automatische Antwort",
	"Automatische Abwesenheitsnotiz", "Abwesenheitsnotiz", "Abwesenheit:", "Nicht im Büro",
	"Réponse automatique", "Absence:", "Absent du bureau", "Fuera de la oficina",
	"Respuesta automática", "Resposta automática", "Fora do escritório", "Ausente do escritório",
	"Risposta automatica", "Fuori ufficio", "Odpowiedź automatyczna",
	"Automatyczna odpowiedź", "Automaattinen vastaus", "Vacation reply", "Away from the office",
	"*is out of the office", "*auto-reply from", "*autoreply from",
}, false), rules([]string{
	"Undelivered Mail Returned to Sender", "Undelivered Mail", "Undeliverable",
	"Delivery Status Notification", "Mail delivery failed", "Mail delivery failure",
	"Message delivery failure", "Delivery Failure", "Delivery has failed",
	"Delivery Notification: Delivery has failed", "Returned mail", "failure notice",
	"Nondeliverable", "Non-deliverable", "Non-delivery", "Mail System Error",
	"Message not delivered", "Mail could not be delivered", "Message could not be delivered",
	"Warning: could not send message", "Delayed Mail", "Delivery delayed", "Email delivery failure",
	"Unzustellbar", "Nicht zustellbar", "Non remis", "No se puede entregar", "Não entregue",
	"Onbestelbaar", "Non recapitabile", "Niedostarczalne", "Olevererbart", "Ikke leveret",
	"*Undelivered Mail Returned to Sender", "*Delivery Status Notification (Failure)",
	"*returning message to sender", "Complaint about message from", "メールエラー通知",
	"Mail System Error - Returned Mail",
}, true)...)

// subjectSignal applies subjectRules to a decoded subject.
func subjectSignal(subject string) (string, bool, bool) {
	if subject == "" {
		return "", false, false
	}
	s := stripGatewayTags(subject)
	folded := Fold(s)
	ws := words(folded) + " "
	padded := " " + ws
	noReply := StripReplyPrefixes(s) == s
	for _, r := range subjectRules {
		if r.tokens == "" {
			continue
		}
		switch {
		case strings.HasPrefix(ws, r.prefix):
			if r.colon && !colonAfterWords(folded, r.nwords) {
				continue
			}
		case r.anywhere && noReply && strings.Contains(padded, r.inner):
		default:
			continue
		}
		kind := "an auto-reply"
		if r.bounce {
			kind = "a bounce"
		}
		return "subject looks like " + kind + ": " + r.given, r.bounce, true
	}
	return "", false, false
}

// colonAfterWords reports whether the first n words of folded are followed
// by a colon (before any other word).
func colonAfterWords(folded string, n int) bool {
	// Skip n words (runs of letters and digits), then spaces, then expect ':'.
	i := 0
	for w := 0; w < n; w++ {
		for i < len(folded) && !isWordByte(folded[i]) {
			i++
		}
		for i < len(folded) && isWordByte(folded[i]) {
			i++
		}
	}
	for i < len(folded) && folded[i] == ' ' {
		i++
	}
	return i < len(folded) && folded[i] == ':'
}

// stripGatewayTags removes leading bracketed gateway tags ("[EXT]") only.
func stripGatewayTags(s string) string {
	s = strings.TrimSpace(s)
	for range 16 {
		if !strings.HasPrefix(s, "[") && !strings.HasPrefix(s, "［") {
			break
		}
		n := stripOne(s)
		if n == 0 {
			break
		}
		s = strings.TrimSpace(s[n:])
	}
	return s
}

// firstToken returns the lowercased first word of a structured field value
// (before any ";", "," or comment).
func firstToken(v string) string {
	v, _ = stripComments(v)
	v = strings.TrimSpace(v)
	if i := strings.IndexAny(v, ";, \t"); i >= 0 {
		v = v[:i]
	}
	return strings.ToLower(strings.Trim(v, `"'`))
}

// falseValue reports the values that switch a marker header off.
func falseValue(v string) bool {
	switch firstToken(v) {
	case "no", "false", "0", "off":
		return true
	}
	return false
}

// detectAutomated returns the strongest signal that the message was sent by
// a machine ("" for mail from a person) and whether it is a bounce or other
// delivery report. Bounce is true when any bounce signal is present, even
// when a stronger non-bounce signal names the message.
func detectAutomated(h header, f autoFacts) (signal string, bounce bool) {
	add := func(s string, b bool) {
		if signal == "" {
			signal = s
		}
		if b {
			bounce = true
		}
	}
	if h.has("Auto-Submitted") {
		v := firstToken(h.get("Auto-Submitted"))
		switch v {
		case "no":
		case "":
			add("Auto-Submitted present", false)
		default:
			add("Auto-Submitted: "+label(v), false)
		}
	}
	if h.has(NotificationHeader) {
		add("own notification ("+NotificationHeader+")", false)
	}
	switch f.reportType {
	case "":
	case "delivery-status", "global-delivery-status":
		add("multipart/report (delivery status)", true)
	case "-":
		add("multipart/report", true)
	default:
		add("multipart/report ("+label(f.reportType)+")", true)
	}
	if f.dsnPart {
		add("message/delivery-status part", true)
	}
	for _, rp := range h.values("Return-Path") {
		v, _ := stripComments(rp)
		v = strings.Join(strings.Fields(v), "")
		if v == "<>" || v == `<"">` {
			add("null Return-Path", false)
			break
		}
	}
	if f.from != nil {
		if daemonLocals[f.from.local] {
			add("sender "+label(strings.ToUpper(f.from.local)), true)
		} else if daemonNames[Fold(f.from.name)] {
			add("sender "+label(f.from.name), true)
		}
	} else if w := firstToken(strings.TrimLeft(f.fromRaw, "<\" ")); daemonLocals[strings.TrimRight(w, ">\"")] {
		add("sender "+label(strings.ToUpper(strings.TrimRight(w, ">\""))), true)
	}
	if h.has("X-Failed-Recipients") {
		add("X-Failed-Recipients present", true)
	}
	if v := firstToken(h.get("Precedence")); v == "bulk" || v == "junk" || v == "list" || v == "auto_reply" || v == "auto-reply" {
		add("Precedence: "+v, false)
	}
	if h.has("List-Id") {
		add("List-Id present", false)
	}
	if h.has("List-Unsubscribe") {
		add("List-Unsubscribe present", false)
	}
	for _, k := range []string{"List-Post", "List-Help", "List-Subscribe", "List-Owner", "List-Archive", "Mailing-List", "X-Mailing-List", "X-MLServer", "X-ML-Name"} {
		if h.has(k) {
			add("mailing list header "+k+" present", false)
			break
		}
	}
	if h.has("X-Loop") {
		add("X-Loop: "+label(h.get("X-Loop")), false)
	}
	for _, k := range []string{"X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress", "X-Autogenerated", "X-Autoreply-From", "X-Mail-Autoreply", "X-Apple-Action"} {
		if !h.has(k) {
			continue
		}
		v := h.get(k)
		if k == "X-Apple-Action" && !strings.EqualFold(firstToken(v), "vacation") {
			continue
		}
		if falseValue(v) {
			continue
		}
		if v = label(v); v != "" {
			add(k+": "+v, false)
		} else {
			add(k+" present", false)
		}
	}
	// A no-reply sender with nobody else to answer to is a notification. With
	// a Reply-To elsewhere it is usually a web form relaying a customer, who
	// must get a case.
	if f.from != nil && noReplyLocal(f.from.local) && (f.replyTo == nil || noReplyLocal(f.replyTo.local)) {
		add("sender "+label(f.from.email)+" takes no replies", false)
	}
	if s, b, ok := subjectSignal(f.subject); ok {
		add(s, b)
	}
	return signal, bounce
}
