package storage

import (
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/storage/vfs"
)

// ErrCorrupt is wrapped by every error that reports damaged data: the
// process must not start on it, and no one should "repair" it by hand
// without knowing which committed entries it held.
var ErrCorrupt = errors.New("storage: corrupt data")

// ErrLocked is wrapped by Open when another Log has the directory.
var ErrLocked = vfs.ErrLocked

// ErrClosed is returned by every method of a closed Log.
var ErrClosed = errors.New("wal: log is closed")

// CorruptError names the damaged file and the byte offset of the first
// record that cannot be trusted.
type CorruptError struct {
	File   string
	Offset int64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("wal: corrupt %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

func (e *CorruptError) Unwrap() error { return ErrCorrupt }

func corruptf(file string, off int64, format string, args ...any) *CorruptError {
	return &CorruptError{File: file, Offset: off, Reason: fmt.Sprintf(format, args...)}
}
