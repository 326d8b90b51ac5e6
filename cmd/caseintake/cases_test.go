package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/mail"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caseintake/caseintake/devmail"
)

// sentSince waits (with a deadline) for n more SMTP transactions after the
// first `after` and returns them as "KIND to A,B: SUBJECT" lines.
func sentSince(t *testing.T, m *devmail.Server, after, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	all, err := m.WaitSent(ctx, after+n)
	if err != nil {
		t.Fatalf("waiting for %d notifications after %d: %v (got %d)", n, after, err, len(all))
	}
	var out []string
	for _, e := range all[after:] {
		msg, err := mail.ReadMessage(bytes.NewReader(e.Data))
		if err != nil {
			t.Fatal(err)
		}
		subject, _ := mimeWords.DecodeHeader(msg.Header.Get("Subject"))
		h := msg.Header
		if h.Get("Message-Id") == "" || h.Get("X-Caseintake-Case") == "" || e.From != "" {
			t.Errorf("%s: Message-Id %q, case %q, envelope from %q", subject, h.Get("Message-Id"), h.Get("X-Caseintake-Case"), e.From)
		}
		out = append(out, fmt.Sprintf("%s/%s to %s: %s", h.Get("X-Caseintake-Notification"), h.Get("Auto-Submitted"), strings.Join(e.To, ","), subject))
	}
	return out
}

func showJSON(t *testing.T, cfg string, id int) map[string]any {
	t.Helper()
	out, err := runCLI(t, "cases", "show", fmt.Sprint(id), "--json", "-c", cfg)
	if err != nil {
		t.Fatalf("cases show %d: %v\n%s", id, err, out)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("cases show --json: %v\n%s", err, out)
	}
	return v
}

// waitCase polls `cases show` until case id exists and cond holds.
func waitCase(t *testing.T, cfg string, id int, cond func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := runCLI(t, "cases", "show", fmt.Sprint(id), "--json", "-c", cfg)
		if err == nil {
			var v map[string]any
			if json.Unmarshal([]byte(out), &v) == nil && cond(v) {
				return v
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("case #%d never reached the expected state: %v\n%s", id, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAgentDrivesCaseToArchivedThroughCLI is the demonstration: a
// case from open to archived through the CLI alone, each step producing
// exactly its notifications through the outbox and SMTP, and a stranger's
// reply never reaching the case.
func TestAgentDrivesCaseToArchivedThroughCLI(t *testing.T) {
	cfg, m := daemonForTest(t)
	raw := "From: Alice Martin <alice@customer.example>\r\nTo: support@example.test\r\nCc: bob@customer.example\r\n" +
		"Subject: Cannot export invoices\r\nDate: Mon, 23 Nov 2026 08:12:00 +0100\r\nMessage-ID: <req-1@customer.example>\r\n" +
		"Content-Language: de-DE\r\n\r\nThe PDF export fails.\r\n"
	if _, err := m.Deliver(demoSupport, "INBOX", []byte(raw)); err != nil {
		t.Fatal(err)
	}
	waitCase(t, cfg, 1, func(map[string]any) bool { return true })
	sent := 0
	step := func(name string, args []string, want ...string) string {
		t.Helper()
		out, err := runCLI(t, append(append([]string{"cases"}, args...), "-c", cfg)...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		got := sentSince(t, m, sent, len(want))
		sent += len(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s sent\n  %s\nwant\n  %s", name, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
		return out
	}
	step("new case", nil,
		"ack/auto-replied to alice@customer.example: [Case #1] Cannot export invoices",
		"team_new/auto-generated to team@example.test: [Case #1] Neuer Fall (normal): Cannot export invoices")
	step("assign", []string{"assign", "1", "ann@example.test", "--as", "lead@example.test"},
		"team_assigned/auto-generated to team@example.test: [Case #1] Zugewiesen an ann@example.test: Cannot export invoices",
		"assigned/auto-generated to ann@example.test: [Case #1] Ihnen zugewiesen: Cannot export invoices")
	step("note", []string{"note", "1", "reproduced on staging"},
		"team_note/auto-generated to team@example.test: [Case #1] Notiz von agent:cli: Cannot export invoices")
	out := step("raise", []string{"set-priority", "1", "high"},
		"team_priority/auto-generated to team@example.test: [Case #1] Priorität normal -> high: Cannot export invoices")
	if !strings.Contains(out, "case #1 is now high, first response due") {
		t.Errorf("set-priority said %q", out)
	}

	// An out-of-office answer from the requester changes nothing and
	// sends nothing (the next step's exact list would show it).
	ooo := "From: alice@customer.example\r\nTo: support@example.test\r\nSubject: Automatic reply: [Case #1] Cannot export invoices\r\n" +
		"Auto-Submitted: auto-replied\r\nMessage-ID: <ooo-1@customer.example>\r\n\r\nI am away.\r\n"
	if _, err := m.Deliver(demoSupport, "INBOX", []byte(ooo)); err != nil {
		t.Fatal(err)
	}
	if err := waitForInboxEmpty(context.Background(), m, 15*time.Second); err != nil {
		t.Fatal(err)
	}

	// A stranger writing into case #1 gets a case of their own.
	stranger := "From: mallory@elsewhere.example\r\nTo: support@example.test\r\nSubject: Re: [Case #1] Cannot export invoices\r\n" +
		"Message-ID: <x-1@elsewhere.example>\r\nIn-Reply-To: <req-1@customer.example>\r\n\r\nlet me in\r\n"
	if _, err := m.Deliver(demoSupport, "INBOX", []byte(stranger)); err != nil {
		t.Fatal(err)
	}
	c2 := waitCase(t, cfg, 2, func(map[string]any) bool { return true })
	if c2["requester"] != "mallory@elsewhere.example" {
		t.Fatalf("stranger's case: %v", c2["requester"])
	}
	sentSince(t, m, sent, 2) // ack and team notice for case #2
	sent += 2

	step("in progress", []string{"set-status", "1", "in_progress"},
		"status/auto-replied to alice@customer.example,bob@customer.example: [Case #1] Status: in Bearbeitung - Cannot export invoices",
		"team_status/auto-generated to team@example.test: [Case #1] open -> in_progress: Cannot export invoices")
	step("reply", []string{"reply", "1", "Bitte leeren Sie den Cache."},
		"reply/ to alice@customer.example,bob@customer.example: AW: [Case #1] Cannot export invoices")
	step("solution", []string{"set-status", "1", "solution_provided", "--note", "Cache geleert"},
		"status/auto-replied to alice@customer.example,bob@customer.example: [Case #1] Status: Lösung bereitgestellt - Cannot export invoices",
		"team_status/auto-generated to team@example.test: [Case #1] in_progress -> solution_provided: Cannot export invoices")
	step("close", []string{"set-status", "1", "closed"},
		"status/auto-replied to alice@customer.example,bob@customer.example: [Case #1] Status: geschlossen - Cannot export invoices",
		"team_status/auto-generated to team@example.test: [Case #1] solution_provided -> closed: Cannot export invoices")
	step("archive", []string{"set-status", "1", "archived"},
		"team_status/auto-generated to team@example.test: [Case #1] closed -> archived: Cannot export invoices")

	c1 := showJSON(t, cfg, 1)
	if c1["status"] != "archived" || c1["due_at"] != nil || c1["assignee"] != "ann@example.test" {
		t.Errorf("case #1: status %v, due %v, assignee %v", c1["status"], c1["due_at"], c1["assignee"])
	}
	var events []string
	for _, e := range c1["events"].([]any) {
		ev := e.(map[string]any)
		events = append(events, fmt.Sprint(ev["kind"], ":", ev["to"]))
	}
	wantEvents := "created:open assigned:ann@example.test note:<nil> priority:high status:in_progress reply:<nil> status:solution_provided status:closed status:archived"
	if strings.Join(events, " ") != wantEvents {
		t.Errorf("events\n  %s\nwant\n  %s", strings.Join(events, " "), wantEvents)
	}
	for _, msg := range c1["messages"].([]any) {
		if from := msg.(map[string]any)["from"]; from == "mallory@elsewhere.example" {
			t.Error("the stranger's mail reached case #1")
		}
	}
	// Exactly those: the outbox holds no more than was delivered.
	if n := len(c1["notifications"].([]any)); n != 14 {
		t.Errorf("case #1 has %d notifications, want 14", n)
	}
	if n := len(m.Sent()); n != sent {
		t.Errorf("%d mails sent, want %d", n, sent)
	}

	// Clear errors.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"set-status", "1", "open"}, "case #1: cannot change status from archived to open: archived is final"},
		{[]string{"note", "1", "x"}, "archived cases are read-only"},
		{[]string{"set-status", "99", "closed"}, "no case #99"},
		{[]string{"set-status", "2", "resolved"}, `unknown status "resolved"`},
		{[]string{"set-priority", "2", "critical"}, `unknown priority "critical"`},
		{[]string{"assign", "2", "ann"}, "agent must be an email address"},
		{[]string{"set-status", "2", "archived"}, "cannot change status from open to archived: allowed next are triaging"},
	} {
		out, err := runCLI(t, append(append([]string{"cases"}, tc.args...), "-c", cfg)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("cases %s: %v (%s), want %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}
	// Human output of show.
	out, err := runCLI(t, "cases", "show", "1", "-c", cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Case #1  Cannot export invoices", "status archived · priority high", "assignee ann@example.test",
		"participants: alice@customer.example, bob@customer.example · language de-de", "assigned  → ann@example.test",
		"note — reproduced on staging", "status closed → archived", "out  reply to alice@customer.example, bob@customer.example"} {
		if !strings.Contains(out, want) {
			t.Errorf("cases show lacks %q:\n%s", want, out)
		}
	}
	// Table output.
	out, err = runCLI(t, "cases", "list", "--assignee", "ann@example.test", "-c", cfg)
	if err != nil || !strings.Contains(out, "#1    archived  high      ann@example.test") {
		t.Errorf("cases list:\n%s %v", out, err)
	}
}

func TestCLISaysWhenDaemonIsDown(t *testing.T) {
	cfg, _ := daemonForTest(t)
	b, _ := os.ReadFile(cfg)
	port := freePort(t)
	down := cfg + ".down.yaml"
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "  listen: ") {
			lines[i] = fmt.Sprintf("  listen: 127.0.0.1:%d", port)
		}
	}
	if err := os.WriteFile(down, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := runCLI(t, "cases", "assign", "1", "ann@example.test", "-c", down)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("cannot reach caseintake at 127.0.0.1:%d: is the service running?", port)) {
		t.Errorf("err = %v", err)
	}
}

var mimeWords = mime.WordDecoder{}
