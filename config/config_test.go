package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodConfig = `
data_dir: /tmp/caseintake-test
mailboxes:
  - name: support
    address: support@example.com
    imap:
      host: imap.example.com
      password_file: %SECRET%
smtp:
  host: smtp.example.com
  from: "Example Support <support@example.com>"
notify:
  team: [support-team@example.com]
api:
  token: 0123456789abcdef0123
`

func writeGood(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	secret := filepath.Join(dir, "imap.secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "caseintake.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(goodConfig, "%SECRET%", secret)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadAppliesDefaultsAndSecrets(t *testing.T) {
	c, err := Load(writeGood(t))
	if err != nil {
		t.Fatal(err)
	}
	m := c.Mailboxes[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"imap password from file, newline trimmed", m.IMAP.Password, "s3cret"},
		{"imap security", m.IMAP.Security, "tls"},
		{"imap port", m.IMAP.Port, 993},
		{"imap username defaults to address", m.IMAP.Username, "support@example.com"},
		{"folder", m.Folder, "INBOX"},
		{"processed folder", m.ProcessedFolder, "Processed"},
		{"quarantine folder", m.QuarantineFolder, "Quarantine"},
		{"idle", m.Idle, true},
		{"poll interval", m.PollInterval, 30 * time.Second},
		{"max message size", m.MaxMessageSize, int64(DefaultMaxMessageSize)},
		{"smtp security", c.SMTP.Security, "starttls"},
		{"smtp port", c.SMTP.Port, 587},
		{"envelope sender", c.SMTP.EnvelopeSender, "<>"},
		{"api listen", c.API.Listen, DefaultAPIListen},
		{"reopen window", c.Intake.ReopenWindow, 14 * 24 * time.Hour},
		{"log level", c.Log.Level, "info"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestLoadEnvironmentOverrides(t *testing.T) {
	path := writeGood(t)
	t.Setenv("CASEINTAKE_SMTP_PORT", "2525")
	t.Setenv("CASEINTAKE_SMTP_PASSWORD", "from-env") // absent from the file
	t.Setenv("CASEINTAKE_NOTIFY_URGENT", "oncall@example.com,infra@example.com")
	t.Setenv("CASEINTAKE_INTAKE_REOPEN_WINDOW", "48h")
	t.Setenv("CASEINTAKE_DATA_DIR", "/srv/caseintake")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.SMTP.Port != 2525 || c.SMTP.Password != "from-env" || c.DataDir != "/srv/caseintake" {
		t.Errorf("smtp.port=%d smtp.password=%q data_dir=%q", c.SMTP.Port, c.SMTP.Password, c.DataDir)
	}
	if strings.Join(c.Notify.Urgent, " ") != "oncall@example.com infra@example.com" {
		t.Errorf("notify.urgent = %q", c.Notify.Urgent)
	}
	if c.Intake.ReopenWindow != 48*time.Hour {
		t.Errorf("intake.reopen_window = %v", c.Intake.ReopenWindow)
	}
}

func TestLoadEnvironmentBareDurationRefused(t *testing.T) {
	path := writeGood(t)
	t.Setenv("CASEINTAKE_INTAKE_REOPEN_WINDOW", "14")
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), "intake.reopen_window: time: missing unit") {
		t.Fatalf("err = %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	var cerr *Error
	if !errors.As(err, &cerr) || !strings.Contains(err.Error(), "cannot read the file") {
		t.Fatalf("err = %v", err)
	}
}

// TestBadConfigs loads every testdata/badconfig/*.yaml and expects the
// problem named in its "# want:" first line.
func TestBadConfigs(t *testing.T) {
	files, err := filepath.Glob("../testdata/badconfig/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad configs found: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(b), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("%s: first line must be '# want: <expected error text>'", f)
			}
			_, err = Load(f)
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("Load = %v, want a *config.Error containing %q", err, want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error\n  %v\nwant it to contain\n  %s", err, want)
			}
			for _, p := range cerr.Problems {
				if strings.Contains(p, "imap-secret") || strings.Contains(p, "smtp-secret") || strings.Contains(p, "0123456789abcdef0123") {
					t.Errorf("problem line leaks a secret: %s", p)
				}
			}
		})
	}
}
