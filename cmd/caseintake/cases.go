package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/caseintake/caseintake/api"
	"github.com/caseintake/caseintake/casemodel"
	"github.com/caseintake/caseintake/store"
)

// clientFor parses the command's record argument (a case ID, a quarantine
// record number) and then opens the API client, so that a mistyped
// argument is reported before the config is read.
func clientFor(cmd *cobra.Command, arg string, parse func(string) (uint64, error)) (uint64, *api.Client, error) {
	n, err := parse(arg)
	if err != nil {
		return 0, nil, err
	}
	c, err := apiClient(cmd)
	return n, c, err
}

func apiClient(cmd *cobra.Command) (*api.Client, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, err
	}
	return api.NewClient(cfg.API.Listen, cfg.API.Token), nil
}

func newCasesCmd() *cobra.Command {
	cases := &cobra.Command{Use: "cases", Short: "List, show and change cases (talks to the running daemon)"}
	cases.AddCommand(newCasesListCmd(), newCasesShowCmd(), newCasesSetStatusCmd(),
		newCasesAssignCmd(), newCasesNoteCmd(), newCasesReplyCmd(), newCasesSetPriorityCmd())
	return cases
}

func newCasesListCmd() *cobra.Command {
	var f store.Filter
	var status, priority string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List cases, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if status != "" {
				if f.Status, err = casemodel.ParseStatus(status); err != nil {
					return err
				}
			}
			if priority != "" {
				if f.Priority, err = casemodel.ParsePriority(priority); err != nil {
					return err
				}
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			list, err := c.ListCases(cmd.Context(), f)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), list)
			}
			printCaseTable(cmd.OutOrStdout(), list)
			return nil
		},
	}
	cmd.Flags().StringVar(&status, "status", "", "only cases with this status")
	cmd.Flags().StringVar(&priority, "priority", "", "only cases with this priority")
	cmd.Flags().StringVar(&f.Assignee, "assignee", "", "only cases assigned to this agent")
	cmd.Flags().StringVar(&f.Requester, "requester", "", "only cases from this address")
	cmd.Flags().StringVar(&f.Text, "text", "", "only cases whose subject contains this")
	cmd.Flags().IntVar(&f.Limit, "limit", 0, "at most this many cases (0: all)")
	cmd.Flags().IntVar(&f.Offset, "offset", 0, "skip this many cases first")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array (stable interface)")
	return cmd
}

func printCaseTable(w io.Writer, list []*casemodel.Case) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CASE\tSTATUS\tPRIORITY\tASSIGNEE\tREQUESTER\tDUE\tUPDATED\tSUBJECT")
	for _, c := range list {
		due, assignee := "-", c.Assignee
		if c.DueAt != nil {
			due = c.DueAt.Local().Format("2006-01-02 15:04")
		}
		if assignee == "" {
			assignee = "-"
		}
		fmt.Fprintf(tw, "#%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Status, c.Priority, assignee, c.Requester,
			due, c.UpdatedAt.Local().Format("2006-01-02 15:04"), c.Subject)
	}
	tw.Flush()
	if len(list) == 0 {
		fmt.Fprintln(w, "(no cases)")
	}
}

func parseCaseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(strings.TrimPrefix(s, "#"), 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("case id must be a number such as 1042, got %q", s)
	}
	return id, nil
}

func newCasesShowCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one case with its messages, decisions, events and notifications",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, c, err := clientFor(cmd, args[0], parseCaseID)
			if err != nil {
				return err
			}
			view, err := c.Case(cmd.Context(), id)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), view)
			}
			printCase(cmd.OutOrStdout(), view)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object (stable interface)")
	return cmd
}

func printCase(w io.Writer, v *api.CaseView) {
	c := v.Case
	ts := func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }
	fmt.Fprintf(w, "Case #%d  %s\n", c.ID, c.Subject)
	fmt.Fprintf(w, "  status %s · priority %s · requester %s · mailbox %s\n", c.Status, c.Priority, c.Requester, c.Mailbox)
	fmt.Fprintf(w, "  created %s · updated %s", ts(c.CreatedAt), ts(c.UpdatedAt))
	if c.DueAt != nil {
		fmt.Fprintf(w, " · due %s", ts(*c.DueAt))
	}
	if c.Assignee != "" {
		fmt.Fprintf(w, " · assignee %s", c.Assignee)
	}
	if c.FirstResponseAt != nil {
		fmt.Fprintf(w, " · first response %s", ts(*c.FirstResponseAt))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  participants: %s", strings.Join(c.Participants, ", "))
	if c.Language != "" {
		fmt.Fprintf(w, " · language %s", c.Language)
	}
	fmt.Fprintln(w)
	if len(c.Links) > 0 {
		tags := make([]string, len(c.Links))
		for i, id := range c.Links {
			tags[i] = fmt.Sprintf("#%d", id)
		}
		fmt.Fprintf(w, "  linked cases: %s\n", strings.Join(tags, ", "))
	}
	fmt.Fprintln(w, "\nMessages:")
	for _, m := range c.Messages {
		if m.Direction == casemodel.In {
			fmt.Fprintf(w, "  %s  in   %s  <%s>\n      %s\n      filed by: %s\n", ts(m.Date), m.From, m.MessageID, m.Subject, m.Signal)
		} else {
			fmt.Fprintf(w, "  %s  out  %s to %s  <%s>\n", ts(m.Date), m.Kind, strings.Join(m.To, ", "), m.MessageID)
		}
	}
	fmt.Fprintln(w, "\nEvents:")
	for _, e := range c.Events {
		change := ""
		if e.From != "" || e.To != "" {
			change = fmt.Sprintf(" %s → %s", e.From, e.To)
		}
		note := ""
		if e.Note != "" {
			note = " — " + e.Note
		}
		fmt.Fprintf(w, "  %s  %-8s %s%s%s\n", ts(e.At), e.Actor, e.Kind, change, note)
	}
	fmt.Fprintln(w, "\nNotifications:")
	for _, n := range v.Notifications {
		line := fmt.Sprintf("  %-13s %-8s to %s", n.Kind, n.State, strings.Join(append(append([]string{}, n.Delivered...), n.To...), ", "))
		if len(n.Failed) > 0 {
			line += " · failed: " + strings.Join(n.Failed, ", ")
		}
		if n.LastError != "" {
			line += " · " + n.LastError
		}
		fmt.Fprintln(w, line)
	}
}

func newCasesSetStatusCmd() *cobra.Command {
	var note, actor string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "set-status ID STATUS",
		Short: "Change a case's status as an agent (" + strings.Join(statusNames(), ", ") + ")",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseCaseID(args[0])
			if err != nil {
				return err
			}
			if _, err := casemodel.ParseStatus(args[1]); err != nil {
				return err
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			updated, err := c.SetStatus(cmd.Context(), id, api.StatusRequest{Status: args[1], Note: note, Actor: actor})
			if err != nil {
				return err
			}
			return report(cmd, asJSON, updated, fmt.Sprintf("case #%d is now %s", updated.ID, updated.Status))
		},
	}
	cmd.Flags().StringVar(&note, "note", "", "a note for the case history and the notification")
	agentFlags(cmd, &actor, &asJSON)
	return cmd
}

// agentFlags adds the flags every agent action has.
func agentFlags(cmd *cobra.Command, actor *string, asJSON *bool) {
	cmd.Flags().StringVar(actor, "as", "", "the acting agent (email address) for the history (default cli)")
	cmd.Flags().BoolVar(asJSON, "json", false, "print the updated case as JSON")
}

// report prints the updated case as JSON or a one-line summary.
func report(cmd *cobra.Command, asJSON bool, c *casemodel.Case, line string) error {
	if asJSON {
		return writeJSON(cmd.OutOrStdout(), c)
	}
	fmt.Fprintln(cmd.OutOrStdout(), line)
	return nil
}

// agentAction builds a "cases VERB ID ARG" command that calls the API.
func agentAction(use, short string, extra func(*cobra.Command), run func(cmd *cobra.Command, c *api.Client, id uint64, arg, actor string) (*casemodel.Case, string, error)) *cobra.Command {
	var actor string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, c, err := clientFor(cmd, args[0], parseCaseID)
			if err != nil {
				return err
			}
			updated, line, err := run(cmd, c, id, args[1], actor)
			if err != nil {
				return err
			}
			return report(cmd, asJSON, updated, line)
		},
	}
	agentFlags(cmd, &actor, &asJSON)
	if extra != nil {
		extra(cmd)
	}
	return cmd
}

func newCasesAssignCmd() *cobra.Command {
	var note string
	return agentAction("assign ID AGENT-EMAIL", "Assign a case to an agent, named by email address (\"-\" unassigns)",
		func(cmd *cobra.Command) { cmd.Flags().StringVar(&note, "note", "", "a note for the team notification") },
		func(cmd *cobra.Command, c *api.Client, id uint64, agent, actor string) (*casemodel.Case, string, error) {
			if agent == "-" {
				agent = ""
			} else if _, err := casemodel.ParseAgent(agent); err != nil {
				return nil, "", err
			}
			u, err := c.Assign(cmd.Context(), id, api.AssignRequest{Assignee: agent, Note: note, Actor: actor})
			if err != nil {
				return nil, "", err
			}
			who := u.Assignee
			if who == "" {
				who = "nobody"
			}
			return u, fmt.Sprintf("case #%d is assigned to %s", u.ID, who), nil
		})
}

func newCasesNoteCmd() *cobra.Command {
	return agentAction("note ID TEXT", "Add an internal note (the team is told; the customer never sees it)", nil,
		func(cmd *cobra.Command, c *api.Client, id uint64, text, actor string) (*casemodel.Case, string, error) {
			u, err := c.AddNote(cmd.Context(), id, api.NoteRequest{Text: text, Actor: actor})
			if err != nil {
				return nil, "", err
			}
			return u, fmt.Sprintf("note added to case #%d", u.ID), nil
		})
}

func newCasesReplyCmd() *cobra.Command {
	return agentAction("reply ID TEXT", "Mail a public reply to the case's requester and participants (\"-\" reads TEXT from stdin)", nil,
		func(cmd *cobra.Command, c *api.Client, id uint64, text, actor string) (*casemodel.Case, string, error) {
			if text == "-" {
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
				if err != nil {
					return nil, "", fmt.Errorf("read the reply from stdin: %w", err)
				}
				text = string(b)
			}
			if strings.TrimSpace(text) == "" {
				return nil, "", fmt.Errorf("the reply is empty: give the text as an argument or on stdin with -")
			}
			u, err := c.Reply(cmd.Context(), id, api.ReplyRequest{Text: text, Actor: actor})
			if err != nil {
				return nil, "", err
			}
			return u, fmt.Sprintf("reply to case #%d queued for %s", u.ID, strings.Join(u.Participants, ", ")), nil
		})
}

func newCasesSetPriorityCmd() *cobra.Command {
	var note string
	return agentAction("set-priority ID PRIORITY", "Set a case's priority (urgent, high, normal, low); the response target follows",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&note, "note", "", "why, for the history and the team")
		},
		func(cmd *cobra.Command, c *api.Client, id uint64, prio, actor string) (*casemodel.Case, string, error) {
			if _, err := casemodel.ParsePriority(prio); err != nil {
				return nil, "", err
			}
			u, err := c.SetPriority(cmd.Context(), id, api.PriorityRequest{Priority: prio, Note: note, Actor: actor})
			if err != nil {
				return nil, "", err
			}
			line := fmt.Sprintf("case #%d is now %s", u.ID, u.Priority)
			if u.DueAt != nil {
				line += ", first response due " + u.DueAt.Local().Format("2006-01-02 15:04")
			}
			return u, line, nil
		})
}

func statusNames() []string {
	var out []string
	for _, s := range casemodel.Statuses {
		out = append(out, string(s))
	}
	return out
}

func newTraceCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "trace MESSAGE-ID",
		Short: "Show what happened to a message: every decision recorded about it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			ds, err := c.Trace(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), ds)
			}
			w := cmd.OutOrStdout()
			if len(ds) == 0 {
				fmt.Fprintf(w, "no message with Message-ID %s has been seen\n", args[0])
				return nil
			}
			for _, d := range ds {
				fmt.Fprintf(w, "%s  mailbox %s UID %d (uidvalidity %d)\n  outcome: %s", d.DecidedAt.Local().Format("2006-01-02 15:04:05"), d.Mailbox, d.UID, d.UIDValidity, d.Outcome)
				if d.CaseID != 0 {
					fmt.Fprintf(w, " (case #%d)", d.CaseID)
				}
				fmt.Fprintf(w, "\n  signal:  %s\n  from %s, %q, %d bytes, raw %s\n", d.Signal, d.From, d.Subject, d.Size, d.RawRef)
				for _, warn := range d.Warnings {
					fmt.Fprintf(w, "  warning: %s\n", warn)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
