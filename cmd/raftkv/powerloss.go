//go:build powerloss

// The powerloss build is a test build for test/cluster: the member's WAL and
// snapshots live on a file layer that keeps every write in memory until the
// file is synced, and on SIGUSR1 the process drops what is unsynced and exits
// at once, as if the power went. kill -9 alone cannot show this: the kernel
// keeps a killed process's unsynced writes. Never ship this build.
package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/raftkv/raftkv/storage/vfs"
)

// powerLossExitCode is the exit status after a simulated power loss.
const powerLossExitCode = 86

func init() {
	fs := &powerLossFS{real: vfs.OS(), open: map[string]*powerLossFile{}, undo: map[string][]func(){}}
	fileSystem = fs
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1)
	go func() {
		<-sigs
		fs.powerLoss()
	}()
}

// powerLossFS buffers file writes until Sync and remembers the creates and
// renames not yet made durable by SyncDir. One mutex covers everything:
// a sync holds it while it writes and syncs, so a power loss happens either
// before or after a whole Sync, or during none.
type powerLossFS struct {
	real vfs.FS
	mu   sync.Mutex
	open map[string]*powerLossFile // open files by clean name, for Stat
	// undo holds, per directory, what to do to forget the creates and
	// renames since its last SyncDir (in reverse order of application).
	undo map[string][]func()
}

// powerLoss undoes the directory changes not synced and exits; buffered
// writes die with the process.
func (fs *powerLossFS) powerLoss() {
	fs.mu.Lock() // never released: the process ends here
	for _, fns := range fs.undo {
		for i := len(fns) - 1; i >= 0; i-- {
			fns[i]()
		}
	}
	fmt.Fprintln(os.Stderr, "powerloss: dropping unsynced writes and exiting")
	os.Exit(powerLossExitCode)
}

func (fs *powerLossFS) noteUndoLocked(name string, fn func()) {
	dir := filepath.Dir(filepath.Clean(name))
	fs.undo[dir] = append(fs.undo[dir], fn)
}

func (fs *powerLossFS) Create(name string) (vfs.File, error) {
	return fs.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
}

func (fs *powerLossFS) Open(name string) (vfs.File, error) {
	return fs.OpenFile(name, os.O_RDONLY, 0)
}

func (fs *powerLossFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	_, statErr := os.Stat(name)
	existed := statErr == nil
	// O_APPEND is emulated: WriteAt on the real file needs it off. O_TRUNC
	// on an existing file is applied at once (a simplification: a
	// truncation is durable without a sync here).
	f, err := fs.real.OpenFile(name, flag&^os.O_APPEND, perm)
	if err != nil {
		return nil, err
	}
	wa, ok := f.(io.WriterAt)
	if !ok {
		f.Close()
		return nil, fmt.Errorf("powerloss: %s: the real file has no WriteAt", name)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !existed && flag&os.O_CREATE != 0 {
		fs.noteUndoLocked(name, func() { os.Remove(name) })
	}
	pf := &powerLossFile{fs: fs, f: f, wa: wa, name: filepath.Clean(name),
		appendMode: flag&os.O_APPEND != 0, size: st.Size()}
	fs.open[pf.name] = pf
	return pf, nil
}

func (fs *powerLossFS) Rename(oldname, newname string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	_, statErr := os.Stat(newname)
	replaced := statErr == nil
	if err := fs.real.Rename(oldname, newname); err != nil {
		return err
	}
	if pf := fs.open[filepath.Clean(oldname)]; pf != nil {
		delete(fs.open, pf.name)
		pf.name = filepath.Clean(newname)
		fs.open[pf.name] = pf
	}
	if !replaced { // a replaced target's old contents cannot be brought back
		fs.noteUndoLocked(newname, func() { os.Rename(newname, oldname) })
	}
	return nil
}

func (fs *powerLossFS) Remove(name string) error { return fs.real.Remove(name) }

func (fs *powerLossFS) MkdirAll(dir string, perm os.FileMode) error {
	return fs.real.MkdirAll(dir, perm)
}

func (fs *powerLossFS) ReadDir(dir string) ([]string, error) { return fs.real.ReadDir(dir) }

func (fs *powerLossFS) Stat(name string) (os.FileInfo, error) {
	st, err := fs.real.Stat(name)
	if err != nil {
		return nil, err
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if pf := fs.open[filepath.Clean(name)]; pf != nil {
		return sizedInfo{st, pf.size}, nil
	}
	return st, nil
}

func (fs *powerLossFS) Lock(dir string) (io.Closer, error) { return fs.real.Lock(dir) }

func (fs *powerLossFS) SyncDir(dir string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if err := fs.real.SyncDir(dir); err != nil {
		return err
	}
	delete(fs.undo, filepath.Clean(dir))
	return nil
}

// powerLossFile keeps writes in pending until Sync writes them out.
type powerLossFile struct {
	fs         *powerLossFS
	f          vfs.File
	wa         io.WriterAt
	name       string
	appendMode bool
	off        int64 // the file offset Write writes at (without O_APPEND)
	size       int64 // the size the process sees
	pending    []pendingWrite
}

type pendingWrite struct {
	off  int64
	data []byte
}

func (f *powerLossFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.appendMode {
		f.off = f.size
	}
	f.pending = append(f.pending, pendingWrite{f.off, append([]byte(nil), p...)})
	f.off += int64(len(p))
	f.size = max(f.size, f.off)
	return len(p), nil
}

func (f *powerLossFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if off >= f.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), f.size-off))
	buf := p[:n]
	m, err := f.f.ReadAt(buf, off)
	if err != nil && err != io.EOF {
		return m, err
	}
	clear(buf[m:])
	for _, w := range f.pending {
		lo, hi := max(off, w.off), min(off+int64(n), w.off+int64(len(w.data)))
		if lo < hi {
			copy(buf[lo-off:hi-off], w.data[lo-w.off:hi-w.off])
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// flushLocked writes the pending writes to the real file, unsynced.
func (f *powerLossFile) flushLocked() error {
	for len(f.pending) > 0 {
		w := f.pending[0]
		if _, err := f.wa.WriteAt(w.data, w.off); err != nil {
			return err
		}
		f.pending = f.pending[1:]
	}
	f.pending = nil
	return nil
}

func (f *powerLossFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.flushLocked(); err != nil {
		return err
	}
	return f.f.Sync()
}

func (f *powerLossFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.flushLocked(); err != nil {
		return err
	}
	if err := f.f.Truncate(size); err != nil {
		return err
	}
	f.size = size
	return nil
}

func (f *powerLossFile) Stat() (os.FileInfo, error) {
	st, err := f.f.Stat()
	if err != nil {
		return nil, err
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return sizedInfo{st, f.size}, nil
}

// Close writes out what is pending, unsynced, so that a reopen sees it as
// the page cache would. A simplification: such writes then survive a power
// loss; the storage package syncs a file before it closes it, so only data
// it never claimed durable is affected.
func (f *powerLossFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.open[f.name] == f {
		delete(f.fs.open, f.name)
	}
	err := f.flushLocked()
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	return err
}

type sizedInfo struct {
	os.FileInfo
	size int64
}

func (s sizedInfo) Size() int64 { return s.size }
