package vfs

import (
	"errors"
	"io"
	"os"
)

// FS is the file system the storage package runs on. Names are slash or
// OS separated paths; directories must exist before files are created in them.
type FS interface {
	// Create creates or truncates name for reading and writing.
	Create(name string) (File, error)
	// OpenFile opens name with os.O_* flags (O_RDONLY, O_WRONLY, O_RDWR,
	// O_CREATE, O_EXCL, O_TRUNC, O_APPEND are honoured).
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Open opens name read-only.
	Open(name string) (File, error)
	Rename(oldname, newname string) error
	Remove(name string) error
	MkdirAll(dir string, perm os.FileMode) error
	// ReadDir returns the names (not paths) of the entries of dir, sorted.
	ReadDir(dir string) ([]string, error)
	Stat(name string) (os.FileInfo, error)
	// Lock takes an exclusive lock on dir, held until the Closer is closed
	// or the process dies. A second Lock of a locked dir fails with an error
	// wrapping ErrLocked, even from the same process.
	Lock(dir string) (io.Closer, error)
	// SyncDir makes creates, renames and removes in dir durable.
	SyncDir(dir string) error
}

// File is an open file. Write writes at the file offset (at the end when
// opened with O_APPEND); ReadAt does not move it.
//
// A File may also implement io.WriterAt (the files of OS and FaultFS do;
// not on a handle opened with O_APPEND). It is not part of the interface
// so that wrappers written before it keep working: users check for it and
// fall back to Write at the handle's offset.
type File interface {
	io.Writer
	io.ReaderAt
	io.Closer
	// Sync makes the file's data and size durable (fdatasync).
	Sync() error
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
}

// WriteBacker is implemented by files that can write their data out to
// the disk and wait for it without making it durable (Linux:
// sync_file_range, which issues no cache flush). A writer of a large file
// calls it every chunk or so, so that its data reaches the disk in
// chunks rather than in one burst at the final Sync: a burst of tens of
// megabytes sits in the disk's queue ahead of every other file's sync,
// and the log's syncs are what writes wait for.
type WriteBacker interface {
	WriteBack() error
}

// WriteBack writes f's data out if f can (WriteBacker) and does nothing
// otherwise.
func WriteBack(f File) error {
	if w, ok := f.(WriteBacker); ok {
		return w.WriteBack()
	}
	return nil
}

// WriteSyncer is implemented by files that can write buffers and make
// them durable in one request (Linux: writes and an fdatasync chained in
// an io_uring, so that no thread of the process waits in either call).
// WriteAtSync writes bufs one after another from off, then syncs as Sync
// does; n is the bytes written. A log's writer uses it for the writes of
// a batch and their sync, on files that also implement io.WriterAt.
type WriteSyncer interface {
	WriteAtSync(bufs [][]byte, off int64) (n int, err error)
}

// ErrLocked is wrapped by Lock when another holder has the directory.
var ErrLocked = errors.New("vfs: directory is locked by another process or handle")

// LockFileName is the name of the file Lock creates in the locked directory.
const LockFileName = "LOCK"

// SpaceFS is implemented by file systems that can tell how much space is
// left (OS and FaultFS). The storage package uses it to stop before the
// disk is full rather than at the failed write.
type SpaceFS interface {
	// FreeBytes returns the bytes an unprivileged writer can still use on
	// the file system holding dir.
	FreeBytes(dir string) (int64, error)
}

// FreeBytes returns fs's free space at dir, and false when fs cannot tell.
func FreeBytes(fs FS, dir string) (int64, bool) {
	s, ok := fs.(SpaceFS)
	if !ok {
		return 0, false
	}
	n, err := s.FreeBytes(dir)
	return n, err == nil
}
