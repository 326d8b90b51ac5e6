package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
)

// bbolt's on-disk meta page (go.etcd.io/bbolt/internal/common): a 16-byte
// page header, then magic, version, page size, flags, root bucket (root
// page, sequence), freelist page, high-water page id, txid, checksum
// (FNV-64a of the fields before it), all in native (little-endian on the
// platforms we ship) byte order.
const (
	boltMagic      = 0xED0CDAED
	boltPageHeader = 16
	boltMetaSum    = 56 // bytes of meta covered by the checksum
)

type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	highPage uint64
	txid     uint64
}

func readBoltMeta(b []byte) (boltMeta, bool) {
	if len(b) < boltPageHeader+boltMetaSum+8 {
		return boltMeta{}, false
	}
	m := b[boltPageHeader:]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != 2 {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:boltMetaSum])
	if h.Sum64() != le.Uint64(m[boltMetaSum:]) {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: le.Uint32(m[8:]), root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]),
		highPage: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
}

// CheckFile looks at the database file in dataDir before bbolt maps it: a
// file cut short (a copy interrupted, a full disk at some earlier time)
// makes bbolt fault on a memory access (SIGBUS), which no recover catches,
// so it must be refused before Open. A missing file is fine (Open creates
// it); anything else bbolt itself reports is left to Open. The file is
// only read.
func CheckFile(dataDir string) error {
	path := filepath.Join(dataDir, DBFile)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	refuse := func(why string) error {
		return fmt.Errorf("open %s: not a usable caseintake database (%s); it was left untouched: restore it from a backup or move it away to start empty", path, why)
	}
	if fi.Size() == 0 {
		return refuse("the file is empty")
	}
	head := make([]byte, 4096)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("open %s: %w", path, err)
	}
	m0, ok0 := readBoltMeta(head[:n])
	var m1 boltMeta
	ok1 := false
	if ok0 && m0.pageSize >= 512 && m0.pageSize <= 1<<16 {
		second := make([]byte, boltPageHeader+boltMetaSum+8)
		if _, err := f.ReadAt(second, int64(m0.pageSize)); err == nil {
			m1, ok1 = readBoltMeta(second)
		}
	}
	if !ok0 && !ok1 {
		return nil // not recognisably bbolt: Open says so (ErrInvalid) without mapping it
	}
	m := m0
	if !ok0 || (ok1 && m1.txid > m0.txid) {
		m = m1
	}
	need := int64(m.highPage) * int64(m.pageSize)
	if m.pageSize == 0 || need <= 0 || m.root >= m.highPage || (m.freelist >= m.highPage && m.freelist != ^uint64(0)) {
		return refuse("its header is inconsistent")
	}
	if fi.Size() < need {
		return refuse(fmt.Sprintf("the file is %d bytes but its header says %d: truncated", fi.Size(), need))
	}
	return nil
}
