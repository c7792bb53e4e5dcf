//go:build linux

package vfs

import (
	"os"
	"syscall"
)

// FreeBytes is statfs's blocks available to unprivileged users.
func (osFS) FreeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	return int64(st.Bavail) * st.Bsize, nil
}
