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

// RawPrefix starts the reference of a message stored in a file of its own
// ("sha256:<hex>"), and every content key.
const RawPrefix = "sha256:"

// StageRaw streams a message's exact bytes into the content-addressed raw
// store and returns its reference ("sha256:<hex>") and size. The file's
// bytes are synced before it is put in place (a message this big costs
// more to write than to sync); its directory entry is durable only after
// SyncRaw, which must come before a transaction refers to the reference.
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
	if err == nil {
		// A big message is a file of its own: synced now, its directory
		// entry by SyncRaw.
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
	if err := s.makeRawDir(final); err != nil {
		return "", 0, err
	}
	// A file already there is kept only when it holds these bytes: a crash
	// before SyncRaw can leave one cut short, which no decision refers to.
	if holds(final, size, sum) {
		// Written by a process that may have died before its SyncRaw.
		if err := syncPath(final); err != nil {
			return "", 0, fmt.Errorf("raw store: %w", err)
		}
	} else {
		if err := os.Rename(tmp, final); err != nil {
			return "", 0, fmt.Errorf("raw store: %w", err)
		}
		placed = true
	}
	s.pending.addDirs(filepath.Dir(final))
	return RawPrefix + sum, size, nil
}

// StageRawBytes is StageRaw for a message held in memory: it appends the
// bytes to the current pack (see pack.go) and returns a reference to where
// they lie. They reach the file once their chunk is full, or at SyncRaw:
// the reference can be opened, and is durable, only after SyncRaw, and a
// failed write shows at MakeDurable. The reference names no content: hashing every
// message cost more CPU than writing it, and only a message without a
// Message-ID needs its content key (ContentKeyOf). Writing the same bytes
// twice stores them twice.
func (s *Store) StageRawBytes(b []byte) (ref string, err error) {
	p, off, full, err := s.packs.add(b)
	if err != nil {
		return "", err
	}
	for _, w := range full {
		s.packs.write(w.p, w.c)
	}
	s.pending.addPack(p)
	return packRef{id: p.id, off: off, size: int64(len(b))}.String(), nil
}

// ContentKeyOf is the content key of a message's bytes, "sha256:<hex>":
// the key of a message without a Message-ID.
func ContentKeyOf(b []byte) string {
	sum := sha256.Sum256(b)
	return RawPrefix + hex.EncodeToString(sum[:])
}

// ContentKey is the content key of the bytes stored under ref: the sum the
// reference names, or else the SHA-256 of the bytes read back.
func (s *Store) ContentKey(ref string) (string, error) {
	if pr, ok := parsePackRef(ref); ok && pr.sum != "" {
		return RawPrefix + pr.sum, nil
	}
	if sum, ok := strings.CutPrefix(ref, RawPrefix); ok && isHex(sum, 64) {
		return ref, nil
	}
	r, err := s.OpenRaw(ref)
	if err != nil {
		return "", err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", fmt.Errorf("raw store: read %s: %w", ref, err)
	}
	return RawPrefix + hex.EncodeToString(h.Sum(nil)), nil
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
	s.pending.addDirs(filepath.Dir(sub))
	s.rawDirs.Store(sub, true)
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

// Raw is a stored message's bytes, from a file of its own or a section
// of a pack.
type Raw struct {
	*io.SectionReader
	f *os.File
}

// Close closes the underlying file.
func (r *Raw) Close() error { return r.f.Close() }

// OpenRaw opens the stored bytes of ref for reading.
func (s *Store) OpenRaw(ref string) (*Raw, error) {
	if pr, ok := parsePackRef(ref); ok {
		f, err := os.Open(filepath.Join(s.dir, rawDir, packDir, pr.id+".pack"))
		if err != nil {
			return nil, fmt.Errorf("raw store: %w", err)
		}
		if fi, err := f.Stat(); err != nil || fi.Size() < pr.off+pr.size {
			f.Close()
			if err == nil {
				err = fmt.Errorf("pack %s holds %d bytes, the reference needs %d: truncated", pr.id, fi.Size(), pr.off+pr.size)
			}
			return nil, fmt.Errorf("raw store: %s: %w", ref, err)
		}
		return &Raw{io.NewSectionReader(f, pr.off, pr.size), f}, nil
	}
	sum, ok := strings.CutPrefix(ref, RawPrefix)
	if !ok || !isHex(sum, 64) {
		return nil, fmt.Errorf("raw store: bad reference %q", ref)
	}
	f, err := os.Open(s.rawPath(sum))
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Raw{io.NewSectionReader(f, 0, fi.Size()), f}, nil
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
