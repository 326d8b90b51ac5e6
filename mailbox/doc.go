// Package mailbox runs one IMAP worker per configured mailbox. A worker
// finds the new messages of its folder, hands each to a Handler (which it
// declares itself; this package knows nothing about cases) and then
// acknowledges, quarantines or leaves the message as the Handler says.
// Logins use the password or an OAuth token (package oauth) over XOAUTH2
// or OAUTHBEARER. Check tests a mailbox's settings for `caseintake check`
// and changes nothing on the server.
//
// Invariants:
//
//   - Acknowledge after commit. A message leaves the folder (MOVE to the
//     processed or quarantine folder; COPY, STORE \Deleted and UID EXPUNGE
//     of that UID only where MOVE is missing) only after Handle returned Ack
//     or Quarantine. A crash or connection loss in between offers the
//     message again; the Handler's commit must be idempotent. A failed COPY
//     never leads to a delete, and a plain EXPUNGE is never sent.
//   - Exact bytes, streamed. Incoming.Body is the BODY.PEEK[] literal as it
//     arrives (\Seen is left alone); the worker never holds a whole message
//     in memory, and sends no other command until that FETCH has been read
//     to the end. Messages larger than MaxMessageSize are not downloaded.
//   - Batches in UID order, their bodies streamed on one connection per
//     mailbox, committed in order, each after the one before. While a
//     backlog drains, a second connection moves each committed batch (in
//     the same order, while the next one commits), after selecting the
//     folder again and checking that its UIDVALIDITY is still the batch's;
//     it is closed when the backlog is done, and without it the first
//     connection moves.
//   - The cursor (UIDVALIDITY, last UID) advances only past messages that
//     were acknowledged or quarantined (or vanished), and only contiguously:
//     a Retry holds it below that message while later messages are still
//     processed. A changed UIDVALIDITY resets it to zero. Searches filter
//     uid > cursor on the client (IMAP "n:*" matches the highest UID even
//     when it is below n) and skip messages flagged \Deleted.
//   - No tight loops. A retried message is offered again on the next poll
//     cycle, which starts only after a wait (IDLE or sleep, bounded by
//     poll_interval, ended early by EXISTS or Kick); reconnects back off
//     exponentially from 1 s to 5 min with jitter.
//   - Nothing wedges. go-imap has no contexts, so every step is bounded by
//     closing the connection: dial and login, each poll step (select,
//     search, metadata) and each message have a deadline of
//     max(2×poll_interval, 2 min); an IDLE is bounded by poll_interval plus
//     that deadline.
//   - Graceful stop. Cancelling Run's context while waiting closes the
//     connection and returns at once; with a message in hand, the Handler
//     and the acknowledgement finish on a detached context bounded by about
//     10 s, and no further message is started.
//   - A Handler panic is recovered, logged with its stack, and the message
//     quarantined with reason "panic: …"; the worker goes on.
//   - Every log record about a message carries mailbox, uid and message_id.
//     Connection trouble is logged when the state or the error changes, not
//     on every attempt. Passwords are never logged or reported.
package mailbox
