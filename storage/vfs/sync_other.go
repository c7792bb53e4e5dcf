//go:build !linux

package vfs

import "os"

func datasync(f *os.File) error { return f.Sync() }

// writeBack does nothing here: the final Sync writes everything.
func writeBack(*os.File) error { return nil }

func writeAtSync(f *os.File, bufs [][]byte, off int64) (int, error) {
	return writeAtThenSync(f, bufs, off)
}
