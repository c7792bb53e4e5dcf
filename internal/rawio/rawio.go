// Package rawio reads and writes a TCP socket with system calls the Go
// scheduler is not told about.
//
// A read or write through net.Conn enters the runtime's system-call
// state, and the first such call after the process was idle wakes the
// runtime's monitor thread (sysmon), which then polls every 20 µs until
// the process is idle again. Go's sockets are non-blocking, so the call
// cannot block and that bookkeeping buys nothing; on a machine where a
// thread's sleep and wake are expensive (a virtual machine whose kernel
// runs deprivileged) the monitor's wake-ups were a large share of a small
// request's CPU. A Conn makes the same calls as net.Conn, waits for
// readiness through the same poller, and honours the same deadlines and
// Close.
package rawio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// maxIovecs bounds the buffers one writev takes (Linux's IOV_MAX).
const maxIovecs = 1024

// Conn is a net.Conn whose Read, Write and WriteBuffers make raw system
// calls. It is safe for concurrent use as net.Conn is.
type Conn struct {
	net.Conn
	rc syscall.RawConn

	rmu   sync.Mutex // one read at a time: rbuf, rn, rerr
	rbuf  []byte
	rn    int
	rerr  syscall.Errno
	rfunc func(uintptr) bool

	wmu    sync.Mutex // one write at a time: the fields below
	wbufs  [][]byte   // what is left to write
	wback  [][]byte   // wbufs' array, reused
	wn     int64
	werr   syscall.Errno
	wshort bool // a write made no progress
	iov    []syscall.Iovec
	wone   [1][]byte
	wfunc  func(uintptr) bool
}

// Wrap returns c as a *Conn if it is a TCP connection, else c itself (a
// TLS connection, a pipe).
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rw := &Conn{Conn: c, rc: rc}
	rw.rfunc = rw.doRead
	rw.wfunc = rw.doWrite
	return rw
}

// doRead is the read attempt RawConn.Read makes, again after each
// readiness: false means "would block, wait".
func (c *Conn) doRead(fd uintptr) bool {
	for {
		n, e := sysRead(fd, c.rbuf)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rn, c.rerr = n, e
		return true
	}
}

// doWrite writes what is left of wbufs, one write or writev at a time,
// until all is written, the socket would block (false), or an error.
func (c *Conn) doWrite(fd uintptr) bool {
	for len(c.wbufs) > 0 {
		var n int
		var e syscall.Errno
		if len(c.wbufs) == 1 {
			n, e = sysWrite(fd, c.wbufs[0])
		} else {
			c.iov = c.iov[:0]
			for _, b := range c.wbufs[:min(len(c.wbufs), maxIovecs)] {
				v := syscall.Iovec{Base: &b[0]}
				v.SetLen(len(b))
				c.iov = append(c.iov, v)
			}
			// writev is raw under the race detector too: package syscall
			// has no annotated writev, and net.Conn's is not annotated.
			r, _, errno := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&c.iov[0])), uintptr(len(c.iov)))
			n, e = int(r), errno
			clear(c.iov) // hold no pointers into the caller's buffers
		}
		switch e {
		case 0:
			if n == 0 {
				// No progress and no error: give up rather than spin, as
				// net.Conn does.
				c.wshort = true
				return true
			}
			c.consume(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = e
			return true
		}
	}
	return true
}

// consume drops n written bytes from the front of wbufs.
func (c *Conn) consume(n int) {
	c.wn += int64(n)
	for n > 0 {
		if n < len(c.wbufs[0]) {
			c.wbufs[0] = c.wbufs[0][n:]
			return
		}
		n -= len(c.wbufs[0])
		c.wbufs = c.wbufs[1:]
	}
}

// Read reads into p as net.Conn's Read does.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerr = p, 0, 0
	err := c.rc.Read(c.rfunc)
	c.rbuf = nil
	if err != nil {
		return 0, c.opError("read", err)
	}
	if c.rerr != 0 {
		return 0, c.opError("read", os.NewSyscallError("read", c.rerr))
	}
	if c.rn == 0 {
		return 0, io.EOF
	}
	return c.rn, nil
}

// Write writes all of p as net.Conn's Write does.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wone[0] = p
	n, err := c.write(c.wone[:])
	c.wone[0] = nil
	return int(n), err
}

// WriteBuffers writes the buffers in order with as few writev calls as
// they allow, as net.Buffers' WriteTo does for a *net.TCPConn. It keeps
// no reference to bufs.
func (c *Conn) WriteBuffers(bufs [][]byte) (int64, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.write(bufs)
}

func (c *Conn) write(bufs [][]byte) (int64, error) {
	c.wbufs, c.wn, c.werr, c.wshort = c.wback[:0], 0, 0, false
	for _, b := range bufs {
		if len(b) > 0 {
			c.wbufs = append(c.wbufs, b)
		}
	}
	c.wback = c.wbufs[:0] // consume moves wbufs' start; the array is kept here
	if len(c.wbufs) == 0 {
		return 0, nil
	}
	err := c.rc.Write(c.wfunc)
	clear(c.wback[:cap(c.wback)])
	c.wbufs = nil
	if err != nil {
		return c.wn, c.opError("write", err)
	}
	if c.werr != 0 {
		return c.wn, c.opError("write", os.NewSyscallError("write", c.werr))
	}
	if c.wshort {
		return c.wn, c.opError("write", io.ErrUnexpectedEOF)
	}
	return c.wn, nil
}

// opError gives err the shape net.Conn's errors have. RawConn's own
// errors (a deadline, a closed connection) already are *net.OpError,
// named "raw-read" or "raw-write"; they are renamed so that a log reads
// as it did with net.Conn.
func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		e := *oe
		e.Op = op
		return &e
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// CloseWrite shuts down the writing side, as *net.TCPConn's does.
func (c *Conn) CloseWrite() error {
	return c.Conn.(*net.TCPConn).CloseWrite()
}

// WriteBuffers writes bufs to w in order: with writev on a *Conn,
// otherwise through net.Buffers (writev on a *net.TCPConn too).
func WriteBuffers(w io.Writer, bufs ...[]byte) (int64, error) {
	if c, ok := w.(*Conn); ok {
		return c.WriteBuffers(bufs)
	}
	nb := net.Buffers(bufs)
	return nb.WriteTo(w)
}

// Listener returns connections its inner listener accepts, wrapped.
type Listener struct {
	net.Listener
}

// Accept waits for the next connection and wraps it.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
