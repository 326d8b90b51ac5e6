//go:build e2e

// Package e2e runs caseintake against a real mail stack: a private Dovecot
// (IMAP, STARTTLS and implicit TLS) and a private Postfix (SMTP, delivering
// example.test to Dovecot over LMTP), both started by
// testdata/mailstack/mailstack.sh in a temporary directory and stopped again
// when the tests end, however they end.
//
// Every file carries the build tag e2e, so only
//
//	go test -tags e2e ./e2e/
//
// runs these tests. They need root (Postfix's master refuses to run as
// anyone else) and the Debian packages that `mailstack.sh install` installs
// on first use.
//
// Helpers for scenarios:
//
//   - sharedStack(t) returns the package-wide stack, started on first use and
//     stopped by TestMain; startStack(t) starts a private one that t's cleanup
//     stops. Give each test its own subject or user on the shared stack.
//   - (*Stack).Mailbox(t, user) / MailboxIMAPS(t, user) open INBOX over IMAP
//     with STARTTLS / implicit TLS, trusting the stack's CA; Messages lists
//     it (raw bytes and the parsed Subject, From, Message-ID, In-Reply-To,
//     References, Auto-Submitted); Close or t's cleanup logs out.
//   - (*Stack).WaitForMessage(t, user, match, deadline) polls a mailbox until
//     a message matches; (*Stack).NoMessage checks that none arrives.
//   - (*Stack).SendSwaks, Send and SendRaw put mail into Postfix.
//   - (*Stack).ReplyWithMailClient has s-nail reply to a message, so the
//     reply's headers are a real client's.
//   - (*Stack).StopPostfix, StartPostfix, StopDovecot, StartDovecot and
//     RestartDovecot make outages.
//
// Users (password "secret"): support, customer, agent, team, oncall, infra,
// stranger, all @example.test. Mail to any other domain is refused by Postfix;
// nothing leaves the machine.
//
// No process outlives the tests: t's cleanup stops a private stack, TestMain
// stops the shared one, and each stack has a reaper process that stops it
// (and removes its directory) when the test binary dies without either, as
// on a -timeout panic or a kill.
//
// Set MAILSTACK_KEEP=1 to keep the stack directories (config, logs, Maildirs)
// after the run.
package e2e
