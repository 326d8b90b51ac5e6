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
package intake
