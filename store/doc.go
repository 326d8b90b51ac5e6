// Package store keeps cases, message decisions, the IMAP cursors and the
// notification outbox in one bbolt database, and the exact bytes of every
// message received in a content-addressed directory beside it.
//
// Invariants:
//   - Raw bytes are written and fsync'd (file and directory) before any
//     transaction refers to them (WriteRaw returns only then).
//   - A case, its indexes (status, Message-ID), the decision record of the
//     message that changed it and the outbox rows announcing the change are
//     written in one transaction: all or nothing.
//   - Every message key (Message-ID, or the content hash when there is none)
//     has at most one deciding record, so a re-fetched message never changes
//     a case twice.
//   - Values handed out are copies; no slice from bbolt outlives its
//     transaction, and no network I/O happens inside one.
package store
