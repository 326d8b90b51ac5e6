package store

import (
	"errors"
	"fmt"
	"os"
	"sync"
)

// rawPending is what SyncRaw has to make durable: the packs appended to
// and the directories given new entries since the last SyncRaw. Syncing
// just these replaced a syncfs(2) of the whole file system, which also
// waited for whatever else lived there (on the bench machine, the mail
// server's folders: 0.7 s for the first batch of a drain).
type rawPending struct {
	// syncing serialises SyncRaw: one that found nothing pending must not
	// return while another is still syncing what it took.
	syncing sync.Mutex
	mu      sync.Mutex
	packs   map[*pack]bool
	dirs    map[string]bool
}

func (rp *rawPending) addPack(p *pack) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.packs == nil {
		rp.packs = map[*pack]bool{}
	}
	rp.packs[p] = true
}

func (rp *rawPending) addDirs(dirs ...string) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.dirs == nil {
		rp.dirs = map[string]bool{}
	}
	for _, d := range dirs {
		rp.dirs[d] = true
	}
}

// take empties the set and returns what it held.
func (rp *rawPending) take() (map[*pack]bool, map[string]bool) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	packs, dirs := rp.packs, rp.dirs
	rp.packs, rp.dirs = nil, nil
	return packs, dirs
}

// SyncRaw makes everything StageRaw and StageRawBytes wrote so far
// durable: one fdatasync per pack appended to (one, mostly, however many
// messages) and an fsync of each directory that got a new file. Should
// one fail, what it covered stays pending and the pack takes no more
// messages; the error names the file.
func (s *Store) SyncRaw() error {
	s.pending.syncing.Lock()
	defer s.pending.syncing.Unlock()
	packs, dirs := s.pending.take()
	var errs []error
	for p := range packs {
		if err := s.packs.sync(p); err != nil {
			s.pending.addPack(p)
			errs = append(errs, fmt.Errorf("raw store: sync pack %s: %w", p.f.Name(), err))
		}
	}
	for d := range dirs {
		if err := syncPath(d); err != nil {
			s.pending.addDirs(d)
			errs = append(errs, fmt.Errorf("raw store: sync directory %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// syncPath fsyncs the file or directory at path (for a directory: the
// entries made in it).
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// MakeDurable is SyncRaw for a batch about to be recorded: it also fails
// when one of refs lies in a pack that lost a write. SyncRaw reports such
// a loss once, to the sync that meets it, but a message staged into the
// pack before then can belong to a later batch. Nothing that names bytes
// MakeDurable failed for may be committed: the message is to be fetched
// and staged again.
func (s *Store) MakeDurable(refs []string) error {
	if err := s.SyncRaw(); err != nil {
		return err
	}
	for _, ref := range refs {
		if pr, ok := parsePackRef(ref); ok {
			if err := s.packs.lostErr(pr.id); err != nil {
				return fmt.Errorf("raw store: %s lies in pack %s, which lost a write: %w", ref, pr.id, err)
			}
		}
	}
	return nil
}
