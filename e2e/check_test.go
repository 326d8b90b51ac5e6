//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckAgainstRealServers runs `caseintake check` against the real
// Dovecot and Postfix: a good config passes with a dry run that sends
// nothing, and each injected misconfiguration is one FAIL line with its
// fix and exit status 1.
func TestCheckAgainstRealServers(t *testing.T) {
	s := sharedStack(t)
	bin := caseintakeBinary(t)

	// check runs the binary on the config written for s, changed by
	// edit, and returns its output and exit status.
	check := func(t *testing.T, edit func(dir, cfg string) string) (string, int) {
		t.Helper()
		dir := t.TempDir()
		path, _, _ := writeConfig(t, s, dir, daemonOptions{})
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(edit(dir, string(b))), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "check", "-c", path).CombinedOutput()
		t.Logf("caseintake check:\n%s", out)
		var exit *exec.ExitError
		switch {
		case err == nil:
			return string(out), 0
		case errors.As(err, &exit):
			return string(out), exit.ExitCode()
		}
		t.Fatalf("run check: %v", err)
		return "", -1
	}
	// oneFail asserts exit status 1 and exactly one FAIL line containing
	// every fragment.
	oneFail := func(t *testing.T, out string, code int, fragments ...string) {
		t.Helper()
		if code != 1 {
			t.Errorf("exit status %d, want 1", code)
		}
		var fails []string
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "FAIL ") {
				fails = append(fails, line)
			}
		}
		if len(fails) != 1 {
			t.Fatalf("%d FAIL lines, want 1", len(fails))
		}
		for _, f := range fragments {
			if !strings.Contains(fails[0], f) {
				t.Errorf("FAIL line lacks %q", f)
			}
		}
	}
	unchanged := func(_, cfg string) string { return cfg }

	t.Run("good config", func(t *testing.T) {
		out, code := check(t, unchanged)
		if code != 0 || !strings.Contains(out, "ok   mailbox support: imap 127.0.0.1:") ||
			!strings.Contains(out, "3 of 3 RCPT TO accepted (dry run, nothing sent)") {
			t.Fatalf("exit status %d", code)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		out, code := check(t, func(dir, cfg string) string {
			os.WriteFile(filepath.Join(dir, "imap.secret"), []byte("not-the-password\n"), 0o600)
			return cfg
		})
		oneFail(t, out, code, `mailbox "support"`, fmt.Sprint(s.IMAPPort), "authentication failed for user \"support@example.test\"", "imap.password")
		if strings.Contains(out, "not-the-password") {
			t.Error("check printed the password")
		}
	})
	t.Run("missing folder", func(t *testing.T) {
		out, code := check(t, func(_, cfg string) string {
			return strings.Replace(cfg, "folder: INBOX", "folder: NoSuchFolder", 1)
		})
		oneFail(t, out, code, `folder "NoSuchFolder" does not exist`, "create it on the server")
	})
	t.Run("unreachable SMTP", func(t *testing.T) {
		port := freePort(t)
		out, code := check(t, func(_, cfg string) string {
			return strings.Replace(cfg, fmt.Sprintf("port: %d", s.SMTPPort), fmt.Sprintf("port: %d", port), 1)
		})
		oneFail(t, out, code, fmt.Sprintf("smtp 127.0.0.1:%d: connection refused", port), "smtp.port")
	})
	t.Run("XOAUTH2 not offered", func(t *testing.T) {
		// This Dovecot and Postfix know no OAuth: check says so rather
		// than blaming the token.
		out, code := check(t, func(dir, cfg string) string {
			token := filepath.Join(dir, "imap.token")
			os.WriteFile(token, []byte("ya29.not-a-real-token\n"), 0o600)
			return strings.Replace(cfg, "password_file: "+dir+"/imap.secret", "auth: xoauth2\n      oauth: {token_file: "+token+"}", 1)
		})
		oneFail(t, out, code, "does not offer AUTHENTICATE XOAUTH2 (it offers: ", "PLAIN", "set imap.auth")
		if strings.Contains(out, "not-a-real-token") {
			t.Error("check printed the token")
		}
	})
	t.Run("SMTP refuses RCPT", func(t *testing.T) {
		// Postfix relays nowhere but example.test for an unauthenticated client.
		out, code := check(t, func(_, cfg string) string {
			return strings.Replace(cfg, "team: [team@example.test]", "team: [team@elsewhere.example]", 1)
		})
		oneFail(t, out, code, "RCPT TO:<team@elsewhere.example> (notify.team[0]) refused", "correct notify.team[0]")
	})
}
