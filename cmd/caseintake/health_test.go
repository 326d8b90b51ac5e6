package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/store"
)

func TestReadyzAndMetrics(t *testing.T) {
	cfgPath, m := daemonForTest(t)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + cfg.API.Listen
	get := func(path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz", ""); code != http.StatusOK {
		t.Fatalf("/healthz = %d %s", code, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get("/readyz", "")
		if code == http.StatusOK && strings.Contains(body, `"ready"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never ready: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := get("/metrics", ""); code != http.StatusUnauthorized {
		t.Fatalf("/metrics without token = %d, want 401", code)
	}
	if code, _ := get("/metrics", "wrong-token-wrong-token"); code != http.StatusUnauthorized {
		t.Fatalf("/metrics with a wrong token = %d, want 401", code)
	}
	raw, _ := os.ReadFile("../../testdata/demo/01-request.eml")
	if _, err := m.Deliver(demoSupport, "INBOX", raw); err != nil {
		t.Fatal(err)
	}
	// The acknowledgement and the team notice reach the SMTP server.
	var code int
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; {
		code, body = get("/metrics", cfg.API.Token)
		if code == http.StatusOK && strings.Contains(body, `caseintake_smtp_recipients_total{result="sent"} 2`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics = %d; two sent notifications never counted:\n%s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{
		`caseintake_imap_connected{mailbox="support"} 1`,
		`caseintake_cases{status="open"} 1`,
		`caseintake_active_cases{priority="normal"} 1`,
		`caseintake_active_cases{priority="urgent"} 0`,
		`caseintake_messages_total{mailbox="support",outcome="case:new"} 1`,
		`caseintake_outbox_pending 0`,
		`caseintake_imap_reconnects_total{mailbox="support"} 0`,
		`caseintake_imap_last_poll_timestamp_seconds{mailbox="support"}`,
		`go_goroutines`,
		`caseintake_message_processing_seconds_count{mailbox="support"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestBackupWhileRunningOpensAsADatabase(t *testing.T) {
	cfgPath, m := daemonForTest(t)
	raw, _ := os.ReadFile("../../testdata/demo/01-request.eml")
	if _, err := m.Deliver(demoSupport, "INBOX", raw); err != nil {
		t.Fatal(err)
	}
	waitEmpty(t, m, demoSupport)
	dir := t.TempDir()
	out, err := runCLI(t, "backup", filepath.Join(dir, store.DBFile), "-c", cfgPath)
	if err != nil || !strings.Contains(out, "wrote ") {
		t.Fatalf("backup: %v %s", err, out)
	}
	st, err := store.Open(dir)
	if err != nil {
		t.Fatalf("the backup does not open: %v", err)
	}
	defer st.Close()
	if errs := st.Check(); len(errs) > 0 {
		t.Fatalf("backup fails bbolt's check: %v", errs)
	}
	cs, err := st.ListCases(store.Filter{})
	if err != nil || len(cs) != 1 || cs[0].Subject != "Cannot export invoices to PDF" {
		t.Fatalf("cases in the backup: %v %v", cs, err)
	}
	if _, err := runCLI(t, "backup", filepath.Join(dir, "nodir", "x.db"), "-c", cfgPath); err == nil {
		t.Fatal("backup into a missing directory succeeded")
	}
}
