//go:build linux

package vfs

import (
	"os"
	"syscall"
)

// datasync flushes data and the size, not timestamps: cheaper than fsync
// and all a log needs to read its records back.
func datasync(f *os.File) error {
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
