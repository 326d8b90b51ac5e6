package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caseintake/caseintake/config"
)

// TestDaemonLoggerRateLimitsRepeatedErrors: the logger serve builds
// writes JSON to a file (not a terminal), logs a repeated error once and,
// when flushed at exit, a summary of the rest.
func TestDaemonLoggerRateLimitsRepeatedErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "daemon.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	log, flush := newLogger(config.Log{Level: "info", Format: "auto"}, f)
	worker := log.With("component", "mailbox", "mailbox", "support")
	for range 3 {
		worker.Warn("cannot connect; retrying", "err", errors.New("connection refused"))
	}
	flush()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"msg":"cannot connect; retrying"`) ||
		!strings.Contains(lines[1], `"msg":"suppressed 2 identical messages"`) || !strings.Contains(lines[1], `"mailbox":"support"`) {
		t.Fatalf("want the error once, then its summary, as JSON:\n%s", b)
	}
}
