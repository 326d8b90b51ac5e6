package classify

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// checkInvariants asserts what every successfully parsed Message promises.
func checkInvariants(t *testing.T, name string, m *Message) {
	t.Helper()
	if m == nil {
		t.Errorf("%s: nil Message without error", name)
		return
	}
	strs := map[string]string{
		"MessageID": m.MessageID, "From": m.From, "FromName": m.FromName, "ReplyTo": m.ReplyTo,
		"Subject": m.Subject, "Text": m.Text, "ContentLanguage": m.ContentLanguage, "Automated": m.Automated,
	}
	for k, v := range strs {
		if !utf8.ValidString(v) {
			t.Errorf("%s: %s is not valid UTF-8: %q", name, k, v)
		}
	}
	for _, l := range [][]string{m.InReplyTo, m.References, m.To, m.Cc, m.Warnings} {
		for _, v := range l {
			if !utf8.ValidString(v) {
				t.Errorf("%s: invalid UTF-8 in list: %q", name, v)
			}
		}
	}
	if strings.ContainsAny(m.Subject, "\r\n\t\x00") || strings.TrimSpace(m.Subject) != m.Subject {
		t.Errorf("%s: Subject not one trimmed line: %q", name, m.Subject)
	}
	if strings.ContainsAny(m.FromName, "\r\n\x00") {
		t.Errorf("%s: FromName has control characters: %q", name, m.FromName)
	}
	if m.From != strings.ToLower(m.From) {
		t.Errorf("%s: From not lowercased: %q", name, m.From)
	}
	if m.Bounce && m.Automated == "" {
		t.Errorf("%s: Bounce without Automated", name)
	}
	if len(m.Text) > DefaultLimits().MaxTextBytes {
		t.Errorf("%s: Text longer than the limit: %d", name, len(m.Text))
	}
	for _, a := range m.Attachments {
		if !utf8.ValidString(a.Filename) || len(a.Filename) > 255 || strings.ContainsAny(a.Filename, "/\\\x00\r\n") {
			t.Errorf("%s: unsafe attachment name %q", name, a.Filename)
		}
		if a.Size < 0 {
			t.Errorf("%s: negative attachment size", name)
		}
	}
	for _, id := range append(append([]string{m.MessageID}, m.InReplyTo...), m.References...) {
		if strings.ContainsAny(id, "<> \t\r\n") {
			t.Errorf("%s: Message-ID with brackets or spaces: %q", name, id)
		}
	}
}
