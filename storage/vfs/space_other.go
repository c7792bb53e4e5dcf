//go:build !linux

package vfs

import (
	"errors"
	"os"
)

// FreeBytes is not implemented off Linux: callers go on without the check.
func (osFS) FreeBytes(dir string) (int64, error) {
	return 0, &os.PathError{Op: "statfs", Path: dir, Err: errors.ErrUnsupported}
}
