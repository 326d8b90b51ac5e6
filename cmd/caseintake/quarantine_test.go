package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestQuarantineShowAndReleaseByHand: an operator looks at why two
// messages were quarantined (and at the exact bytes of one), then opens a
// case from each by hand; the one with no readable sender needs
// --requester, and the case history names the releasing agent.
func TestQuarantineShowAndReleaseByHand(t *testing.T) {
	cfgPath, m := daemonForTest(t)
	var deep strings.Builder
	deep.WriteString("From: Alice <alice@customer.example>\r\nTo: support@example.test\r\nSubject: Invoices fail\r\n" +
		"Message-ID: <deep@customer.example>\r\nMIME-Version: 1.0\r\n")
	for i := range 40 {
		fmt.Fprintf(&deep, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	deep.WriteString("Content-Type: text/plain\r\n\r\nThe export fails.\r\n")
	for _, raw := range []string{deep.String(), ": not a mail message\r\n"} {
		if _, err := m.Deliver(demoSupport, "INBOX", []byte(raw)); err != nil {
			t.Fatal(err)
		}
	}
	waitEmpty(t, m, demoSupport)
	out, err := runCLI(t, "quarantine", "list", "--json", "-c", cfgPath)
	var q []struct {
		Seq       uint64 `json:"seq"`
		MessageID string `json:"message_id"`
	}
	if err != nil || json.Unmarshal([]byte(out), &q) != nil || len(q) != 2 {
		t.Fatalf("quarantine list --json: %v %s", err, out)
	}
	deepSeq, garbageSeq := q[0].Seq, q[1].Seq
	if q[0].MessageID != "deep@customer.example" {
		deepSeq, garbageSeq = garbageSeq, deepSeq
	}

	out, err = runCLI(t, "quarantine", "show", fmt.Sprint(deepSeq), "-c", cfgPath)
	if err != nil {
		t.Fatalf("show: %v\n%s", err, out)
	}
	for _, want := range []string{
		fmt.Sprintf("quarantine record %d: still in quarantine", deepSeq),
		"reason:     limit:depth",
		"detail:     classify: limit:depth: multipart nesting deeper than 20",
		"mailbox:    support, UID 1",
		"message-id: deep@customer.example",
		"from:       alice@customer.example",
		"subject:    Invoices fail",
		fmt.Sprintf("size:       %d bytes", deep.Len()),
		fmt.Sprintf("record %d  quarantined:limit:depth", deepSeq),
		fmt.Sprintf("caseintake quarantine release %d", deepSeq),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	out, err = runCLI(t, "quarantine", "show", fmt.Sprint(deepSeq), "--raw", "-c", cfgPath)
	if err != nil || out != deep.String() {
		t.Errorf("show --raw: %v; %d bytes, want the %d delivered", err, len(out), deep.Len())
	}

	_, err = runCLI(t, "quarantine", "release", fmt.Sprint(garbageSeq), "--as", "ann@example.test", "-c", cfgPath)
	if err == nil || !strings.Contains(err.Error(), "no sender address can be found") || !strings.Contains(err.Error(), "--requester EMAIL") {
		t.Fatalf("release without a sender: %v", err)
	}
	out, err = runCLI(t, "quarantine", "release", fmt.Sprint(garbageSeq), "--requester", "carol@customer.example",
		"--subject", "Garbled request", "--as", "ann@example.test", "-c", cfgPath)
	if err != nil || !strings.Contains(out, fmt.Sprintf("released record %d: case #1 opened", garbageSeq)) ||
		!strings.Contains(out, "released from quarantine by agent:ann@example.test") {
		t.Fatalf("release: %v\n%s", err, out)
	}
	c := showJSON(t, cfgPath, 1)
	if c["requester"] != "carol@customer.example" || c["subject"] != "Garbled request" {
		t.Errorf("case #1: requester %v, subject %v", c["requester"], c["subject"])
	}
	events, _ := c["events"].([]any)
	released := false
	for _, e := range events {
		ev := e.(map[string]any)
		released = released || (ev["kind"] == "released" && ev["actor"] == "agent:ann@example.test")
	}
	if !released {
		t.Errorf("case #1 events %v lack the release by agent:ann@example.test", events)
	}
	out, err = runCLI(t, "quarantine", "release", fmt.Sprint(deepSeq), "--json", "-c", cfgPath)
	var d struct {
		CaseID uint64 `json:"case_id"`
		Signal string `json:"signal"`
	}
	if err != nil || json.Unmarshal([]byte(out), &d) != nil || d.CaseID != 2 || !strings.Contains(d.Signal, "agent:cli") {
		t.Fatalf("release --json: %v\n%s", err, out)
	}
	out, err = runCLI(t, "quarantine", "show", fmt.Sprint(deepSeq), "-c", cfgPath)
	if err != nil || !strings.Contains(out, "no longer in quarantine") || !strings.Contains(out, "(case #2)") {
		t.Errorf("show after release: %v\n%s", err, out)
	}
	if out, _ := runCLI(t, "quarantine", "list", "-c", cfgPath); !strings.Contains(out, "nothing in quarantine") {
		t.Errorf("list after both releases:\n%s", out)
	}
}
