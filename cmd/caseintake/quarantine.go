package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newQuarantineCmd() *cobra.Command {
	q := &cobra.Command{Use: "quarantine", Short: "See the messages caseintake quarantined, and why"}
	var limit int
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List quarantined messages, newest first, with the reason",
		Long: `list shows each message whose standing outcome is a quarantine: where it was
(mailbox, UID), its Message-ID, the reason and the detail. The message itself
is in the mailbox's quarantine folder, and its exact bytes (unless it was
too large to download) are in the raw store; caseintake trace MESSAGE-ID
shows its whole history.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			ds, err := c.Quarantined(cmd.Context(), limit)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), ds)
			}
			w := cmd.OutOrStdout()
			if len(ds) == 0 {
				fmt.Fprintln(w, "(nothing in quarantine)")
				return nil
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tWHEN\tMAILBOX\tUID\tMESSAGE-ID\tOUTCOME\tDETAIL")
			for _, d := range ds {
				id := d.MessageID
				if id == "" {
					id = d.MessageKey
				}
				detail, _, _ := strings.Cut(d.Signal, "\n")
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\n", d.Seq, d.DecidedAt.Local().Format("2006-01-02 15:04"), d.Mailbox, d.UID, id, d.Outcome, detail)
			}
			return tw.Flush()
		},
	}
	list.Flags().IntVar(&limit, "limit", 100, "at most this many (0: all)")
	list.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of decision records")
	retry := &cobra.Command{
		Use:   "retry SEQ",
		Short: "Run a quarantined message through the pipeline again (after a fix or an upgrade)",
		Long: `retry re-reads the stored bytes of quarantine record SEQ (the seq field of
quarantine list --json) and decides the message again: it may become a case,
be ignored, or be quarantined again with a new reason. The IMAP copy stays in
the quarantine folder. A message that was too large to download has no
stored bytes: raise max_message_size and move it back to the inbox instead.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil || seq == 0 {
				return fmt.Errorf("SEQ must be a record number from quarantine list --json, got %q", args[0])
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			d, err := c.RetryQuarantined(cmd.Context(), seq)
			if err != nil {
				return err
			}
			where := ""
			if d.CaseID != 0 {
				where = fmt.Sprintf(" (case #%d)", d.CaseID)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "retried: %s%s — %s\n", d.Outcome, where, d.Signal)
			return nil
		},
	}
	q.AddCommand(list, retry)
	return q
}
