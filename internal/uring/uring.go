// Package uring writes and syncs files without blocking an OS thread in
// the system calls.
//
// A Go program that calls pwrite or fdatasync enters the runtime's
// system-call state, and a thread blocked in fdatasync stays there for as
// long as the disk takes. The runtime's monitor thread notices after
// 20 µs, takes the thread's processor back and hands it to another
// thread, and keeps polling every 20 µs while such calls follow one
// another; when the call returns, its thread must win a processor back.
// With one or two processors per process that is several context switches
// per sync, and on a virtual machine each one is dear.
//
// Here the writes and the sync are submitted to an io_uring instead, as
// one chain. The kernel runs them on its own worker threads and posts the
// completions to the ring; the goroutine waits for them in the runtime's
// network poller, on the ring's file descriptor, like a socket read. The
// processor stays free for other goroutines meanwhile, and nothing polls.
//
// Where io_uring is missing or refused (an old kernel, a seccomp profile,
// kernel.io_uring_disabled), or a ring cannot be set up for any other
// reason, WriteSync and Fdatasync report false and the caller makes the
// plain system calls, which are as correct.
package uring

import (
	"os"
	"sync/atomic"
	"syscall"
)

// maxIdle bounds the rings kept between syncs: one per sync that may run
// at once. More concurrent syncs than this get rings that are closed after
// use, so nothing grows with load.
const maxIdle = 4

// maxWrite bounds one write in a chain: a write's length is 32 bits wide.
const maxWrite = 1 << 30

var (
	idle     = make(chan *ring, maxIdle)
	disabled atomic.Bool // set when a ring could not be set up
)

// Fdatasync makes f's data and size durable, as fdatasync(2) does, and
// reports true, or reports false without doing anything when no ring is
// to be had; the caller then makes the system call itself. The error is
// the sync's own, as a *os.PathError.
func Fdatasync(f *os.File) (bool, error) {
	ok, _, err := WriteSync(f, nil, 0)
	return ok, err
}

// WriteSync writes bufs to f one after another from offset off and then
// makes f's data and size durable, as pwrite(2) for each and fdatasync(2)
// would, in one submission: the thread that submits it does not wait in a
// system call for the writes either. It reports false without doing
// anything when no ring is to be had (or bufs are too many for one), and
// the caller then makes the calls itself. Otherwise n is the bytes written
// and err the first write's or the sync's error, as a *os.PathError; a
// short write without an error is finished with plain calls.
func WriteSync(f *os.File, bufs [][]byte, off int64) (ok bool, n int, err error) {
	if disabled.Load() || len(bufs) >= entries {
		return false, 0, nil
	}
	for _, b := range bufs {
		if len(b) == 0 || len(b) > maxWrite {
			return false, 0, nil
		}
	}
	r := get()
	if r == nil {
		return false, 0, nil
	}
	var res [entries]int32
	rerr := r.writeSync(f, bufs, off, res[:])
	put(r, rerr == nil)
	if rerr != nil {
		// The ring failed, not the calls: nothing ran.
		return false, 0, nil
	}
	for i, b := range bufs {
		switch got := res[i]; {
		case got < 0:
			return true, n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.Errno(-got)}
		case int(got) < len(b):
			// The chain stopped here; what is left goes the plain way.
			n += int(got)
			rest := off + int64(n)
			for _, b := range append([][]byte{b[got:]}, bufs[i+1:]...) {
				w, err := f.WriteAt(b, rest)
				n += w
				rest += int64(w)
				if err != nil {
					return true, n, err
				}
			}
			// fsync rather than fdatasync: this path is rare, and the
			// portable call is the stronger one.
			return true, n, f.Sync()
		}
		n += len(b)
	}
	if got := res[len(bufs)]; got < 0 {
		return true, n, &os.PathError{Op: "fdatasync", Path: f.Name(), Err: syscall.Errno(-got)}
	}
	return true, n, nil
}

// Available reports whether syncs go through a ring here, setting one up
// if none has been yet.
func Available() bool {
	if disabled.Load() {
		return false
	}
	r := get()
	if r == nil {
		return false
	}
	put(r, true)
	return true
}

// get returns an idle ring or a new one, or nil. A ring that cannot be
// set up once is not tried again: the plain calls are as correct, and a
// failed setup on every sync would cost a system call each.
func get() *ring {
	select {
	case r := <-idle:
		return r
	default:
	}
	r, err := newRing()
	if err != nil {
		disabled.Store(true)
		return nil
	}
	return r
}

func put(r *ring, ok bool) {
	if ok {
		select {
		case idle <- r:
			return
		default:
		}
	}
	r.close()
}
