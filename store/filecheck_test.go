package store

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckFileRefusesTruncatedDatabaseAndKeepsIt(t *testing.T) {
	dir := t.TempDir()
	if err := CheckFile(dir); err != nil {
		t.Fatalf("no database yet: %v", err)
	}
	st, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := CheckFile(dir); err != nil {
		t.Fatalf("fresh database refused: %v", err)
	}
	path := filepath.Join(dir, DBFile)
	good, _ := os.ReadFile(path)
	// The file runs past the pages in use (bbolt grows it ahead); a cut
	// is a truncation once it reaches into those pages.
	m, ok := readBoltMeta(good)
	if !ok {
		t.Fatal("fresh database has no readable header")
	}
	inUse := int(m.highPage) * int(m.pageSize)
	for _, size := range []int{inUse - 1, inUse / 2, 4096 + 100, 10} {
		cut := good[:size]
		if err := os.WriteFile(path, cut, 0o600); err != nil {
			t.Fatal(err)
		}
		err := CheckFile(dir)
		if size <= 10 {
			// Too short to carry a header: left to bbolt, which refuses it
			// without mapping it.
			if _, oerr := Open(dir); oerr == nil {
				t.Fatalf("a %d-byte database opened", size)
			}
		} else if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("cut to %d bytes: %v; want a refusal naming the file and the truncation", size, err)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, cut) {
			t.Fatalf("the %d-byte file was changed", size)
		}
	}
}
