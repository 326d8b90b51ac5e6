package main

import (
	"fmt"
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
			fmt.Fprintln(tw, "WHEN\tMAILBOX\tUID\tMESSAGE-ID\tOUTCOME\tDETAIL")
			for _, d := range ds {
				id := d.MessageID
				if id == "" {
					id = d.MessageKey
				}
				detail, _, _ := strings.Cut(d.Signal, "\n")
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", d.DecidedAt.Local().Format("2006-01-02 15:04"), d.Mailbox, d.UID, id, d.Outcome, detail)
			}
			return tw.Flush()
		},
	}
	list.Flags().IntVar(&limit, "limit", 100, "at most this many (0: all)")
	list.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of decision records")
	q.AddCommand(list)
	return q
}
