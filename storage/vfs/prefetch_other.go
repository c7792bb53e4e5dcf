//go:build !linux

package vfs

// Prefetch is a no-op where the platform gives no read-ahead hint.
func Prefetch(fs FS, name string) {}
