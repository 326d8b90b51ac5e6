package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Messages held in memory are appended to pack files, raw/packs/<id>.pack:
// creating a file per message cost more kernel time than anything else
// the raw store did (70-250 µs a file on the bench machine, against ~10 µs
// to append 40 KB). A reference says where the bytes lie:
// "pack:<id>:<offset>:<length>". Stores written before hashing was dropped
// also hold "sha256:<hex>@<id>:<offset>:<length>", which name the content
// too.
//
// A pack is only ever appended to, at offsets handed out under a lock and
// written without it, so helpers write at once. Each process starts a new
// pack: what a crash left at the end of the last one (or in a region a
// failed write reserved) is never referred to, because SyncRaw runs
// before the transaction that records a reference. A pack is closed for
// writing at packLimit bytes.

// PackPrefix starts the reference of a message stored in a pack.
const PackPrefix = "pack:"

const (
	packDir   = "packs"
	packLimit = 128 << 20
	// writebackChunk is how much is written to a pack before the kernel
	// is asked to start writing it out (sync_file_range WRITE, which does
	// not wait), as RocksDB's bytes_per_sync and PostgreSQL's
	// backend_flush_after do: SyncRaw's fdatasync then waits for the tail
	// of a batch instead of all of it (21 MB, 27 ms a batch on the bench
	// machine), on the path of the batch's commit.
	writebackChunk = 4 << 20
)

// pack is a pack being appended to, or one retired but not yet synced.
type pack struct {
	id      string
	f       *os.File
	size    int64          // bytes handed out
	writers sync.WaitGroup // writes in progress
	// Under packs.mu: the end of what writeback was last started up to.
	writeback int64
	// Under packs.mu: retired is set when the pack takes no more
	// messages, closed once it was synced and closed after that.
	retired, closed bool
}

// packs hands out room in the current pack.
type packs struct {
	dir   string
	limit int64 // packLimit; tests make it small
	// rolled is told of a rollover: the new pack's directory entry and the
	// retired pack both wait for the next SyncRaw (which closes the
	// retired one, even when every byte of it was synced already).
	rolled func(dir string, retired *pack)
	mu     sync.Mutex
	cur    *pack
}

// reserve returns the pack and offset where n bytes go; the caller writes
// them and calls p.writers.Done.
func (ps *packs) reserve(n int64) (*pack, int64, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.cur == nil || (ps.cur.size > 0 && ps.cur.size+n > ps.limit) {
		p, err := ps.create()
		if err != nil {
			return nil, 0, err
		}
		old := ps.cur
		if old != nil {
			old.retired = true
		}
		ps.cur = p
		ps.rolled(ps.dir, old)
	}
	p, off := ps.cur, ps.cur.size
	p.size += n
	p.writers.Add(1)
	return p, off, nil
}

// written is told that a write to p ended at end (p.writers still counts
// it). Once writebackChunk bytes were written since writeback was last
// started, it starts writeback of them. Writes finish out of order: a page
// still being written when writeback started is written by the next start
// or by SyncRaw. The start is advice, so its error is not reported: an
// I/O error shows again at SyncRaw's fdatasync.
func (ps *packs) written(p *pack, end int64) {
	ps.mu.Lock()
	from := p.writeback
	start := end-from >= writebackChunk
	if start {
		p.writeback = end
	}
	ps.mu.Unlock()
	if start {
		_ = unix.SyncFileRange(int(p.f.Fd()), from, end-from, unix.SYNC_FILE_RANGE_WRITE)
	}
}

// create makes a new, empty pack named after the time in hex nanoseconds
// (so that names sort in the order the packs were started, clock
// permitting); O_EXCL keeps a name from ever being reused.
func (ps *packs) create() (*pack, error) {
	if err := os.MkdirAll(ps.dir, 0o750); err != nil {
		return nil, fmt.Errorf("raw store: %w", err)
	}
	for t := time.Now().UnixNano(); ; t++ {
		id := fmt.Sprintf("%016x", t)
		f, err := os.OpenFile(filepath.Join(ps.dir, id+".pack"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("raw store: new pack: %w", err)
		}
		return &pack{id: id, f: f}, nil
	}
}

// sync makes what was written to p durable. A retired pack is synced once
// its last writes are done, then closed: a writer marks the pack pending
// before it is done, so whatever pending set names a closed pack was
// covered by the sync before the close.
func (ps *packs) sync(p *pack) error {
	ps.mu.Lock()
	retired, closed := p.retired, p.closed
	ps.mu.Unlock()
	if closed {
		return nil
	}
	if retired {
		p.writers.Wait()
	}
	if err := unix.Fdatasync(int(p.f.Fd())); err != nil {
		// Linux may drop the pages it failed to write: retire the pack
		// so that no new message lands in it.
		ps.mu.Lock()
		if ps.cur == p {
			ps.cur = nil
			p.retired = true
		}
		ps.mu.Unlock()
		return err
	}
	if retired {
		ps.mu.Lock()
		p.closed = true
		ps.mu.Unlock()
		return p.f.Close()
	}
	return nil
}

// closeRetired closes the retired packs among those pending a sync (the
// store is closing without one).
func (ps *packs) closeRetired(pending map[*pack]bool) {
	for p := range pending {
		ps.mu.Lock()
		open := p.retired && !p.closed
		p.closed = p.closed || open
		ps.mu.Unlock()
		if open {
			p.writers.Wait()
			p.f.Close()
		}
	}
}

// close waits for writes in progress and closes the current pack.
func (ps *packs) close() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.cur != nil {
		ps.cur.writers.Wait()
		ps.cur.f.Close()
		ps.cur = nil
	}
}

// packRef is where a pack reference points.
type packRef struct {
	sum       string // only in references of the older form
	id        string
	off, size int64
}

// parsePackRef reads "pack:<id>:<offset>:<length>" or the older
// "sha256:<hex>@<id>:<offset>:<length>"; ok is false for a reference of any
// other form.
func parsePackRef(ref string) (r packRef, ok bool) {
	loc, isPack := strings.CutPrefix(ref, PackPrefix)
	if !isPack {
		head, rest, found := strings.Cut(ref, "@")
		sum, isSum := strings.CutPrefix(head, RawPrefix)
		if !found || !isSum || !isHex(sum, 64) {
			return r, false
		}
		r.sum, loc = sum, rest
	}
	parts := strings.Split(loc, ":")
	if len(parts) != 3 || !isHex(parts[0], 16) {
		return r, false
	}
	off, err1 := strconv.ParseInt(parts[1], 10, 64)
	size, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || off < 0 || size < 0 {
		return r, false
	}
	r.id, r.off, r.size = parts[0], off, size
	return r, true
}

func (r packRef) String() string {
	if r.sum != "" {
		return fmt.Sprintf("%s%s@%s:%d:%d", RawPrefix, r.sum, r.id, r.off, r.size)
	}
	return fmt.Sprintf("%s%s:%d:%d", PackPrefix, r.id, r.off, r.size)
}

// isHex reports whether s is n lower-case hex digits.
func isHex(s string, n int) bool {
	return len(s) == n && strings.Trim(s, "0123456789abcdef") == ""
}
