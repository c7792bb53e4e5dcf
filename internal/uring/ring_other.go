//go:build !linux

package uring

import (
	"os"
	"syscall"
)

type ring struct{}

func newRing() (*ring, error) { return nil, syscall.ENOSYS }

const entries = 8

func (*ring) writeSync(*os.File, [][]byte, int64, []int32) error { return syscall.ENOSYS }

func (*ring) close() {}
