//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the real caseintake command, built once per test run.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func caseintakeBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "caseintake-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "caseintake")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/caseintake").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// daemonOptions change the config a Daemon is started with.
type daemonOptions struct {
	pollInterval string // default 1h: new mail must come through IDLE
	noCAFile     bool   // leave ca_file out (the x509 test)
	smtpPort     int    // default the stack's Postfix; a closed port keeps notifications in the outbox
}

// Daemon is a running `caseintake serve` subprocess against a Stack.
type Daemon struct {
	Config string // path of its config file
	API    string // host:port of its API
	Token  string
	Log    string // its log file

	t   testing.TB
	cmd *exec.Cmd
	bin string
}

// writeConfig writes a caseintake config for s into dir.
func writeConfig(t testing.TB, s *Stack, dir string, o daemonOptions) (cfgPath, api, token string) {
	t.Helper()
	if o.pollInterval == "" {
		o.pollInterval = "1h"
	}
	token = "e2e-token-0123456789abcdef"
	for name, content := range map[string]string{"imap.secret": Password, "api.token": token} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	api = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	if o.smtpPort == 0 {
		o.smtpPort = s.SMTPPort
	}
	caFile := "ca_file: " + s.CAFile
	if o.noCAFile {
		caFile = ""
	}
	cfg := fmt.Sprintf(`data_dir: %[1]s/data
mailboxes:
  - name: support
    address: support@example.test
    imap:
      host: 127.0.0.1
      port: %[2]d
      security: starttls
      username: support@example.test
      password_file: %[1]s/imap.secret
      %[3]s
    folder: INBOX
    processed_folder: Processed
    quarantine_folder: Quarantine
    idle: true
    poll_interval: %[4]s
smtp:
  host: 127.0.0.1
  port: %[5]d
  security: none
  from: "Example Support <support@example.test>"
notify:
  team: [team@example.test]
  urgent: [oncall@example.test, infra@example.test]
api:
  listen: %[6]s
  token_file: %[1]s/api.token
log:
  level: debug
  format: text
`, dir, s.IMAPPort, caFile, o.pollInterval, o.smtpPort, api)
	cfgPath = filepath.Join(dir, "caseintake.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, api, token
}

// startDaemon builds the binary, writes a config for s and runs `caseintake
// serve` until t ends (SIGTERM, then SIGKILL after 15 s). It returns once
// /readyz answers 200: the mailbox is connected and polled.
func startDaemon(t testing.TB, s *Stack, o daemonOptions) *Daemon {
	t.Helper()
	bin := caseintakeBinary(t)
	dir := t.TempDir()
	cfgPath, api, token := writeConfig(t, s, dir, o)
	d := &Daemon{Config: cfgPath, API: api, Token: token, Log: filepath.Join(dir, "caseintake.log"), t: t, bin: bin}
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			b, _ := os.ReadFile(d.Log)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Logf("caseintake log (last 60 lines):\n%s", strings.Join(lines[max(0, len(lines)-60):], "\n"))
		}
	})
	d.start()
	return d
}

func (d *Daemon) start() {
	d.t.Helper()
	logf, err := os.OpenFile(d.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		d.t.Fatal(err)
	}
	d.cmd = exec.Command(d.bin, "serve", "-c", d.Config)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	logf.Close()
	d.waitReady(30 * time.Second)
}

// stop sends SIGTERM and waits for a clean exit (SIGKILL after 15 s).
func (d *Daemon) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			d.t.Errorf("caseintake serve exited with %v after SIGTERM", err)
		}
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Kill()
		<-done
		d.t.Errorf("caseintake serve did not stop within 15 s of SIGTERM")
	}
	d.cmd = nil
}

func (d *Daemon) waitReady(limit time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + d.API + "/readyz")
		if err == nil {
			b := new(bytes.Buffer)
			_, _ = b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = b.String()
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.t.Fatalf("caseintake not ready within %v: %s", limit, last)
}

// CLI runs the binary with args and this daemon's config; it fails t on a
// non-zero exit.
func (d *Daemon) CLI(args ...string) string {
	d.t.Helper()
	out, err := d.cliErr(args...)
	if err != nil {
		d.t.Fatalf("caseintake %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (d *Daemon) cliErr(args ...string) (string, error) {
	cmd := exec.Command(d.bin, append(args, "-c", d.Config)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// Case is the JSON contract of `cases list --json` and `cases show --json`.
type Case struct {
	ID        uint64 `json:"id"`
	Subject   string `json:"subject"`
	Requester string `json:"requester"`
	Status    string `json:"status"`
	Priority  string `json:"priority"`
	Assignee  string `json:"assignee"`
	DueAt     *time.Time
	Messages  []struct {
		MessageID string    `json:"message_id"`
		Direction string    `json:"direction"`
		From      string    `json:"from"`
		Subject   string    `json:"subject"`
		Date      time.Time `json:"date"`
		Kind      string    `json:"kind"`
	} `json:"messages"`
	Events []struct {
		Kind  string `json:"kind"`
		From  string `json:"from"`
		To    string `json:"to"`
		Actor string `json:"actor"`
	} `json:"events"`
	Notifications []struct {
		Kind      string   `json:"kind"`
		State     string   `json:"state"`
		To        []string `json:"to"`
		Delivered []string `json:"delivered"`
		MessageID string   `json:"message_id"`
		Attempts  int      `json:"attempts"`
		LastError string   `json:"last_error"`
	} `json:"notifications"`
}

// Cases is `caseintake cases list --json`.
func (d *Daemon) Cases() []Case {
	d.t.Helper()
	var cs []Case
	if err := json.Unmarshal([]byte(d.CLI("cases", "list", "--json")), &cs); err != nil {
		d.t.Fatalf("cases list --json: %v", err)
	}
	return cs
}

// Case is `caseintake cases show ID --json`.
func (d *Daemon) Case(id uint64) Case {
	d.t.Helper()
	var c Case
	if err := json.Unmarshal([]byte(d.CLI("cases", "show", fmt.Sprint(id), "--json")), &c); err != nil {
		d.t.Fatalf("cases show --json: %v", err)
	}
	return c
}

// Decision is one record of `caseintake trace --json`.
type Decision struct {
	Outcome string `json:"outcome"`
	Signal  string `json:"signal"`
	CaseID  uint64 `json:"case_id"`
}

// Trace is `caseintake trace MESSAGE-ID --json`.
func (d *Daemon) Trace(msgID string) []Decision {
	d.t.Helper()
	var ds []Decision
	if err := json.Unmarshal([]byte(d.CLI("trace", msgID, "--json")), &ds); err != nil {
		d.t.Fatalf("trace --json: %v", err)
	}
	return ds
}

// WaitDecided waits until the message has a recorded outcome and returns it.
func (d *Daemon) WaitDecided(msgID string, limit time.Duration) Decision {
	d.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if ds := d.Trace(msgID); len(ds) > 0 {
			return ds[len(ds)-1]
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("no decision about <%s> within %v", msgID, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitCase waits until case id satisfies cond and returns it.
func (d *Daemon) WaitCase(id uint64, what string, limit time.Duration, cond func(Case) bool) Case {
	d.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		c := d.Case(id)
		if cond(c) {
			return c
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("case #%d: %s not reached within %v: %+v", id, what, limit, c)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// tagged matches a message whose decoded subject carries the case tag.
func tagged(id uint64) func([]byte) bool {
	return SubjectContains(fmt.Sprintf("[Case #%d]", id))
}

// and combines matchers.
func and(ms ...func([]byte) bool) func([]byte) bool {
	return func(raw []byte) bool {
		for _, m := range ms {
			if !m(raw) {
				return false
			}
		}
		return true
	}
}

// unique makes subjects of one run distinct on the shared stack.
func unique(s string) string { return fmt.Sprintf("%s %d", s, time.Now().UnixNano()%1e9) }
