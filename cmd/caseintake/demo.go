package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/spf13/cobra"

	"github.com/caseintake/caseintake/api"
	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/classify"
	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/devmail"
	"github.com/caseintake/caseintake/logging"
	"github.com/caseintake/caseintake/store"
)

const (
	demoSupport  = "support@example.test"
	demoPassword = "demo"
)

func newDemoCmd() *cobra.Command {
	var seedDir string
	var once bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run caseintake against an embedded IMAP and SMTP server seeded with sample mail",
		Long: `demo starts an in-process IMAP server (go-imap's memory server) and an SMTP
server that delivers into it, seeds the support mailbox with the sample
messages in --seed, runs the daemon against them, prints the resulting cases
and notifications, and keeps running so that you can send more mail to the
printed SMTP port with any client.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), seedDir, once)
		},
	}
	cmd.Flags().StringVar(&seedDir, "seed", "testdata/demo", "folder of .eml files to put in the support mailbox")
	cmd.Flags().BoolVar(&once, "once", false, "exit after printing the seeded cases")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, seedDir string, once bool) error {
	seeds, err := filepath.Glob(filepath.Join(seedDir, "*.eml"))
	if err != nil || len(seeds) == 0 {
		return fmt.Errorf("no sample messages (*.eml) in %s: run the demo from the repository root or pass --seed", seedDir)
	}
	sort.Strings(seeds)
	dir, err := os.MkdirTemp("", "caseintake-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	mailSys, err := devmail.Start(devmail.Options{Users: map[string]string{demoSupport: demoPassword}})
	if err != nil {
		return fmt.Errorf("start the embedded mail servers: %w", err)
	}
	defer mailSys.Close()
	cfgPath, err := writeDemoConfig(dir, mailSys)
	if err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(dir, "caseintake.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	limited := logging.NewHandler(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}), logging.DefaultWindow)
	defer limited.Flush()
	log := slog.New(limited)

	mailSys.OnSent(func(e devmail.Envelope) {
		fmt.Fprintf(out, "  → mail to %s: %s\n", strings.Join(e.To, ", "), subjectOf(e.Data))
	})
	seedIDs := map[string]string{} // file → Message-ID
	for _, f := range seeds {
		raw, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if m, err := classify.Parse(bytes.NewReader(raw), classify.DefaultLimits()); err == nil {
			seedIDs[f] = m.MessageID
		}
		if _, err := mailSys.Deliver(demoSupport, "INBOX", raw); err != nil {
			return fmt.Errorf("seed %s: %w", f, err)
		}
	}
	fmt.Fprintf(out, "caseintake demo: %d sample messages in %s's INBOX (IMAP %s:%d)\n\nNotifications sent:\n",
		len(seeds), demoSupport, mailSys.IMAPHost, mailSys.IMAPPort)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan string, 1)
	served := make(chan error, 1)
	go func() { served <- serve(ctx, cfg, log, serveOptions{ready: func(addr string) { ready <- addr }}) }()
	var apiAddr string
	select {
	case apiAddr = <-ready:
	case err := <-served:
		return err
	}
	client := api.NewClient(apiAddr, cfg.API.Token)
	if err := waitForInboxEmpty(ctx, mailSys, 30*time.Second); err != nil {
		return err
	}
	st, err := waitOutboxDrained(ctx, client)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nWhat happened to each message (caseintake trace MESSAGE-ID):\n")
	for _, f := range seeds {
		ds, err := client.Trace(ctx, seedIDs[f])
		if err != nil || len(ds) == 0 {
			fmt.Fprintf(out, "  %-26s (no decision: %v)\n", filepath.Base(f), err)
			continue
		}
		d := ds[len(ds)-1]
		where := ""
		if d.CaseID != 0 {
			where = fmt.Sprintf(" #%d", d.CaseID)
		}
		fmt.Fprintf(out, "  %-26s %s%s — %s\n", filepath.Base(f), d.Outcome, where, d.Signal)
	}
	fmt.Fprintf(out, "\nCases:\n")
	printCaseTable(out, st)
	fmt.Fprintf(out, "\nData and log in %s\n", dir)
	if once {
		cancel()
		return <-served
	}
	fmt.Fprintf(out, `
The daemon keeps running. Send more mail, for example:
  swaks --server %s:%d --to %s --from you@example.org --header "Subject: Production Down"
and look at the cases with:
  go run ./cmd/caseintake cases list -c %s
Press Ctrl-C to stop.
`, mailSys.SMTPHost, mailSys.SMTPPort, demoSupport, cfgPath)
	return <-served
}

func writeDemoConfig(dir string, m *devmail.Server) (string, error) {
	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		return "", err
	}
	tokenFile := filepath.Join(dir, "api.token")
	if err := os.WriteFile(tokenFile, []byte(hex.EncodeToString(token)), 0o600); err != nil {
		return "", err
	}
	cfg := fmt.Sprintf(`data_dir: %s
mailboxes:
  - name: support
    address: %s
    imap: {host: %s, port: %d, security: none, username: %s, password: %s}
    poll_interval: 5s
smtp:
  host: %s
  port: %d
  security: none
  from: "Example Support <%s>"
notify:
  team: [team@example.test]
  urgent: [oncall@example.test, infra@example.test]
api:
  listen: 127.0.0.1:0
  token_file: %s
`, filepath.Join(dir, "data"), demoSupport, m.IMAPHost, m.IMAPPort, demoSupport, demoPassword,
		m.SMTPHost, m.SMTPPort, demoSupport, tokenFile)
	path := filepath.Join(dir, "caseintake.yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// waitForInboxEmpty waits until the daemon has moved every seeded message
// out of the INBOX (each one decided and acknowledged).
func waitForInboxEmpty(ctx context.Context, m *devmail.Server, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		msgs, err := m.Messages(demoSupport, "INBOX")
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the daemon did not process the sample messages within %v; see the log", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitOutboxDrained waits until every notification of every case left, and
// returns the cases.
func waitOutboxDrained(ctx context.Context, c *api.Client) ([]*casemodel.Case, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, err := c.ListCases(ctx, store.Filter{})
		if err != nil {
			return nil, err
		}
		pending := 0
		for _, cs := range list {
			v, err := c.Case(ctx, cs.ID)
			if err != nil {
				return nil, err
			}
			for _, n := range v.Notifications {
				if n.State == store.OutboxPending {
					pending++
				}
			}
		}
		if pending == 0 || time.Now().After(deadline) {
			return list, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func subjectOf(raw []byte) string {
	r, err := mail.CreateReader(strings.NewReader(string(raw)))
	if err != nil && r == nil {
		return "(unreadable)"
	}
	defer r.Close()
	s, _ := r.Header.Subject()
	return s
}
