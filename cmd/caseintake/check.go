package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/caseintake/caseintake/mailbox"
	"github.com/caseintake/caseintake/notify"
)

func newCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Validate the config, then connect and log in to every IMAP and SMTP server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			problems := 0
			for _, m := range cfg.Mailboxes {
				errs := mailbox.Check(ctx, m)
				for _, err := range errs {
					fmt.Fprintln(w, "FAIL", err)
				}
				if len(errs) == 0 {
					fmt.Fprintf(w, "ok   mailbox %s: %s logged in as %s, folders %s, %s, %s\n", m.Name, m.IMAP.Addr(), m.IMAP.Username, m.Folder, m.ProcessedFolder, m.QuarantineFolder)
				}
				problems += len(errs)
			}
			sender, err := notify.NewSender(cfg.SMTP)
			if err == nil {
				err = sender.Check(ctx)
			}
			if err != nil {
				fmt.Fprintln(w, "FAIL", err)
				problems++
			} else {
				fmt.Fprintf(w, "ok   smtp %s (%s)\n", cfg.SMTP.Addr(), cfg.SMTP.Security)
			}
			if problems > 0 {
				return fmt.Errorf("%d problem(s) found", problems)
			}
			return nil
		},
	}
}
