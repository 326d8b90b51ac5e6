package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

const rawDir = "raw"

// RawPrefix starts every raw reference: "sha256:<hex>".
const RawPrefix = "sha256:"

// WriteRaw streams a message's exact bytes into the content-addressed raw
// store and returns its reference ("sha256:<hex>") and size. It returns only
// once the file and its directory are fsync'd, so a transaction that refers
// to the reference afterwards never points at nothing. Writing the same
// bytes twice keeps one file.
func (s *Store) WriteRaw(r io.Reader) (ref string, size int64, err error) {
	dir := filepath.Join(s.dir, rawDir)
	f, err := os.CreateTemp(dir, ".incoming-")
	if err != nil {
		return "", 0, fmt.Errorf("raw store %s: %w", dir, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	h := sha256.New()
	size, err = io.Copy(io.MultiWriter(f, h), r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, fmt.Errorf("raw store: write %s: %w", tmp, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	final := s.rawPath(sum)
	sub := filepath.Dir(final)
	// The top directory needs an fsync only when it gained a subdirectory;
	// the temp file's old entry there need not be durable (Open sweeps
	// leftovers), which saves one fsync per message.
	syncs := []string{sub}
	if _, err := os.Stat(sub); errors.Is(err, os.ErrNotExist) {
		syncs = append(syncs, dir)
	}
	if err := os.MkdirAll(sub, 0o750); err != nil {
		return "", 0, fmt.Errorf("raw store: %w", err)
	}
	if _, err := os.Stat(final); err == nil {
		// Same bytes already stored; sync the entry in case its writer
		// has not yet.
		syncs = syncs[:1]
	} else if err := os.Rename(tmp, final); err != nil {
		return "", 0, fmt.Errorf("raw store: %w", err)
	}
	for _, d := range syncs {
		if err := syncDir(d); err != nil {
			return "", 0, fmt.Errorf("raw store: fsync %s: %w", d, err)
		}
	}
	return RawPrefix + sum, size, nil
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

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
