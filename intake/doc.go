// Package intake is the pipeline from a fetched message to its one outcome:
// a new case, a reply filed on a case, an ignored automated message, or a
// quarantined one. It implements mailbox.Handler.
//
// Invariants (design.md 1, 2, 4, 5, 6):
//   - The exact bytes are stored durably before anything refers to them.
//   - The case change, the message's decision record and the notifications
//     it causes commit in one transaction; only then is the message
//     acknowledged. A failed commit leaves it on the server for a retry.
//   - A message key (Message-ID, or content hash) is decided once; a
//     re-fetch or a copy in a second mailbox changes nothing.
//   - Mail opens, reopens and raises priority; it never lowers, resolves or
//     assigns. Automated mail never opens, reopens or gets an answer.
//   - Acknowledgements are capped per recipient and globally per hour, so
//     a loop with an auto-responder that marks nothing ends at the cap;
//     mail with more Received fields than the limit is quarantined as a
//     loop.
//   - A delivery failure report about one of our notifications (matched by
//     the original Message-ID in the report, or quoted in its text) is
//     attached to that case and marks the recipient undeliverable on the
//     notification; it opens nothing and sends nothing.
//   - A panic while deciding rolls the transaction back and quarantines the
//     message with reason panic, once.
package intake
