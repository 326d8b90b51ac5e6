package notify

import (
	"strings"
	"testing"

	"github.com/caseintake/caseintake/config"
)

func TestMessageIDsVerifyOnlyUnderTheirKey(t *testing.T) {
	newRenderer := func(key []byte) *Renderer {
		r, err := NewRenderer(config.SMTP{From: "Support <support@example.test>"}, config.Notify{})
		if err != nil {
			t.Fatal(err)
		}
		r.SetMessageIDKey(key)
		return r
	}
	key := NewMessageIDKey()
	r := newRenderer(key)
	id := r.notificationID(42, 3, KindAck)
	root := r.ThreadRoot(42)
	if !strings.HasPrefix(id, "caseintake.42.3.ack.") || !strings.HasSuffix(id, "@example.test") {
		t.Fatalf("notification Message-ID %q does not have the documented shape", id)
	}
	// The same key after a restart (a new renderer) still recognises them.
	again := newRenderer(key)
	for _, good := range []string{id, root} {
		if got := again.CheckMessageID(good); got != Genuine {
			t.Errorf("CheckMessageID(%q) = %v, want Genuine", good, got)
		}
	}
	local, _, _ := strings.Cut(id, "@")
	for _, forged := range []string{
		strings.Replace(id, "caseintake.42.", "caseintake.43.", 1), // token of case 42 on case 43
		"caseintake.42.3.ack@example.test",                         // no token
		local + "x@example.test",                                   // token too long
		strings.ToUpper(local) + "@EXAMPLE.TEST",                   // body changed
	} {
		if got := again.CheckMessageID(forged); got != Forged {
			t.Errorf("CheckMessageID(%q) = %v, want Forged", forged, got)
		}
	}
	if got := newRenderer(NewMessageIDKey()).CheckMessageID(id); got != Forged {
		t.Errorf("another key: CheckMessageID = %v, want Forged", got)
	}
	for _, other := range []string{"caseintake.42.3.ack.abc@other.example", "v1@customer.example", "no-at-sign"} {
		if got := again.CheckMessageID(other); got != NotOurs {
			t.Errorf("CheckMessageID(%q) = %v, want NotOurs", other, got)
		}
	}
}

// A bounce names the notification it returns by its Message-ID: the case
// comes from a genuine one only.
func TestCaseOfMessageID(t *testing.T) {
	r, err := NewRenderer(config.SMTP{From: "Support <support@example.test>"}, config.Notify{})
	if err != nil {
		t.Fatal(err)
	}
	id := r.notificationID(1042, 3, KindTeamNew)
	for _, good := range []string{id, "<" + id + ">", r.ThreadRoot(1042)} {
		if c, ok := r.CaseOfMessageID(good); !ok || c != 1042 {
			t.Errorf("CaseOfMessageID(%q) = %d, %v; want 1042", good, c, ok)
		}
	}
	for _, bad := range []string{
		strings.Replace(id, "caseintake.1042.", "caseintake.1043.", 1), // forged
		"v1@customer.example",
		"",
	} {
		if c, ok := r.CaseOfMessageID(bad); ok {
			t.Errorf("CaseOfMessageID(%q) = %d, true; want false", bad, c)
		}
	}
}
