//go:build linux

package vfs

import (
	"os"
	"syscall"
)

// Prefetch asks the kernel to start reading name into the page cache and
// returns without waiting for it. It is a hint: errors are ignored, and it
// does nothing on a FaultFS.
func Prefetch(fs FS, name string) {
	if _, ok := fs.(osFS); !ok {
		return
	}
	f, err := os.Open(name)
	if err != nil {
		return
	}
	defer f.Close()
	const fadvWillNeed = 3
	syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvWillNeed, 0, 0)
}
