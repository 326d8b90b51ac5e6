package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

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
// A pack takes messages into chunks held in memory (chunkSize each) and
// writes a chunk when it is full, and the one being filled at SyncRaw. It
// writes them with O_DIRECT where the file system allows: through the page
// cache, a drain's raw bytes cost the daemon a tenth of its CPU, and the
// kernel's writeback more beside it (430 MB in 43 KB writes: 0.3-1.2 s of
// CPU through the page cache, 0.05 s direct in 1 MB chunks). A direct
// write must start and end on directAlign boundaries, so the chunk SyncRaw
// writes early is padded with zeros to one, and the next message starts
// there: a few KB after each sync that no reference covers.
//
// Messages are copied into chunks under a lock; chunks are written
// without it, by whoever filled them, so helpers write at once. Each
// process starts a new pack: what a crash left at the end of the last one
// is never referred to, because SyncRaw runs before the transaction that
// records a reference. A pack is closed for writing at packLimit bytes.

// PackPrefix starts the reference of a message stored in a pack.
const PackPrefix = "pack:"

const (
	packDir   = "packs"
	packLimit = 128 << 20
	// chunkSize is how much of a pack is held in memory before it is
	// written. Big enough that a write costs little per byte, small
	// enough that the memory it takes stays small (at most maxFreeChunks
	// kept for reuse, and one per helper writing).
	chunkSize     = 1 << 20
	maxFreeChunks = 4
	// directAlign is the alignment of a direct write's offset, length and
	// memory: the logical block size of nearly every disk (512 or 4096).
	directAlign = 4096
)

// pack is a pack being appended to, or one retired but not yet synced.
type pack struct {
	id     string
	f      *os.File
	direct atomic.Bool // f writes past the page cache (O_DIRECT)
	// Under packs.mu:
	size    int64           // bytes handed out (and the padding after syncs)
	filling *chunk          // the chunk messages are copied into, if any
	writing map[*chunk]bool // chunks being written
	werr    error           // a failed chunk write, until sync reports it
	// retired is set when the pack takes no more messages, closed once
	// it was synced and closed after that.
	retired, closed bool
}

// chunk is a piece of a pack in memory.
type chunk struct {
	buf  []byte        // chunkSize bytes at a directAlign-aligned address
	off  int64         // where buf starts in the pack (aligned)
	n    int           // bytes taken
	done chan struct{} // closed once written
}

// chunkWrite is a chunk to write to its pack.
type chunkWrite struct {
	p *pack
	c *chunk
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
	free   [][]byte // chunk buffers to reuse
	// lost holds, by pack id, why a write or sync of that pack failed.
	// It outlives the sync that reported the failure: messages of a
	// later batch may lie in the same pack.
	lost map[string]error
}

// add copies b into the current pack (a new one when b does not fit) and
// returns where it lies and the chunks it filled, for the caller to write
// (ps.write) without the lock.
func (ps *packs) add(b []byte) (p *pack, off int64, full []chunkWrite, err error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	n := int64(len(b))
	if ps.cur == nil || (ps.cur.size > 0 && ps.cur.size+n > ps.limit) {
		np, err := ps.create()
		if err != nil {
			return nil, 0, nil, err
		}
		old := ps.cur
		if old != nil {
			old.retired = true
			// Its last chunk is written now rather than held until the
			// sync.
			if c := ps.detach(old); c != nil {
				full = append(full, chunkWrite{old, c})
			}
		}
		ps.cur = np
		ps.rolled(ps.dir, old)
	}
	p, off = ps.cur, ps.cur.size
	p.size += n
	for pos := off; len(b) > 0; {
		if p.filling == nil {
			p.filling = &chunk{buf: ps.buffer(), off: pos}
		}
		c := p.filling
		k := copy(c.buf[c.n:], b)
		c.n += k
		b = b[k:]
		pos += int64(k)
		if c.n == len(c.buf) {
			p.filling = nil
			ps.startWrite(p, c)
			full = append(full, chunkWrite{p, c})
		}
	}
	return p, off, full, nil
}

// buffer returns a chunk buffer, reused if one is free. Under ps.mu.
func (ps *packs) buffer() []byte {
	if n := len(ps.free); n > 0 {
		b := ps.free[n-1]
		ps.free = ps.free[:n-1]
		return b
	}
	b := make([]byte, chunkSize+directAlign)
	if r := int(uintptr(unsafe.Pointer(&b[0])) % directAlign); r != 0 {
		b = b[directAlign-r:]
	}
	return b[:chunkSize:chunkSize]
}

// detach takes p's partly filled chunk out to be written, padded to the
// next directAlign boundary, where the pack goes on. Under ps.mu.
func (ps *packs) detach(p *pack) *chunk {
	c := p.filling
	if c == nil {
		return nil
	}
	end := (c.n + directAlign - 1) &^ (directAlign - 1)
	clear(c.buf[c.n:end]) // a reused buffer holds an older chunk's bytes
	c.n = end
	p.size = c.off + int64(end)
	p.filling = nil
	ps.startWrite(p, c)
	return c
}

// startWrite counts c as being written. Under ps.mu.
func (ps *packs) startWrite(p *pack, c *chunk) {
	c.done = make(chan struct{})
	if p.writing == nil {
		p.writing = map[*chunk]bool{}
	}
	p.writing[c] = true
}

// write writes c to p. A direct write the file system refuses
// (alignment) is done through the page cache instead, from then on. A
// failure retires the pack and is reported by its next sync.
func (ps *packs) write(p *pack, c *chunk) {
	_, err := p.f.WriteAt(c.buf[:c.n], c.off)
	if errors.Is(err, syscall.EINVAL) && p.direct.Load() {
		if setDirect(p.f, false) == nil {
			p.direct.Store(false)
			_, err = p.f.WriteAt(c.buf[:c.n], c.off)
		}
	}
	if err == nil && !p.direct.Load() {
		// Writeback starts now, as RocksDB's bytes_per_sync does: the
		// sync then waits for the last chunk rather than all of them.
		// It is advice: an I/O error shows again at the sync.
		_ = unix.SyncFileRange(int(p.f.Fd()), c.off, int64(c.n), unix.SYNC_FILE_RANGE_WRITE)
	}
	ps.mu.Lock()
	delete(p.writing, c)
	if err != nil {
		err = fmt.Errorf("write %d bytes at offset %d: %w", c.n, c.off, err)
		p.werr = errors.Join(p.werr, err)
		ps.retire(p, err)
	}
	if len(ps.free) < maxFreeChunks {
		ps.free = append(ps.free, c.buf)
	}
	c.buf = nil
	ps.mu.Unlock()
	close(c.done)
}

// retire takes p out of use after a failed write or sync (err): Linux may
// drop the pages it failed to write, so no new message lands in it, and
// none already in it is taken for durable. Under ps.mu.
func (ps *packs) retire(p *pack, err error) {
	if ps.cur == p {
		ps.cur = nil
	}
	p.retired = true
	if ps.lost == nil {
		ps.lost = map[string]error{}
	}
	if ps.lost[p.id] == nil { // the first failure; a sync repeats a write's
		ps.lost[p.id] = err
	}
}

// lostErr is why pack id lost bytes, or nil.
func (ps *packs) lostErr(id string) error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.lost[id]
}

// setDirect turns O_DIRECT on or off for f.
func setDirect(f *os.File, on bool) error {
	fd := f.Fd()
	fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if on {
		fl |= unix.O_DIRECT
	} else {
		fl &^= unix.O_DIRECT
	}
	_, err = unix.FcntlInt(fd, unix.F_SETFL, fl)
	return err
}

// create makes a new, empty pack named after the time in hex nanoseconds
// (so that names sort in the order the packs were started, clock
// permitting); O_EXCL keeps a name from ever being reused. It writes
// directly where the file system takes O_DIRECT.
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
		p := &pack{id: id, f: f}
		p.direct.Store(setDirect(f, true) == nil)
		return p, nil
	}
}

// waitWrites waits for p's chunks being written. Under ps.mu, which it
// releases while it waits.
func (ps *packs) waitWrites(p *pack) {
	for len(p.writing) > 0 {
		var c *chunk
		for c = range p.writing {
			break
		}
		ps.mu.Unlock()
		<-c.done
		ps.mu.Lock()
	}
}

// sync makes what was copied into p durable: it writes the chunk being
// filled, waits for the chunks being written, and fdatasyncs. A retired
// pack is closed after that: a writer marks the pack pending after it
// copied its message, so whatever pending set names a closed pack was
// covered by the sync before the close.
func (ps *packs) sync(p *pack) error {
	ps.mu.Lock()
	if p.closed {
		ps.mu.Unlock()
		return nil
	}
	// Only a pack retired before this sync began may be closed by it: a
	// rollover that retires it later writes the pack's last chunk
	// (filled after this began) and makes it pending for the next sync,
	// which closes it.
	retired := p.retired
	c := ps.detach(p)
	// Chunks filled from now on are the next sync's; those being written
	// were filled before this one began.
	var waits []chan struct{}
	for w := range p.writing {
		if w != c {
			waits = append(waits, w.done)
		}
	}
	ps.mu.Unlock()
	if c != nil {
		ps.write(p, c)
	}
	for _, w := range waits {
		<-w
	}
	ps.mu.Lock()
	err := p.werr
	p.werr = nil
	ps.mu.Unlock()
	if err == nil {
		err = unix.Fdatasync(int(p.f.Fd()))
	}
	if err != nil {
		ps.mu.Lock()
		ps.retire(p, err)
		ps.mu.Unlock()
		return err
	}
	if retired {
		// Nothing is copied into a pack retired before this began: its
		// last writes were waited for above.
		ps.mu.Lock()
		p.closed = true
		ps.mu.Unlock()
		return p.f.Close()
	}
	return nil
}

// closeRetired closes the retired packs among those pending a sync (the
// store is closing without one): what was not synced is never referred
// to.
func (ps *packs) closeRetired(pending map[*pack]bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for p := range pending {
		if p.retired && !p.closed {
			p.closed = true
			ps.waitWrites(p)
			p.f.Close()
		}
	}
}

// close waits for writes in progress and closes the current pack; what
// was not synced is dropped.
func (ps *packs) close() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.cur; p != nil {
		ps.cur = nil
		p.retired, p.closed = true, true
		p.filling = nil
		ps.waitWrites(p)
		p.f.Close()
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
