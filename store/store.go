package store

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Bucket layout. Numeric keys are big-endian uint64 so cursors walk in order.
var (
	bucketMeta          = []byte("meta")                  // "schema_version" -> u64, "message_id_key" -> 32 bytes
	bucketCases         = []byte("cases")                 // case ID -> casemodel.Case JSON
	bucketByStatus      = []byte("by_status")             // status 0x00 case ID -> ""
	bucketByMsgID       = []byte("by_msgid")              // Message-ID (incoming and ours) -> case ID
	bucketDecisions     = []byte("decisions")             // seq -> Decision JSON
	bucketByMsgKey      = []byte("by_msgkey")             // message key -> seq of its deciding record
	bucketTrace         = []byte("trace")                 // Message-ID 0x00 seq -> "" (every record, for trace)
	bucketByUID         = []byte("by_uid")                // mailbox 0x00 uidvalidity 0x00 uid -> decision seq
	bucketCursors       = []byte("imap_cursor")           // mailbox name -> Cursor JSON
	bucketOutbox        = []byte("outbox")                // seq -> Outgoing JSON (without the message since schema 2)
	bucketOutboxData    = []byte("outbox_data")           // seq -> the Outgoing's whole message, as sent
	bucketPending       = []byte("outbox_pending")        // seq -> next attempt (unix ns; "" = due now) while not sent or failed
	bucketPendingUrgent = []byte("outbox_pending_urgent") // the same for the rows that go first (Outgoing.Urgent; since schema 6)
	bucketAckHistory    = []byte("ack_history")           // recipient 0x00 unix-nanos -> "" (acknowledgement rate limit)
	bucketOutboxCase    = []byte("outbox_by_case")        // case ID, seq -> "" (a case's notifications; since schema 3)
	bucketQuarantine    = []byte("quarantine")            // quarantine record seq -> "", or the seq of the record that superseded it (since schema 4)
	bucketStatusN       = []byte("status_counts")         // status -> u64 number of cases in it (since schema 5)
	bucketActiveN       = []byte("active_counts")         // priority -> u64 number of its cases neither closed nor archived (since schema 5)
	bucketByRequester   = []byte("by_requester")          // requester in lower case 0x00 case ID -> "" (since schema 5)
	bucketByAssignee    = []byte("by_assignee")           // assignee in lower case 0x00 case ID -> "", assigned cases only (since schema 5)
	bucketByPriority    = []byte("by_priority")           // priority 0x00 case ID -> "" (since schema 5)
	allBuckets          = [][]byte{bucketMeta, bucketCases, bucketByStatus, bucketByMsgID, bucketDecisions,
		bucketByMsgKey, bucketTrace, bucketByUID, bucketCursors, bucketOutbox, bucketOutboxData, bucketPending, bucketPendingUrgent, bucketAckHistory,
		bucketOutboxCase, bucketQuarantine, bucketStatusN, bucketActiveN, bucketByRequester, bucketByAssignee, bucketByPriority}
)

// schemaVersion 2 keeps a notification's message in bucketOutboxData, not
// base64 in its JSON row. A version 1 store is read as it is (its rows
// still carry their message) and marked 2, so that an older caseintake,
// which would send new rows empty, refuses it.
//
// Version 3 indexes the outbox by case (bucketOutboxCase): showing a case
// or filing a bounce had walked every notification ever queued. An older
// store is indexed when it is opened, and marked 3, so that an older
// caseintake, which would queue rows the index misses, refuses it.
//
// Version 4 indexes the quarantine records (bucketQuarantine), each with
// the record that superseded it: listing the quarantine, and showing one
// record, had walked the whole decision log. An older store is indexed
// when it is opened.
//
// Version 5 keeps the number of cases in each status (bucketStatusN) and
// of active cases in each priority (bucketActiveN), and indexes the cases
// by requester, assignee and priority (bucketByRequester,
// bucketByAssignee, bucketByPriority): the counts /metrics reports on
// every scrape had walked the whole status index and read every active
// case, and a search for a customer's cases, an agent's list of theirs or
// the urgent ones read every case. An older store is counted and
// indexed when it is opened, and marked 5, so that an older caseintake,
// which would change cases without either, refuses it.
//
// Version 6 queues a notification as the change it tells of
// (Outgoing.Event), rendered when it is sent, not as the rendered
// message: rendering every notification in the intake's transaction was
// a tenth of a backlog's CPU and two fifths of what it wrote to the
// database. Rows queued before are sent as they were rendered. An older
// store is only marked 6, so that an older caseintake, which would send
// the new rows empty, refuses it. The pending escalations are indexed
// apart (bucketPendingUrgent), to be sent before the rest of the queue:
// in a backlog they had waited behind thousands of team notices.
const schemaVersion = 6

// DBFile is the database's name inside data_dir.
const DBFile = "caseintake.db"

// ErrLocked means another process (usually a running daemon) holds the database.
var ErrLocked = errors.New("database is locked by another process")

// ErrNotFound is returned for an unknown case.
var ErrNotFound = errors.New("not found")

// Store is the open database and raw-message directory under one data_dir.
type Store struct {
	db      *bolt.DB
	dir     string
	idKey   []byte
	rawDirs sync.Map // raw subdirectories known to exist
	packs   *packs
	pending rawPending // for SyncRaw
}

// Upgrade is an upgrade of an older store's schema that Open is about to
// make.
type Upgrade struct {
	From, To uint64
	// Cases is the highest case number: the upgrade reads every case (and
	// from before schema 4, every notification and decision), so its time
	// follows them, about half a minute a million cases.
	Cases uint64
}

// Option changes how Open opens the store.
type Option func(*openOptions)

type openOptions struct {
	upgrading func(Upgrade)
}

// OnUpgrade has Open call f before it upgrades an older store, so that a
// daemon can say why its start takes long. The upgrade is one transaction:
// stopped half way, it is made again from the start at the next Open.
func OnUpgrade(f func(Upgrade)) Option {
	return func(o *openOptions) { o.upgrading = f }
}

// Open opens (or creates) the store in dataDir. A second process gets an
// error wrapping ErrLocked within two seconds instead of waiting forever; a
// file that is not a caseintake database, or is cut short, is refused and
// left untouched (CheckFile).
func Open(dataDir string, opts ...Option) (*Store, error) {
	var o openOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := os.MkdirAll(filepath.Join(dataDir, rawDir), 0o750); err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", dataDir, err)
	}
	// A truncated file would make bbolt fault (SIGBUS) when it maps it.
	if err := CheckFile(dataDir); err != nil {
		return nil, err
	}
	path := filepath.Join(dataDir, DBFile)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("open %s: %w (is caseintake already running with this data_dir?)", path, ErrLocked)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("open %s: not a usable caseintake database (%v); it was left untouched: restore it from a backup or move it away to start empty", path, err)
	case err != nil:
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	var idKey []byte
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get([]byte("schema_version")); v != nil {
			switch got := binary.BigEndian.Uint64(v); {
			case got > schemaVersion:
				return fmt.Errorf("schema version %d, this caseintake understands up to %d: it was written by a newer caseintake; run that one, or restore a backup taken before the upgrade", got, schemaVersion)
			case got < schemaVersion:
				if o.upgrading != nil {
					o.upgrading(Upgrade{From: got, To: schemaVersion, Cases: tx.Bucket(bucketCases).Sequence()})
				}
				if got < 3 {
					if err := indexOutboxByCase(tx); err != nil {
						return fmt.Errorf("upgrade from schema version %d: index the outbox by case: %w", got, err)
					}
				}
				if got < 4 {
					if err := indexQuarantine(tx); err != nil {
						return fmt.Errorf("upgrade from schema version %d: index the quarantine records: %w", got, err)
					}
				}
				if got < 5 {
					if err := countCases(tx); err != nil {
						return fmt.Errorf("upgrade from schema version %d: count the cases: %w", got, err)
					}
				}
				// Every case index newer than the store, in one walk.
				if err := indexCases(tx, got); err != nil {
					return fmt.Errorf("upgrade from schema version %d: index the cases: %w", got, err)
				}
				if err := meta.Put([]byte("schema_version"), u64(schemaVersion)); err != nil {
					return err
				}
			}
		} else if err := meta.Put([]byte("schema_version"), u64(schemaVersion)); err != nil {
			return err
		}
		if v := meta.Get(keyMessageIDKey); v != nil {
			idKey = slices.Clone(v)
			return nil
		}
		idKey = make([]byte, messageIDKeySize)
		if _, err := rand.Read(idKey); err != nil {
			return fmt.Errorf("generate the Message-ID key: %w", err)
		}
		return meta.Put(keyMessageIDKey, idKey)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := sweepIncoming(dataDir); err != nil {
		db.Close()
		return nil, fmt.Errorf("raw store %s: clearing temp files left by a crash: %w", filepath.Join(dataDir, rawDir), err)
	}
	s := &Store{db: db, dir: dataDir, idKey: idKey}
	s.packs = &packs{dir: filepath.Join(dataDir, rawDir, packDir), limit: packLimit, rolled: func(dir string, retired *pack) {
		s.pending.addDirs(dir, filepath.Dir(dir))
		if retired != nil {
			s.pending.addPack(retired)
		}
	}}
	return s, nil
}

// keyMessageIDKey names, in the meta bucket, the key that signs the
// Message-IDs of our notifications (see notify.Renderer.SetMessageIDKey). It
// is generated on first start and lives in the database so that a backup
// carries it: replies to mail sent before a restore still thread.
var keyMessageIDKey = []byte("message_id_key")

const messageIDKeySize = 32

// MessageIDKey is the key that signs our notifications' Message-IDs.
func (s *Store) MessageIDKey() []byte { return slices.Clone(s.idKey) }

// Close closes the database.
func (s *Store) Close() error {
	s.packs.close()
	pending, _ := s.pending.take()
	s.packs.closeRetired(pending)
	return s.db.Close()
}

// Dir is the data directory.
func (s *Store) Dir() string { return s.dir }

// Check runs bbolt's consistency check and returns every problem found.
func (s *Store) Check() []error {
	var errs []error
	_ = s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return nil
	})
	return errs
}

// Update runs fn in one write transaction, committed (and fsync'd) when fn
// returns nil. fn must not do network I/O.
func (s *Store) Update(fn func(*Tx) error) error {
	return s.db.Update(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// View runs fn in a read-only transaction. Keep it short.
func (s *Store) View(fn func(*Tx) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// Tx is a transaction with typed accessors.
type Tx struct {
	tx *bolt.Tx
	// acks are the times (Unix nanoseconds, ascending) of the
	// acknowledgements in the global cap's window, read from the history
	// by the first AllAcksSince of the transaction and kept up to date by
	// RecordAck after it; acksRead says they were read.
	acks     []uint64
	acksRead bool
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, buf)
}

func getJSON(b *bolt.Bucket, key []byte, v any) (bool, error) {
	raw := b.Get(key)
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("decode %s/%x: %w", "record", key, err)
	}
	return true, nil
}

// joinKey builds index keys "a 0x00 b 0x00 c".
func joinKey(parts ...[]byte) []byte {
	var k []byte
	for i, p := range parts {
		if i > 0 {
			k = append(k, 0)
		}
		k = append(k, p...)
	}
	return k
}
