package vfs

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"
)

// ErrCrashed is returned by a File or lock handle that was opened before a
// simulated crash: the process that owned it is gone.
var ErrCrashed = errors.New("vfs: handle opened before a simulated crash")

// FaultFS is an in-memory FS that remembers, apart from what the running
// process sees, what a crash would keep: file contents as of their last
// Sync, and names as of the last SyncDir of their directory. Directories
// themselves are durable as soon as MkdirAll returns (a simplification: the
// storage package creates its directories once, before anything else).
//
// Faults: Crash and its variants, FlipBit, FailNextWrite, FailNextSync and
// SetCapacity (a full disk). All methods are safe for concurrent use.
type FaultFS struct {
	mu      sync.Mutex
	rng     *rand.Rand
	epoch   int // bumped by each crash; older handles are dead
	dirs    map[string]bool
	files   map[string]*inode // names the running process sees
	durable map[string]*inode // names a crash keeps
	locks   map[string]bool
	last    *inode // most recently written, the one a torn crash tears

	failWrite, failSync fault
	// capacity bounds the bytes of all files the running process sees; 0
	// means no bound. A write or truncate that would grow past it fails
	// with ENOSPC and changes nothing.
	capacity int64
}

// fault is an error to return after skip more calls succeed.
type fault struct {
	err  error
	skip int
}

// inode is a file's contents. synced never shares memory with data.
type inode struct {
	data      []byte
	synced    []byte
	dirty     bool
	dirtyFrom int // lowest offset changed since the last Sync, when dirty
	dirtyTo   int // end of the highest change since the last Sync, when dirty
}

// NewFaultFS returns an empty FaultFS whose random choices (CrashRandom)
// come from seed only.
func NewFaultFS(seed uint64) *FaultFS {
	return &FaultFS{
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		dirs:    map[string]bool{"/": true, ".": true},
		files:   map[string]*inode{},
		durable: map[string]*inode{},
		locks:   map[string]bool{},
	}
}

func pathErr(op, name string, err error) error { return &os.PathError{Op: op, Path: name, Err: err} }

// markDirty records that [from, to) changed since the last sync.
func (ino *inode) markDirty(from, to int) {
	if !ino.dirty {
		ino.dirtyFrom, ino.dirtyTo = from, to
	}
	ino.dirtyFrom, ino.dirtyTo = min(ino.dirtyFrom, from), max(ino.dirtyTo, to)
	ino.dirty = true
}

// extend returns b lengthened to n bytes (the new ones zero), or b if it
// is as long already. When b must move, its capacity doubles: a file
// written a chunk at a time is then copied a few times, not once per chunk,
// which the race detector makes slow for a segment of many megabytes.
func extend(b []byte, n int) []byte {
	switch {
	case n <= len(b):
		return b
	case n <= cap(b):
		old := len(b)
		b = b[:n]
		clear(b[old:])
		return b
	}
	nb := make([]byte, n, max(n, 2*cap(b)))
	copy(nb, b)
	return nb
}

// sync copies what changed since the last sync into the durable copy: an
// appended tail costs its own length, not the file's.
func (ino *inode) sync() {
	if !ino.dirty {
		return
	}
	from := min(ino.dirtyFrom, len(ino.synced), len(ino.data))
	ino.synced = extend(ino.synced[:from], len(ino.data))
	copy(ino.synced[from:], ino.data[from:])
	ino.dirty = false
}

// unsynced returns where the writes since the last sync start and the
// bytes from there to the end of the last of them: appended bytes, or
// bytes overwritten inside the synced size (a preallocated file). It
// returns nil when the file shrank since the last sync: a crash keeps the
// old size then, and no new bytes.
func (ino *inode) unsynced() (int, []byte) {
	if !ino.dirty || len(ino.data) < len(ino.synced) {
		return 0, nil
	}
	from, to := min(ino.dirtyFrom, len(ino.data)), min(ino.dirtyTo, len(ino.data))
	if to <= from {
		return 0, nil
	}
	return from, ino.data[from:to]
}

// Crash simulates power loss: every write not synced, and every create,
// rename and remove whose directory was not synced since, is undone. Open
// handles and locks die with the process.
func (fs *FaultFS) Crash() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.crashLocked()
}

// CrashTearing is Crash, except that the file written last keeps the first
// keep bytes of what was written to it since its last Sync (appended, or
// overwritten inside its synced size), as when the disk wrote some sectors
// of the last write before power went. If zeroed, those bytes read back as
// zeros (the size reached the disk, the data not).
func (fs *FaultFS) CrashTearing(keep int64, zeroed bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.tearLocked(keep, zeroed)
	fs.crashLocked()
}

// CrashRandom crashes, tearing the last write at a point and in a way drawn
// from the seeded source: half the crashes are clean. It reports whether
// part of an unsynced write survived (the write was torn).
func (fs *FaultFS) CrashRandom() (torn bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.last != nil && fs.rng.IntN(2) == 0 {
		_, tail := fs.last.unsynced()
		n := int64(len(tail))
		keep := fs.rng.Int64N(n + 1)
		fs.tearLocked(keep, fs.rng.IntN(4) == 0)
		torn = keep > 0
	}
	fs.crashLocked()
	return torn
}

func (fs *FaultFS) tearLocked(keep int64, zeroed bool) {
	ino := fs.last
	if ino == nil || keep <= 0 {
		return
	}
	from, tail := ino.unsynced()
	kept := tail[:min(int64(len(tail)), keep)]
	if zeroed {
		kept = make([]byte, len(kept))
	}
	ino.synced = extend(ino.synced, from+len(kept))
	copy(ino.synced[from:], kept)
}

func (fs *FaultFS) crashLocked() {
	fs.epoch++
	fs.files = make(map[string]*inode, len(fs.durable))
	for name, ino := range fs.durable {
		fs.files[name] = ino
		ino.data = append([]byte(nil), ino.synced...)
		ino.dirty = false
	}
	fs.locks = map[string]bool{}
	fs.last = nil
}

// FlipBit flips one bit of a file's contents, in the synced copy too: bit
// rot on the medium, which only checksums can notice.
func (fs *FaultFS) FlipBit(name string, off int64, bit uint) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	ino := fs.files[filepath.Clean(name)]
	if ino == nil {
		return pathErr("flipbit", name, syscall.ENOENT)
	}
	if off < 0 || off >= int64(len(ino.data)) {
		return pathErr("flipbit", name, fmt.Errorf("offset %d outside %d bytes", off, len(ino.data)))
	}
	ino.data[off] ^= 1 << (bit % 8)
	if off < int64(len(ino.synced)) {
		ino.synced[off] ^= 1 << (bit % 8)
	}
	return nil
}

// FailNextWrite makes the next File.Write fail with err (for example
// syscall.EIO or syscall.ENOSPC) without writing anything.
func (fs *FaultFS) FailNextWrite(err error) { fs.FailWriteAfter(0, err) }

// FailNextSync makes the next File.Sync or SyncDir fail with err; nothing
// becomes durable.
func (fs *FaultFS) FailNextSync(err error) { fs.FailSyncAfter(0, err) }

// FailWriteAfter lets n writes succeed, then fails one with err. A nil err
// cancels a pending fault.
func (fs *FaultFS) FailWriteAfter(n int, err error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.failWrite = fault{err: err, skip: n}
}

// FailSyncAfter lets n syncs (File.Sync or SyncDir) succeed, then fails one
// with err. A nil err cancels a pending fault.
func (fs *FaultFS) FailSyncAfter(n int, err error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.failSync = fault{err: err, skip: n}
}

// SetCapacity bounds the total size of the files to n bytes (0: no bound),
// as a file system of that size would: a write or truncate that would grow
// the total past n fails with syscall.ENOSPC and changes nothing, while
// overwrites inside a file's size still succeed. Removing files frees
// their bytes. A bound below what is already used only stops growth.
func (fs *FaultFS) SetCapacity(n int64) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.capacity = n
}

// Capacity returns the bound SetCapacity set; 0 means none.
func (fs *FaultFS) Capacity() int64 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.capacity
}

// Used returns the total size of the files the running process sees.
func (fs *FaultFS) Used() int64 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.usedLocked()
}

// FreeBytes is what SetCapacity leaves; without a bound, a large number.
func (fs *FaultFS) FreeBytes(dir string) (int64, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.capacity == 0 {
		return 1 << 50, nil
	}
	return max(fs.capacity-fs.usedLocked(), 0), nil
}

func (fs *FaultFS) usedLocked() int64 {
	var n int64
	seen := make(map[*inode]bool, len(fs.files))
	for _, ino := range fs.files {
		if !seen[ino] {
			seen[ino] = true
			n += int64(len(ino.data))
		}
	}
	return n
}

// growLocked reports ENOSPC when growing ino to size would pass the capacity.
func (fs *FaultFS) growLocked(ino *inode, size int64) error {
	grow := size - int64(len(ino.data))
	if fs.capacity == 0 || grow <= 0 || fs.usedLocked()+grow <= fs.capacity {
		return nil
	}
	return syscall.ENOSPC
}

// ReadFile returns a copy of what the running process sees in name.
func (fs *FaultFS) ReadFile(name string) ([]byte, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	ino := fs.files[filepath.Clean(name)]
	if ino == nil {
		return nil, pathErr("read", name, syscall.ENOENT)
	}
	return append([]byte(nil), ino.data...), nil
}

// WriteFile creates name with data, durably (contents and name), as test
// fixtures need. The directory must exist.
func (fs *FaultFS) WriteFile(name string, data []byte) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	name = filepath.Clean(name)
	if !fs.dirs[filepath.Dir(name)] {
		return pathErr("writefile", name, syscall.ENOENT)
	}
	ino := &inode{data: append([]byte(nil), data...), synced: append([]byte(nil), data...)}
	fs.files[name] = ino
	fs.durable[name] = ino
	return nil
}

func (fs *FaultFS) Create(name string) (File, error) {
	return fs.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
}

func (fs *FaultFS) Open(name string) (File, error) { return fs.OpenFile(name, os.O_RDONLY, 0) }

func (fs *FaultFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	name = filepath.Clean(name)
	if !fs.dirs[filepath.Dir(name)] {
		return nil, pathErr("open", name, syscall.ENOENT)
	}
	if fs.dirs[name] {
		return nil, pathErr("open", name, syscall.EISDIR)
	}
	ino := fs.files[name]
	switch {
	case ino != nil && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, pathErr("open", name, syscall.EEXIST)
	case ino == nil && flag&os.O_CREATE == 0:
		return nil, pathErr("open", name, syscall.ENOENT)
	case ino == nil:
		ino = &inode{}
		fs.files[name] = ino
	}
	access := flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	f := &faultFile{fs: fs, ino: ino, name: name, epoch: fs.epoch,
		readable: access != os.O_WRONLY, writable: access != os.O_RDONLY,
		appending: flag&os.O_APPEND != 0}
	if flag&os.O_TRUNC != 0 && f.writable && len(ino.data) > 0 {
		ino.data = ino.data[:0]
		ino.markDirty(0, 0)
	}
	return f, nil
}

func (fs *FaultFS) Rename(oldname, newname string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	oldname, newname = filepath.Clean(oldname), filepath.Clean(newname)
	ino := fs.files[oldname]
	if ino == nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: syscall.ENOENT}
	}
	if !fs.dirs[filepath.Dir(newname)] || fs.dirs[newname] {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: syscall.ENOENT}
	}
	delete(fs.files, oldname)
	fs.files[newname] = ino
	return nil
}

func (fs *FaultFS) Remove(name string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	name = filepath.Clean(name)
	if fs.files[name] != nil {
		delete(fs.files, name)
		return nil
	}
	if fs.dirs[name] {
		if len(fs.childrenLocked(name)) > 0 {
			return pathErr("remove", name, syscall.ENOTEMPTY)
		}
		delete(fs.dirs, name)
		return nil
	}
	return pathErr("remove", name, syscall.ENOENT)
}

func (fs *FaultFS) MkdirAll(dir string, perm os.FileMode) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for d := filepath.Clean(dir); !fs.dirs[d]; d = filepath.Dir(d) {
		if fs.files[d] != nil {
			return pathErr("mkdir", d, syscall.ENOTDIR)
		}
		fs.dirs[d] = true
	}
	return nil
}

func (fs *FaultFS) childrenLocked(dir string) []string {
	var names []string
	for name := range fs.files {
		if filepath.Dir(name) == dir {
			names = append(names, filepath.Base(name))
		}
	}
	for name := range fs.dirs {
		if name != dir && filepath.Dir(name) == dir {
			names = append(names, filepath.Base(name))
		}
	}
	sort.Strings(names)
	return names
}

func (fs *FaultFS) ReadDir(dir string) ([]string, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	dir = filepath.Clean(dir)
	if !fs.dirs[dir] {
		return nil, pathErr("readdir", dir, syscall.ENOENT)
	}
	return fs.childrenLocked(dir), nil
}

func (fs *FaultFS) Stat(name string) (os.FileInfo, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	name = filepath.Clean(name)
	if fs.dirs[name] {
		return fileInfo{name: filepath.Base(name), dir: true}, nil
	}
	if ino := fs.files[name]; ino != nil {
		return fileInfo{name: filepath.Base(name), size: int64(len(ino.data))}, nil
	}
	return nil, pathErr("stat", name, syscall.ENOENT)
}

// SyncDir makes the names in dir durable as they are now.
func (fs *FaultFS) SyncDir(dir string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	dir = filepath.Clean(dir)
	if !fs.dirs[dir] {
		return pathErr("syncdir", dir, syscall.ENOENT)
	}
	if err := fs.takeFault(&fs.failSync); err != nil {
		return pathErr("syncdir", dir, err)
	}
	for name := range fs.durable {
		if filepath.Dir(name) == dir && fs.files[name] == nil {
			delete(fs.durable, name)
		}
	}
	for name, ino := range fs.files {
		if filepath.Dir(name) == dir {
			fs.durable[name] = ino
		}
	}
	return nil
}

// takeFault counts a call against a pending fault and returns its error
// when its turn has come.
func (fs *FaultFS) takeFault(f *fault) error {
	if f.err == nil {
		return nil
	}
	if f.skip > 0 {
		f.skip--
		return nil
	}
	err := f.err
	*f = fault{}
	return err
}

// Lock locks dir in memory; a crash releases every lock. Like OS, it
// leaves a LOCK file behind.
func (fs *FaultFS) Lock(dir string) (io.Closer, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	dir = filepath.Clean(dir)
	if !fs.dirs[dir] {
		return nil, pathErr("lock", dir, syscall.ENOENT)
	}
	if fs.locks[dir] {
		return nil, fmt.Errorf("vfs: lock %s: %w", dir, ErrLocked)
	}
	fs.locks[dir] = true
	name := filepath.Join(dir, LockFileName)
	if fs.files[name] == nil {
		ino := &inode{}
		fs.files[name], fs.durable[name] = ino, ino
	}
	return &faultLock{fs: fs, dir: dir, epoch: fs.epoch}, nil
}

type faultLock struct {
	fs     *FaultFS
	dir    string
	epoch  int
	closed bool
}

func (l *faultLock) Close() error {
	l.fs.mu.Lock()
	defer l.fs.mu.Unlock()
	if l.closed || l.epoch != l.fs.epoch {
		return nil
	}
	l.closed = true
	delete(l.fs.locks, l.dir)
	return nil
}

type fileInfo struct {
	name string
	size int64
	dir  bool
}

func (fi fileInfo) Name() string { return fi.name }
func (fi fileInfo) Size() int64  { return fi.size }
func (fi fileInfo) Mode() os.FileMode {
	if fi.dir {
		return os.ModeDir | 0o755
	}
	return 0o644
}
func (fi fileInfo) ModTime() time.Time { return time.Time{} } // no clock: deterministic
func (fi fileInfo) IsDir() bool        { return fi.dir }
func (fi fileInfo) Sys() any           { return nil }
