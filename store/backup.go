package store

import (
	"io"

	bolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the database to w from one read
// transaction, while the daemon keeps working, and returns its size. start,
// if set, is told the size first (for a Content-Length). The raw-message
// directory is not included: it only grows, so a file copy of it taken after
// the backup holds everything the backup refers to.
func (s *Store) Backup(w io.Writer, start func(size int64)) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		if start != nil {
			start(tx.Size())
		}
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}
