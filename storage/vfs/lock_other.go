//go:build !unix

package vfs

import (
	"errors"
	"os"
)

func lockFile(f *os.File) error {
	return errors.New("vfs: directory locks are not supported on this platform")
}
