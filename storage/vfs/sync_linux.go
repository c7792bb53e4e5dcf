//go:build linux

package vfs

import (
	"os"
	"syscall"

	"github.com/raftkv/raftkv/internal/uring"
)

// datasync flushes data and the size, not timestamps: cheaper than fsync
// and all a log needs to read its records back. It goes through io_uring
// where the kernel allows, so that no thread of the process blocks in it
// (package uring says why that matters), and is the plain call otherwise.
func datasync(f *os.File) error {
	if ok, err := uring.Fdatasync(f); ok {
		return err
	}
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}

// writeAtSync chains the writes and the sync in an io_uring where the
// kernel allows, and makes the plain calls otherwise.
func writeAtSync(f *os.File, bufs [][]byte, off int64) (int, error) {
	if ok, n, err := uring.WriteSync(f, bufs, off); ok {
		return n, err
	}
	return writeAtThenSync(f, bufs, off)
}

// writeBack starts writing every dirty page of f to the disk and waits for
// them (sync_file_range over the whole file), without a cache flush and
// without the file's metadata: it makes nothing durable.
func writeBack(f *os.File) error {
	const flags = 1 | 2 | 4 // SYNC_FILE_RANGE_WAIT_BEFORE | _WRITE | _WAIT_AFTER
	for {
		err := syscall.SyncFileRange(int(f.Fd()), 0, 0, flags)
		if err != syscall.EINTR {
			if err != nil {
				return &os.PathError{Op: "sync_file_range", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}
