// Package store keeps cases, message decisions, the IMAP cursors and the
// notification outbox in one bbolt database, and the exact bytes of every
// message received in a raw store beside it: appended to pack files when
// the message was held in memory ("pack:<id>:<offset>:<length>"), in a
// file named by its SHA-256 when it was streamed ("sha256:<hex>").
//
// Invariants:
//   - Raw bytes are written and made durable (MakeDurable: SyncRaw, which
//     writes the pack's last chunk and fdatasyncs the pack a batch went to
//     and the directories that got new entries, and a check that no pack
//     the batch lies in lost a write) before any transaction refers to
//     them; a reference opens only after that. Packs and files are only
//     ever added to, never rewritten.
//   - A case, its indexes (status, requester, assignee, priority,
//     Message-ID) and counts, the decision record of the message that
//     changed it and the outbox rows announcing the change are written in
//     one transaction: all or nothing.
//   - Every message key (Message-ID, or the content hash when there is none)
//     has at most one deciding record, so a re-fetched message never changes
//     a case twice.
//   - Values handed out are copies; no slice from bbolt outlives its
//     transaction, and no network I/O happens inside one.
package store
