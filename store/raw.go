package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

const rawDir = "raw"

// RawPrefix starts every raw reference: "sha256:<hex>".
const RawPrefix = "sha256:"

// StageRaw streams a message's exact bytes into the content-addressed raw
// store and returns its reference ("sha256:<hex>") and size. The file is
// in place but not yet durable: call SyncRaw before a transaction refers to
// the reference, so that one fsync covers a whole batch of messages.
// Writing the same bytes twice keeps one file.
func (s *Store) StageRaw(r io.Reader) (ref string, size int64, err error) {
	dir := filepath.Join(s.dir, rawDir)
	f, err := os.CreateTemp(dir, ".incoming-")
	if err != nil {
		return "", 0, fmt.Errorf("raw store %s: %w", dir, err)
	}
	tmp := f.Name()
	placed := false
	defer func() {
		if !placed {
			os.Remove(tmp)
		}
	}()
	h := sha256.New()
	size, err = io.Copy(io.MultiWriter(f, h), r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, fmt.Errorf("raw store: write %s: %w", tmp, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	final := s.rawPath(sum)
	if err := s.makeRawDir(final); err != nil {
		return "", 0, err
	}
	// A file already there is kept only when it holds these bytes: a crash
	// before SyncRaw can leave one cut short, which no decision refers to.
	if !holds(final, size, sum) {
		if err := os.Rename(tmp, final); err != nil {
			return "", 0, fmt.Errorf("raw store: %w", err)
		}
		placed = true
	}
	return RawPrefix + sum, size, nil
}

// StageRawBytes is StageRaw for a message held in memory. Knowing the
// hash before writing, it creates the file under its final name, which
// saves the temporary file, the rename and their directory updates: the
// raw store's cost per message in a backlog. The same rule holds: a file
// already there is kept only when it holds these bytes.
func (s *Store) StageRawBytes(b []byte) (ref string, err error) {
	h := sha256.Sum256(b)
	sum := hex.EncodeToString(h[:])
	final := s.rawPath(sum)
	if err := s.makeRawDir(final); err != nil {
		return "", err
	}
	err = createWith(final, b)
	if errors.Is(err, unix.EEXIST) && holds(final, int64(len(b)), sum) {
		err = nil
	}
	if err != nil {
		// Cut short by a crash, being written by a concurrent stage of the
		// same bytes, or a write error: replace it whole, atomically, or
		// report what failed.
		if ref, _, err = s.StageRaw(bytes.NewReader(b)); err != nil {
			return "", err
		}
	}
	return RawPrefix + sum, nil
}

// createWith creates path, which must not exist, holding b. It calls the
// system directly: os.OpenFile's poller set-up is a third of the cost of
// a small file. A file it could not fill is removed.
func createWith(path string, b []byte) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	for len(b) > 0 && err == nil {
		var n int
		n, err = unix.Write(fd, b)
		if n > 0 { // -1 on error
			b = b[n:]
		}
		if err == unix.EINTR {
			err = nil
		}
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// makeRawDir makes sure the subdirectory that will hold path exists.
func (s *Store) makeRawDir(path string) error {
	sub := filepath.Dir(path)
	if _, ok := s.rawDirs.Load(sub); ok {
		return nil
	}
	if err := os.MkdirAll(sub, 0o750); err != nil {
		return fmt.Errorf("raw store: %w", err)
	}
	s.rawDirs.Store(sub, true)
	return nil
}

// SyncRaw makes every file StageRaw has put in place so far durable, with
// its directory entry: one syncfs(2) of the file system holding the raw
// store, whatever the number of files.
func (s *Store) SyncRaw() error {
	if err := unix.Syncfs(int(s.rawFS.Fd())); err != nil {
		return fmt.Errorf("raw store %s: sync: %w", s.rawFS.Name(), err)
	}
	return nil
}

// holds reports whether the file at path has size bytes hashing to sum.
func holds(path string, size int64, sum string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.Size() != size {
		return false
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false
	}
	return hex.EncodeToString(h.Sum(nil)) == sum
}

// OpenRaw opens the stored bytes of ref for reading.
func (s *Store) OpenRaw(ref string) (*os.File, error) {
	sum, ok := strings.CutPrefix(ref, RawPrefix)
	if !ok || len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("raw store: bad reference %q", ref)
	}
	return os.Open(s.rawPath(sum))
}

// sweepIncoming removes temp files a crash left in the raw directory. Open
// calls it once it holds the database lock, so no writer is active.
func sweepIncoming(dataDir string) error {
	left, err := filepath.Glob(filepath.Join(dataDir, rawDir, ".incoming-*"))
	if err != nil {
		return err
	}
	for _, f := range left {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func (s *Store) rawPath(sum string) string {
	return filepath.Join(s.dir, rawDir, sum[:2], sum)
}
