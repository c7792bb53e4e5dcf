//go:build race

package rawio

import "syscall"

// Under the race detector reads and writes go through package syscall,
// whose Read and Write tell the detector that a write to a socket happens
// before the read that sees its bytes, as net.Conn's do: tests that hand
// data to another goroutine over a connection rely on it.

func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return max(n, 0), errno(err)
}

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	return max(n, 0), errno(err)
}

func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	return err.(syscall.Errno)
}
