package vfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestOSBasics checks the real implementation: write, fdatasync, read
// back, rename and remove with directory syncs, and the directory lock.
func TestOSBasics(t *testing.T) {
	fs := OS()
	dir := t.TempDir()
	f, err := fs.Create(filepath.Join(dir, "a"))
	must(t, err)
	write(t, f, "data")
	must(t, f.Sync())
	must(t, fs.Rename(filepath.Join(dir, "a"), filepath.Join(dir, "b")))
	must(t, fs.SyncDir(dir))
	buf := make([]byte, 4)
	if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != "data" {
		t.Fatalf("ReadAt %q %v", buf, err)
	}
	must(t, f.Close())
	names, err := fs.ReadDir(dir)
	if err != nil || len(names) != 1 || names[0] != "b" {
		t.Fatalf("ReadDir %v %v", names, err)
	}
	lk, err := fs.Lock(dir)
	must(t, err)
	if _, err := fs.Lock(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v", err)
	}
	must(t, lk.Close())
	lk, err = fs.Lock(dir)
	must(t, err)
	must(t, lk.Close())
	must(t, fs.Remove(filepath.Join(dir, "b")))
	if _, err := fs.Stat(filepath.Join(dir, "b")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat removed: %v", err)
	}
}
