// Package notify renders case notifications and delivers the outbox over
// SMTP.
//
// Invariants: notifications are queued in the transaction that changes
// the case (Renderer: recipients, subject, Message-ID and the change they
// tell of) and leave only from the outbox (Worker), which renders each
// one from its case as it is when sending it. A row is marked sent only
// after the server accepted it, and one the server accepted is not sent
// again while its delivery cannot be recorded (a full disk); 4xx answers,
// network errors and a template that fails are retried with exponential
// backoff, 5xx answers mark the recipient failed on the case. Every message carries the case tag in its
// subject, Auto-Submitted, X-Caseintake-Notification, a stable Message-ID
// and threading headers, so that replies thread back and nothing of ours is
// ever answered automatically by us.
//
// Sender logs in with AUTH PLAIN or an OAuth token (XOAUTH2 or
// OAUTHBEARER, package oauth). Sender.Check, for `caseintake check`, stops
// after RCPT TO and resets: it never sends a message.
package notify
