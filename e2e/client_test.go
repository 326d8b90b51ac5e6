//go:build e2e

package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ReplyOptions change how ReplyWithMailClient replies.
type ReplyOptions struct {
	// All replies to the sender and every other recipient (s-nail's
	// "reply"); by default only to the sender, or its Reply-To (s-nail's
	// "Reply", with reply-to-honour set).
	All bool
	// Quote puts the original, quoted with "> ", above the body.
	Quote bool
}

// ReplyWithMailClient has the real mail client s-nail, running as user,
// reply to original (a raw message, e.g. Message.Raw) with body, sending
// through the stack's Postfix. The reply's Subject, In-Reply-To and
// References are whatever s-nail makes of original. It returns the reply as
// s-nail sent it, and fails t if sending fails or if the reply's In-Reply-To
// does not name original's Message-ID. opts may be nil.
func (s *Stack) ReplyWithMailClient(t testing.TB, user string, original []byte, body string, opts *ReplyOptions) *Message {
	t.Helper()
	if opts == nil {
		opts = &ReplyOptions{}
	}
	orig, err := ParseMessage(original)
	if err != nil {
		t.Fatalf("original: %v", err)
	}
	dir := t.TempDir()
	folder := filepath.Join(dir, "in.mbox")
	record := filepath.Join(dir, "sent.mbox")
	if err := os.WriteFile(folder, toMbox(original), 0o600); err != nil {
		t.Fatal(err)
	}

	// s-nail's batch mode reads commands from stdin: the reply command, then
	// the body in compose mode (a leading "~" is escaped as "~~"), "~." to
	// send, and "xit" to leave without touching the folder.
	var script strings.Builder
	if opts.All {
		script.WriteString("reply 1\n")
	} else {
		script.WriteString("Reply 1\n")
	}
	for _, line := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		if strings.HasPrefix(line, "~") {
			line = "~" + line
		}
		script.WriteString(line + "\n")
	}
	script.WriteString("~.\nxit\n")

	args := []string{
		"-#",  // batch mode
		"-:/", // no resource files
		"-R",  // folder read-only
		"-S", "v15-compat",
		"-S", "errexit", // a failed send exits non-zero
		"-S", "mta=smtp://" + s.SMTPAddr(),
		"-S", "smtp-auth=none",
		"-S", "from=" + Addr(user),
		"-S", "hostname=" + Domain,
		"-S", "record=" + record,
		"-S", "DEAD=" + filepath.Join(dir, "dead.letter"),
		"-S", "reply-to-honour=yes",
		"-S", "ttycharset=utf-8",
		"-S", "sendcharsets=utf-8",
	}
	if opts.Quote {
		args = append(args, "-S", "quote", "-S", "indentprefix=> ")
	}
	args = append(args, "-f", folder)
	env := []string{"HOME=" + dir, "LC_ALL=C.UTF-8", "MAILRC=/dev/null"}
	runTool(t, []byte(script.String()), env, "s-nail", args...)

	sent, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("s-nail kept no copy of the reply: %v", err)
	}
	reply, err := ParseMessage(fromMbox(sent))
	if err != nil {
		t.Fatalf("reply: %v", err)
	}
	if orig.MessageID != "" && reply.InReplyTo != orig.MessageID {
		t.Fatalf("s-nail's reply has In-Reply-To <%s>, want <%s>:\n%s", reply.InReplyTo, orig.MessageID, reply.Raw)
	}
	t.Logf("s-nail replied as %s: %s", Addr(user), reply)
	return reply
}

// toMbox makes a one-message mbox (mboxrd quoting) of raw, with LF line ends.
func toMbox(raw []byte) []byte {
	text := strings.ReplaceAll(string(raw), "\r\n", "\n")
	var b bytes.Buffer
	b.WriteString("From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n")
	for _, line := range strings.SplitAfter(text, "\n") {
		if strings.HasPrefix(strings.TrimLeft(line, ">"), "From ") {
			b.WriteString(">")
		}
		b.WriteString(line)
	}
	if !strings.HasSuffix(text, "\n") {
		b.WriteString("\n")
	}
	b.WriteString("\n")
	return b.Bytes()
}

// fromMbox returns the first message of an mbox, without its "From " line.
func fromMbox(mbox []byte) []byte {
	if bytes.HasPrefix(mbox, []byte("From ")) {
		if i := bytes.IndexByte(mbox, '\n'); i >= 0 {
			mbox = mbox[i+1:]
		}
	}
	if i := bytes.Index(mbox, []byte("\n\nFrom ")); i >= 0 {
		mbox = mbox[:i+1]
	}
	return mbox
}
