package main

import (
	"cmp"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/caseintake/caseintake/api"
	"github.com/caseintake/caseintake/intake"
	"github.com/caseintake/caseintake/store"
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
			seq, c, err := clientFor(cmd, args[0], parseQuarantineSeq)
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
	q.AddCommand(list, newQuarantineShowCmd(), retry, newQuarantineReleaseCmd())
	return q
}

// parseQuarantineSeq reads the SEQ argument of a quarantine command.
func parseQuarantineSeq(arg string) (uint64, error) {
	seq, err := strconv.ParseUint(arg, 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("SEQ must be a record number from quarantine list --json, got %q", arg)
	}
	return seq, nil
}

func newQuarantineShowCmd() *cobra.Command {
	var raw, asJSON bool
	cmd := &cobra.Command{
		Use:   "show SEQ",
		Short: "Show why a message was quarantined, or (--raw) its stored bytes",
		Long: `show prints quarantine record SEQ: the reason and its detail, where the
message was (mailbox, UID), its Message-ID, sender, subject and size, when
it arrived and was decided, whether it still stands in quarantine, and the
trace of every decision about it. Where the stored bytes cannot be parsed,
it shows the sender and subject that can still be read from them, which is
what quarantine release would use.

With --raw it writes the exact bytes the daemon stored to stdout, e.g.
caseintake quarantine show 12 --raw > message.eml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, c, err := clientFor(cmd, args[0], parseQuarantineSeq)
			if err != nil {
				return err
			}
			if raw {
				_, err := c.QuarantinedRaw(cmd.Context(), seq, cmd.OutOrStdout())
				return err
			}
			v, err := c.QuarantineRecord(cmd.Context(), seq)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			printQuarantineRecord(cmd.OutOrStdout(), v)
			return nil
		},
	}
	cmd.Flags().BoolVar(&raw, "raw", false, "write the stored raw message to stdout")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the record, what can be salvaged and the trace as JSON")
	return cmd
}

func printQuarantineRecord(w io.Writer, v *api.QuarantineView) {
	ts := func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }
	orNone := func(s string) string {
		if s == "" {
			return "(none)"
		}
		return s
	}
	q := v.Decision
	standing := "still in quarantine"
	if s := v.SettledBy; s != nil {
		standing = fmt.Sprintf("no longer in quarantine: record %d decided it as %s", s.Seq, s.Outcome)
		if s.CaseID != 0 {
			standing += fmt.Sprintf(" (case #%d)", s.CaseID)
		}
	}
	fmt.Fprintf(w, "quarantine record %d: %s\n", q.Seq, standing)
	fmt.Fprintf(w, "  reason:     %s\n", v.Reason)
	fmt.Fprintf(w, "  detail:     %s\n", strings.ReplaceAll(q.Signal, "\n", "\n              "))
	fmt.Fprintf(w, "  mailbox:    %s, UID %d (uidvalidity %d)\n", q.Mailbox, q.UID, q.UIDValidity)
	from, subject, msgID := q.From, q.Subject, q.MessageID
	if s := v.Salvaged; s != nil {
		from, subject, msgID = cmp.Or(from, s.From), cmp.Or(subject, s.Subject), cmp.Or(msgID, s.MessageID)
	}
	fmt.Fprintf(w, "  message-id: %s\n", orNone(msgID))
	fmt.Fprintf(w, "  from:       %s\n", orNone(from))
	fmt.Fprintf(w, "  subject:    %s\n", orNone(subject))
	fmt.Fprintf(w, "  size:       %d bytes\n", q.Size)
	fmt.Fprintf(w, "  received:   %s\n", ts(q.ReceivedAt))
	fmt.Fprintf(w, "  decided:    %s\n", ts(q.DecidedAt))
	if q.RawRef != "" {
		fmt.Fprintf(w, "  raw:        %s (caseintake quarantine show %d --raw)\n", q.RawRef, q.Seq)
	} else {
		fmt.Fprintln(w, "  raw:        not stored (never downloaded); the message is in the mailbox's quarantine folder")
	}
	if s := v.Salvaged; s != nil && s.Note != "" {
		fmt.Fprintf(w, "  readable:   %s\n", s.Note)
	}
	fmt.Fprintln(w, "  trace:")
	for _, d := range v.Trace {
		line := fmt.Sprintf("    %s  record %d  %s", ts(d.DecidedAt), d.Seq, d.Outcome)
		if d.CaseID != 0 {
			line += fmt.Sprintf(" (case #%d)", d.CaseID)
		}
		first, _, _ := strings.Cut(d.Signal, "\n")
		fmt.Fprintf(w, "%s: %s\n", line, first)
	}
	switch {
	case v.SettledBy != nil:
	case q.RawRef == "":
		fmt.Fprintf(w, "next: raise max_message_size and move the message from the quarantine folder back to the inbox, or caseintake quarantine release %d --requester EMAIL to open a case by hand\n", q.Seq)
	default:
		fmt.Fprintf(w, "next: caseintake quarantine retry %d (after a fix), or caseintake quarantine release %d [--requester EMAIL] to open a case by hand\n", q.Seq, q.Seq)
	}
}

func newQuarantineReleaseCmd() *cobra.Command {
	var req api.ReleaseRequest
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "release SEQ [--requester EMAIL] [--subject S]",
		Short: "Open a case from a quarantined message by hand",
		Long: `release opens a case from quarantine record SEQ after you have looked at it
(quarantine show SEQ): the message becomes the case's first message, the
customer gets the usual acknowledgement (not for automated mail or a mail
loop) and the team is told. It works even when the message cannot be
parsed: the case gets whatever sender, subject and text can be read. When
no sender address can be found, name the customer with --requester;
--subject sets the case subject. The decision records that you (--as)
released it. The IMAP copy stays in the quarantine folder.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, c, err := clientFor(cmd, args[0], parseQuarantineSeq)
			if err != nil {
				return err
			}
			d, err := c.ReleaseQuarantined(cmd.Context(), seq, req)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), d)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "released record %d: case #%d opened — %s\n", seq, d.CaseID, d.Signal)
			return nil
		},
	}
	cmd.Flags().StringVar(&req.Requester, "requester", "", "the customer the case is for (required when the message names no sender)")
	cmd.Flags().StringVar(&req.Subject, "subject", "", "the case subject (default: the message's)")
	agentFlags(cmd, &req.Actor, &asJSON)
	cmd.Flags().Lookup("json").Usage = "print the new decision record as JSON"
	return cmd
}

// quarantineDesk adapts the pipeline to the API's quarantine endpoints.
type quarantineDesk struct{ pipeline *intake.Pipeline }

// Retry implements api.QuarantineDesk.
func (d quarantineDesk) Retry(seq uint64) (*store.Decision, error) { return d.pipeline.Retry(seq) }

// Release implements api.QuarantineDesk.
func (d quarantineDesk) Release(seq uint64, actor string, req api.ReleaseRequest) (*store.Decision, error) {
	return d.pipeline.Release(seq, intake.Release{Actor: actor, Requester: req.Requester, Subject: req.Subject})
}

// Salvage implements api.QuarantineDesk.
func (d quarantineDesk) Salvage(q *store.Decision) api.Salvaged {
	m, note := d.pipeline.Salvage(q)
	return api.Salvaged{MessageID: m.MessageID, From: m.From, FromName: m.FromName, ReplyTo: m.ReplyTo, Subject: m.Subject, Note: note}
}
