package vfs

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// OS returns the real file system.
func OS() FS { return osFS{} }

type osFS struct{}

// IsOS reports whether fs is the real file system returned by OS. Work
// that may run in the background, such as preparing files ahead of use,
// runs in the background only there: on any other FS (FaultFS above all)
// it runs inline, so that what a crash finds depends on the calls made,
// not on goroutine timing.
func IsOS(fs FS) bool {
	_, ok := fs.(osFS)
	return ok
}

type osFile struct{ *os.File }

// Sync is fdatasync where the platform has it (see sync_*.go).
func (f osFile) Sync() error { return datasync(f.File) }

// WriteAtSync writes and syncs in one request where the platform can
// (see sync_*.go).
func (f osFile) WriteAtSync(bufs [][]byte, off int64) (int, error) {
	return writeAtSync(f.File, bufs, off)
}

// WriteBack writes the file's dirty pages out and waits for them, where
// the platform can without a full sync (see sync_*.go).
func (f osFile) WriteBack() error { return writeBack(f.File) }

func (osFS) Create(name string) (File, error) {
	return osFS{}.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Open(name string) (File, error) {
	return osFS{}.OpenFile(name, os.O_RDONLY, 0)
}

func (osFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

func (osFS) Remove(name string) error { return os.Remove(name) }

func (osFS) MkdirAll(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }

func (osFS) Stat(name string) (os.FileInfo, error) { return os.Stat(name) }

func (osFS) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	sort.Strings(names)
	return names, nil
}

// SyncDir fsyncs the directory itself, which is what makes a new, renamed
// or removed name survive a crash.
func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := d.Sync()
	cerr := d.Close()
	if serr != nil {
		return fmt.Errorf("vfs: sync dir %s: %w", dir, serr)
	}
	return cerr
}

// Lock uses flock on dir/LOCK. flock locks belong to the open file
// description, so a second Lock from the same process fails too, and the
// kernel releases the lock when the process dies.
func (osFS) Lock(dir string) (io.Closer, error) {
	name := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("vfs: lock %s: %w", name, err)
	}
	return f, nil
}

// writeAtThenSync is WriteAtSync made of plain calls.
func writeAtThenSync(f *os.File, bufs [][]byte, off int64) (int, error) {
	n := 0
	for _, b := range bufs {
		w, err := f.WriteAt(b, off+int64(n))
		n += w
		if err != nil {
			return n, err
		}
	}
	return n, datasync(f)
}
