package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/devmail"
)

func TestDemoOncePrintsSeededCases(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := runDemo(ctx, &out, "../../testdata/demo", true); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"01-request.eml             case:new #1",
		"02-production-down.eml     case:new #2",
		"03-produktionsausfall.eml  case:new #3",
		"04-reply.eml               case:appended #1",
		"05-out-of-office.eml       ignored:automated",
		"#3    open    urgent",
		"#2    open    urgent",
		"→ mail to oncall@example.test, infra@example.test: [Case #2] URGENT",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(got)
	}
}

// demoSetup starts devmail with the demo's support account (and users, each
// with the demo password) and writes a demo config for it whose API listens
// on a free fixed port, so the CLI can reach it.
func demoSetup(t *testing.T, users ...string) (*devmail.Server, string, *config.Config) {
	t.Helper()
	accounts := map[string]string{demoSupport: demoPassword}
	for _, u := range users {
		accounts[u] = demoPassword
	}
	m, err := devmail.Start(devmail.Options{Users: accounts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	cfgPath, err := writeDemoConfig(t.TempDir(), m)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(cfgPath)
	if err := os.WriteFile(cfgPath, bytes.ReplaceAll(b, []byte("127.0.0.1:0"), fmt.Appendf(nil, "127.0.0.1:%d", freePort(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	return m, cfgPath, cfg
}

// daemonForTest runs serve on devmail with a config file written for it
// and returns the config path.
func daemonForTest(t *testing.T) (cfgPath string, m *devmail.Server) {
	t.Helper()
	m, cfgPath, cfg := demoSetup(t)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, slog.New(slog.DiscardHandler), serveOptions{ready: func(a string) { ready <- a }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	return cfgPath, m
}

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestCasesListJSONHasContractFields(t *testing.T) {
	cfgPath, m := daemonForTest(t)
	raw, _ := os.ReadFile("../../testdata/demo/02-production-down.eml")
	if _, err := m.Deliver(demoSupport, "INBOX", raw); err != nil {
		t.Fatal(err)
	}
	var cases []map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for len(cases) == 0 {
		out, err := runCLI(t, "cases", "list", "--json", "-c", cfgPath)
		if err != nil {
			t.Fatalf("cases list: %v\n%s", err, out)
		}
		if err := json.Unmarshal([]byte(out), &cases); err != nil {
			t.Fatalf("cases list --json is not a JSON array: %v\n%s", err, out)
		}
		if time.Now().After(deadline) {
			t.Fatal("no case appeared")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := cases[0]
	for _, k := range []string{"id", "subject", "requester", "status", "priority", "created_at", "updated_at", "due_at", "assignee", "messages"} {
		if _, ok := c[k]; !ok {
			t.Errorf("case lacks %q: %v", k, c)
		}
	}
	if id, ok := c["id"].(float64); !ok || id != 1 {
		t.Errorf("id = %v, want the integer 1", c["id"])
	}
	if c["priority"] != "urgent" {
		t.Errorf("priority = %v", c["priority"])
	}
	msgs, _ := c["messages"].([]any)
	if len(msgs) == 0 {
		t.Fatal("no messages")
	}
	for _, k := range []string{"message_id", "direction", "from", "subject", "date"} {
		if _, ok := msgs[0].(map[string]any)[k]; !ok {
			t.Errorf("message lacks %q", k)
		}
	}

	out, err := runCLI(t, "cases", "show", "1", "--json", "-c", cfgPath)
	if err != nil {
		t.Fatal(err, out)
	}
	var one map[string]any
	if err := json.Unmarshal([]byte(out), &one); err != nil || one["id"] != float64(1) {
		t.Fatalf("cases show --json: %v %v", err, out)
	}
	out, err = runCLI(t, "cases", "set-status", "1", "in_progress", "-c", cfgPath)
	if err != nil || !strings.Contains(out, "case #1 is now in_progress") {
		t.Fatalf("set-status: %v %s", err, out)
	}
	_, err = runCLI(t, "cases", "set-status", "1", "archived", "-c", cfgPath)
	if err == nil || !strings.Contains(err.Error(), "cannot change status from in_progress to archived: allowed next are") {
		t.Fatalf("refused transition: %v", err)
	}
	_, err = runCLI(t, "cases", "show", "99", "-c", cfgPath)
	if err == nil || !strings.Contains(err.Error(), "no case #99") {
		t.Fatalf("unknown case: %v", err)
	}
	out, err = runCLI(t, "trace", "outage-1@shop.example", "-c", cfgPath)
	if err != nil || !strings.Contains(out, "outcome: case:new (case #1)") {
		t.Fatalf("trace: %v\n%s", err, out)
	}
}

func TestCLISaysWhenDaemonIsNotRunning(t *testing.T) {
	_, cfgPath, _ := demoSetup(t)
	_, err := runCLI(t, "cases", "list", "-c", cfgPath)
	if err == nil || !strings.Contains(err.Error(), "is the service running?") {
		t.Fatalf("err = %v", err)
	}
}

func TestCheckReportsEachProblemOnOneLine(t *testing.T) {
	m, err := devmail.Start(devmail.Options{Users: map[string]string{demoSupport: demoPassword}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dir := t.TempDir()
	cfgPath, err := writeDemoConfig(dir, m)
	if err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "check", "-c", cfgPath)
	if err != nil {
		t.Fatalf("check of a good config: %v\n%s", err, out)
	}
	if !strings.Contains(out, "ok   mailbox support") || !strings.Contains(out, "ok   smtp") {
		t.Fatalf("check output:\n%s", out)
	}
	b, _ := os.ReadFile(cfgPath)
	bad := strings.Replace(string(b), "password: "+demoPassword, "password: wrong-password", 1)
	bad = strings.Replace(bad, fmt.Sprintf("port: %d\n  security: none", m.SMTPPort), fmt.Sprintf("port: %d\n  security: none", freePort(t)), 1)
	badPath := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badPath, []byte(bad), 0o600)
	out, err = runCLI(t, "check", "-c", badPath)
	if err == nil {
		t.Fatalf("check passed a wrong password:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "FAIL") || !strings.Contains(strings.ToLower(lines[0]), "auth") ||
		!strings.Contains(lines[1], "FAIL") || !strings.Contains(lines[1], "connection refused") {
		t.Fatalf("want one FAIL line for the login and one for SMTP:\n%s", out)
	}
	if strings.Contains(out, "wrong-password") {
		t.Fatal("check printed the password")
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestQuarantineListSaysWhyAndWhere(t *testing.T) {
	cfgPath, m := daemonForTest(t)
	out, err := runCLI(t, "quarantine", "list", "-c", cfgPath)
	if err != nil || !strings.Contains(out, "nothing in quarantine") {
		t.Fatalf("empty quarantine: %v %s", err, out)
	}
	var deep strings.Builder
	deep.WriteString("From: a@customer.example\r\nSubject: deep\r\nMessage-ID: <deep@customer.example>\r\nMIME-Version: 1.0\r\n")
	for i := range 40 {
		fmt.Fprintf(&deep, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	deep.WriteString("Content-Type: text/plain\r\n\r\nx\r\n")
	if _, err := m.Deliver(demoSupport, "INBOX", []byte(deep.String())); err != nil {
		t.Fatal(err)
	}
	waitEmpty(t, m, demoSupport)
	out, err = runCLI(t, "quarantine", "list", "-c", cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "deep@customer.example") || !strings.Contains(out, "quarantined:limit:depth") || !strings.Contains(out, "support") {
		t.Fatalf("quarantine list:\n%s", out)
	}
	// Retrying under the same limits is refused with the reason; so is a
	// record that does not exist.
	out, err = runCLI(t, "quarantine", "list", "--json", "-c", cfgPath)
	var q []struct {
		Seq uint64 `json:"seq"`
	}
	if err != nil || json.Unmarshal([]byte(out), &q) != nil || len(q) != 1 {
		t.Fatalf("quarantine list --json: %v %s", err, out)
	}
	_, err = runCLI(t, "quarantine", "retry", fmt.Sprint(q[0].Seq), "-c", cfgPath)
	if err == nil || !strings.Contains(err.Error(), "still cannot be read") || !strings.Contains(err.Error(), "limit:depth") {
		t.Fatalf("retry of a message still over the limit: %v", err)
	}
	if _, err := runCLI(t, "quarantine", "retry", "424242", "-c", cfgPath); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("retry of an unknown record: %v", err)
	}
}
