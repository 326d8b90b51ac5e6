package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/caseintake/caseintake/config"
	"github.com/caseintake/caseintake/mailbox"
	"github.com/caseintake/caseintake/notify"
)

// checkTimeout bounds a whole `caseintake check`.
const checkTimeout = 2 * time.Minute

func newCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Validate the config, then connect and log in to every IMAP and SMTP server and try what the daemon will do",
		Long: `check validates the config, then for every mailbox connects to its IMAP server
(DNS, TCP, TLS certificate chain, host name and expiry, login with password or
OAuth token), checks the folder it reads and whether the processed and
quarantine folders exist or may be created (with a probe folder it deletes
again), and for the SMTP server logs in and does a dry run of a notification
(MAIL FROM and RCPT TO for every notify address, then RSET: nothing is sent).

Every problem is one line starting FAIL that says what to fix; WARN lines
(for example a certificate expiring within 14 days) do not fail the check.
The exit status is 1 when there is any problem. Secrets are never printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			cfg, err := loadConfig(cmd)
			var cerr *config.Error
			if errors.As(err, &cerr) {
				for _, p := range cerr.Problems {
					fmt.Fprintf(w, "FAIL config %s: %s\n", cerr.File, p)
				}
				return fmt.Errorf("%d problem(s) in the config; fix them to check the servers", len(cerr.Problems))
			}
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), checkTimeout)
			defer cancel()
			if problems := runChecks(ctx, w, cfg); problems > 0 {
				return fmt.Errorf("%d problem(s) found", problems)
			}
			return nil
		},
	}
}

// runChecks checks every mailbox and the SMTP server, prints one line per
// problem (FAIL) and warning (WARN) and an ok line for each server without
// problems, and returns the number of problems.
func runChecks(ctx context.Context, w io.Writer, cfg *config.Config) int {
	problems := 0
	report := func(fails, warns []error, ok string) {
		for _, err := range fails {
			fmt.Fprintln(w, "FAIL", err)
		}
		for _, err := range warns {
			fmt.Fprintln(w, "WARN", err)
		}
		if len(fails) == 0 {
			fmt.Fprintln(w, "ok  ", ok)
		}
		problems += len(fails)
	}
	for _, m := range cfg.Mailboxes {
		r := mailbox.Check(ctx, m)
		report(r.Problems, r.Warnings, fmt.Sprintf("mailbox %s: imap %s (%s): %s", m.Name, m.IMAP.Addr(), m.IMAP.Security, strings.Join(r.Verified, ", ")))
	}
	sender, err := notify.NewSender(cfg.SMTP)
	if err != nil {
		report([]error{fmt.Errorf("smtp %s: %w", cfg.SMTP.Addr(), err)}, nil, "")
		return problems
	}
	r := sender.Check(ctx, dryRunRecipients(cfg))
	report(r.Problems, r.Warnings, fmt.Sprintf("smtp %s (%s): %s", cfg.SMTP.Addr(), cfg.SMTP.Security, strings.Join(r.Verified, ", ")))
	return problems
}

// dryRunRecipients are the addresses check offers in RCPT TO: every
// notify.team and notify.urgent address once, or the mailboxes' own
// addresses when no list is configured.
func dryRunRecipients(cfg *config.Config) []notify.Recipient {
	var out []notify.Recipient
	seen := map[string]bool{}
	add := func(addr, key string) {
		if k := strings.ToLower(addr); !seen[k] {
			seen[k] = true
			out = append(out, notify.Recipient{Addr: addr, Key: key})
		}
	}
	for i, a := range cfg.Notify.Team {
		add(a, fmt.Sprintf("notify.team[%d]", i))
	}
	for i, a := range cfg.Notify.Urgent {
		add(a, fmt.Sprintf("notify.urgent[%d]", i))
	}
	if len(out) == 0 {
		for i, m := range cfg.Mailboxes {
			add(m.Address, fmt.Sprintf("mailboxes[%d].address", i))
		}
	}
	return out
}
