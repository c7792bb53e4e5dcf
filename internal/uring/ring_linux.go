//go:build linux

package uring

import (
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// The system calls and constants of io_uring (include/uapi/linux/io_uring.h);
// the call numbers are the same on every architecture Go supports.
const (
	sysSetup = 425
	sysEnter = 426

	offSQRing = 0
	offSQEs   = 0x10000000

	featSingleMmap = 1 << 0

	opFsync       = 3
	opWrite       = 23
	fsyncDatasync = 1
	sqeIOLink     = 1 << 2
	entries       = 8 // a chain of up to 7 writes and a sync

	sqeSize = 64
	cqeSize = 16
)

var errTooMany = fmt.Errorf("uring: more than %d writes in one chain", entries-1)

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

// ring is an io_uring with one chain of operations in flight at most: its
// user holds it from submission to the last completion.
type ring struct {
	fd    uintptr  // the ring's descriptor
	f     *os.File // the same, registered with the poller (its Fd would make it blocking)
	rc    syscall.RawConn
	rings []byte // the submission and completion rings (one mapping)
	sqes  []byte

	sqEntries, sqTail, sqMask, cqHead, cqTail, cqMask *uint32
	sqArray                                           unsafe.Pointer
	cqes                                              unsafe.Pointer
}

func newRing() (*ring, error) {
	var p params
	fd, _, errno := syscall.RawSyscall(sysSetup, entries, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, errno
	}
	if p.features&featSingleMmap == 0 {
		// Kernels before 5.4 map the two rings apart; not worth the code.
		syscall.Close(int(fd))
		return nil, syscall.EINVAL
	}
	r := &ring{}
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*cqeSize)
	var err error
	r.rings, err = syscall.Mmap(int(fd), offSQRing, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	if err != nil {
		syscall.Close(int(fd))
		return nil, fmt.Errorf("uring: map rings: %w", err)
	}
	r.sqes, err = syscall.Mmap(int(fd), offSQEs, int(p.sqEntries*sqeSize), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	if err != nil {
		syscall.Munmap(r.rings)
		syscall.Close(int(fd))
		return nil, fmt.Errorf("uring: map entries: %w", err)
	}
	base := unsafe.Pointer(&r.rings[0])
	u32 := func(off uint32) *uint32 { return (*uint32)(unsafe.Add(base, off)) }
	r.sqEntries, r.sqTail, r.sqMask = u32(p.sqOff.ringEntries), u32(p.sqOff.tail), u32(p.sqOff.ringMask)
	r.cqHead, r.cqTail, r.cqMask = u32(p.cqOff.head), u32(p.cqOff.tail), u32(p.cqOff.ringMask)
	r.sqArray = unsafe.Add(base, p.sqOff.array)
	r.cqes = unsafe.Add(base, p.cqOff.cqes)

	// A non-blocking descriptor makes os.NewFile register it with the
	// poller, which then reports it readable when a completion is posted.
	if err := syscall.SetNonblock(int(fd), true); err != nil {
		r.unmap()
		syscall.Close(int(fd))
		return nil, fmt.Errorf("uring: set non-blocking: %w", err)
	}
	r.fd = fd
	r.f = os.NewFile(fd, "io_uring")
	r.rc, err = r.f.SyscallConn()
	if err != nil {
		r.close()
		return nil, fmt.Errorf("uring: %w", err)
	}
	return r, nil
}

// writeSync submits writes of bufs at off, each linked to the next, and
// then a datasync of f linked to the last, and waits for them all. res[i]
// is write i's result and res[len(bufs)] the sync's (the number of bytes
// or -errno; -ECANCELED for what followed a failed or short write). An
// error means the ring failed and nothing was submitted.
func (r *ring) writeSync(f *os.File, bufs [][]byte, off int64, res []int32) error {
	n := len(bufs) + 1
	if n > int(*r.sqEntries) {
		return errTooMany
	}
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var submitErr error
	cerr := sc.Control(func(fd uintptr) {
		tail := atomic.LoadUint32(r.sqTail)
		for i := range n {
			idx := (tail + uint32(i)) & *r.sqMask
			sqe := r.sqes[idx*sqeSize : (idx+1)*sqeSize]
			clear(sqe)
			*(*int32)(unsafe.Pointer(&sqe[4])) = int32(fd)
			*(*uint64)(unsafe.Pointer(&sqe[32])) = uint64(i) // user_data
			if i < len(bufs) {
				b := bufs[i]
				sqe[0] = opWrite
				sqe[1] = sqeIOLink
				*(*uint64)(unsafe.Pointer(&sqe[8])) = uint64(off)
				*(*uint64)(unsafe.Pointer(&sqe[16])) = uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
				*(*uint32)(unsafe.Pointer(&sqe[24])) = uint32(len(b))
				off += int64(len(b))
			} else {
				sqe[0] = opFsync
				*(*uint32)(unsafe.Pointer(&sqe[28])) = fsyncDatasync
			}
			*(*uint32)(unsafe.Add(r.sqArray, 4*idx)) = idx
		}
		atomic.StoreUint32(r.sqTail, tail+uint32(n)) // publishes the entries
		m, _, errno := syscall.RawSyscall6(sysEnter, r.fd, uintptr(n), 0, 0, 0, 0)
		switch {
		case errno != 0:
			// Refused before any entry was taken: take them back.
			submitErr = errno
			atomic.StoreUint32(r.sqTail, tail)
		case int(m) != n:
			// An entry the kernel could not prepare stops the submission
			// after it, and fails the chain it began: nothing ran. The
			// ones taken still complete (failed) and are waited for below;
			// the rest stay in the ring, which its user then closes.
			submitErr = fmt.Errorf("uring: %d of %d entries taken", m, n)
			n = int(m)
		}
	})
	if cerr != nil {
		return cerr
	}
	if submitErr != nil && n == len(bufs)+1 {
		return submitErr
	}
	got := 0
	werr := r.rc.Read(func(uintptr) bool {
		for got < n {
			head := atomic.LoadUint32(r.cqHead)
			if head == atomic.LoadUint32(r.cqTail) {
				return false // not yet: wait in the poller
			}
			cqe := unsafe.Add(r.cqes, uintptr(head&*r.cqMask)*cqeSize)
			i := *(*uint64)(cqe)
			res[i] = *(*int32)(unsafe.Add(cqe, 8))
			atomic.StoreUint32(r.cqHead, head+1)
			got++
		}
		return true
	})
	// The kernel read the buffers and holds its own reference to the file
	// from submission; keep both until every completion is in, as a plain
	// system call would.
	runtime.KeepAlive(bufs)
	runtime.KeepAlive(f)
	if werr != nil {
		// Only a closed ring gets here, and ours is not closed while in use.
		return fmt.Errorf("uring: wait: %w", werr)
	}
	return submitErr
}

func (r *ring) unmap() {
	if r.sqes != nil {
		syscall.Munmap(r.sqes)
	}
	if r.rings != nil {
		syscall.Munmap(r.rings)
	}
}

func (r *ring) close() {
	r.f.Close()
	r.unmap()
}
