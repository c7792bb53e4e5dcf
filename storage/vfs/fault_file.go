package vfs

import (
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// faultFile is a handle on an inode of a FaultFS. Every method takes the
// file system's mutex, so handles may be shared between goroutines.
type faultFile struct {
	fs        *FaultFS
	ino       *inode
	name      string
	epoch     int
	off       int64
	readable  bool
	writable  bool
	appending bool
	closed    bool
}

// usableLocked reports why the handle cannot be used, if it cannot.
func (f *faultFile) usableLocked(op string) error {
	switch {
	case f.closed:
		return pathErr(op, f.name, os.ErrClosed)
	case f.epoch != f.fs.epoch:
		return pathErr(op, f.name, ErrCrashed)
	}
	return nil
}

func (f *faultFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.usableLocked("write"); err != nil {
		return 0, err
	}
	if !f.writable {
		return 0, pathErr("write", f.name, syscall.EBADF)
	}
	if err := f.fs.takeFault(&f.fs.failWrite); err != nil {
		return 0, pathErr("write", f.name, err)
	}
	ino := f.ino
	if f.appending {
		f.off = int64(len(ino.data))
	}
	if err := f.fs.growLocked(ino, f.off+int64(len(p))); err != nil {
		return 0, pathErr("write", f.name, err)
	}
	end := int(f.off) + len(p)
	ino.data = extend(ino.data, end)
	copy(ino.data[f.off:], p)
	ino.markDirty(int(f.off), end)
	f.off = int64(end)
	f.fs.last = ino
	return len(p), nil
}

// WriteAt writes at off without moving the file offset. Like Write, the
// bytes are lost at a crash unless synced, and the last write can tear.
// As with os.File, a handle opened with O_APPEND refuses it.
func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.usableLocked("writeat"); err != nil {
		return 0, err
	}
	if !f.writable || f.appending || off < 0 {
		return 0, pathErr("writeat", f.name, syscall.EBADF)
	}
	if err := f.fs.takeFault(&f.fs.failWrite); err != nil {
		return 0, pathErr("writeat", f.name, err)
	}
	ino := f.ino
	if err := f.fs.growLocked(ino, off+int64(len(p))); err != nil {
		return 0, pathErr("writeat", f.name, err)
	}
	end := int(off) + len(p)
	ino.data = extend(ino.data, end)
	copy(ino.data[off:], p)
	ino.markDirty(int(off), end)
	f.fs.last = ino
	return len(p), nil
}

func (f *faultFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.usableLocked("read"); err != nil {
		return 0, err
	}
	if !f.readable {
		return 0, pathErr("read", f.name, syscall.EBADF)
	}
	if off < 0 {
		return 0, pathErr("read", f.name, syscall.EINVAL)
	}
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *faultFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.usableLocked("sync"); err != nil {
		return err
	}
	if err := f.fs.takeFault(&f.fs.failSync); err != nil {
		return pathErr("sync", f.name, err)
	}
	f.ino.sync()
	return nil
}

func (f *faultFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.usableLocked("truncate"); err != nil {
		return err
	}
	if !f.writable || size < 0 {
		return pathErr("truncate", f.name, syscall.EINVAL)
	}
	ino := f.ino
	if err := f.fs.growLocked(ino, size); err != nil {
		return pathErr("truncate", f.name, err)
	}
	old := len(ino.data)
	if int(size) <= old {
		ino.data = ino.data[:size]
		ino.markDirty(int(size), int(size))
	} else {
		ino.data = extend(ino.data, int(size))
		ino.markDirty(old, int(size))
	}
	return nil
}

func (f *faultFile) Stat() (os.FileInfo, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.usableLocked("stat"); err != nil {
		return nil, err
	}
	return fileInfo{name: filepath.Base(f.name), size: int64(len(f.ino.data))}, nil
}

func (f *faultFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return pathErr("close", f.name, os.ErrClosed)
	}
	f.closed = true
	return nil
}
