// Package classify turns the raw bytes of one RFC 5322 message into what the
// case logic needs: thread keys (Message-ID, In-Reply-To, References, the
// "[Case #N]" subject tag), the sender and recipients, a decoded subject, the
// first readable body text, attachment metadata, whether the mail was sent by
// a machine (auto-replies, bounces, lists, our own notifications), and whether
// the subject reports a production outage.
//
// Invariants the package keeps:
//
//   - Pure. It imports no other package of this project, keeps no state
//     between calls, reads no clock, does no logging and no I/O other than
//     reading the io.Reader handed to Parse. Phrase tables and limits are
//     parameters. Every exported function is safe for concurrent use; an
//     *Urgency is read-only after NewUrgency.
//
//   - Never panics, on any input. Parse recovers from an unexpected panic and
//     reports it as a *ParseError with Reason "internal" (the tests and the fuzz
//     targets fail on that reason, so it is a safety net, not a code path).
//
//   - Bounded. Parse reads the message once, as a stream. Header blocks are
//     limited (Limits.MaxHeaderBytes), as are the number of MIME parts, the
//     multipart nesting depth and the decoded text kept. Attachment bodies are
//     decoded only to count their size and are never held in memory. Work is
//     linear in the size of the input.
//
//   - Tolerant. Header lines without a colon, raw 8-bit headers, unknown
//     charsets, bad encoded-words, malformed base64 and quoted-printable,
//     missing or broken boundaries give a best-effort Message with Warnings.
//     A *ParseError is returned only when nothing usable can be read (no
//     header field at all, a read error, or a limit exceeded).
//
//   - Valid text. Every string field of a Message is valid UTF-8. Subject,
//     FromName and attachment names carry no control characters; attachment
//     names carry no path separators or bidi overrides.
//
//   - Identifiers as received. Message-IDs are returned without angle
//     brackets and otherwise unchanged (not lowercased), exactly as
//     go-message's mail.Header.MessageID and MsgIDList return them, so the
//     same normalisation applies on both sides of a thread lookup. Addresses
//     are lowercased.
//
//   - Sender-controlled priority headers (X-Priority, Importance, Priority)
//     are ignored on purpose: only the subject phrases decide urgency.
package classify
