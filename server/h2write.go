package server

import (
	"net"
	"sync"
	"time"
)

// h2Writer writes an h2c connection's output behind net/http's HTTP/2
// server. That server flushes whenever its queue of frames runs dry, and
// with one stream's answer at a time ready it flushes every answer with a
// system call of its own. Here a flush copies the bytes and returns; one
// goroutine writes whatever has gathered meanwhile, so the answers of the
// streams released together by one read barrier leave in one call.
//
// A connection's output in memory is bounded by twice h2WriteBehind: what
// waits, and the batch being written. A Write waits for room. The first write error is returned by every later Write. Close
// first lets what is waiting go out, for at most h2CloseFlush.
type h2Writer struct {
	c       net.Conn
	mu      sync.Mutex
	cond    sync.Cond // the writer waits for output, Write and Close for room or an empty queue
	pending []byte
	spare   []byte
	writing bool  // the writer holds a batch taken from pending
	started bool  // the writer goroutine runs
	closed  bool  // Close was called: no more output
	err     error // the first write error
}

const (
	// h2WriteBehind bounds one connection's output waiting for the writer.
	h2WriteBehind = 256 << 10
	// h2CloseFlush bounds how long Close waits for that output to leave
	// (a GOAWAY frame, the last answers) before it closes anyway.
	h2CloseFlush = time.Second
)

func newH2Writer(c net.Conn) *h2Writer {
	w := &h2Writer{c: c}
	w.cond.L = &w.mu
	return w
}

func (w *h2Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.err == nil && !w.closed && len(w.pending) > 0 && len(w.pending)+len(p) > h2WriteBehind {
		w.cond.Wait()
	}
	switch {
	case w.err != nil:
		return 0, w.err
	case w.closed:
		return 0, net.ErrClosed
	}
	if !w.started {
		w.started = true
		go w.run()
	}
	w.pending = append(w.pending, p...)
	w.cond.Broadcast()
	return len(p), nil
}

// run writes batches until the connection is closed and drained, or a
// write fails.
func (w *h2Writer) run() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for len(w.pending) == 0 && !w.closed && w.err == nil {
			w.cond.Wait()
		}
		if len(w.pending) == 0 || w.err != nil {
			w.cond.Broadcast()
			return
		}
		batch := w.pending
		w.pending, w.spare, w.writing = w.spare[:0], nil, true
		w.mu.Unlock()
		_, err := w.c.Write(batch)
		w.mu.Lock()
		w.writing = false
		if cap(batch) <= h2WriteBehind {
			w.spare = batch[:0]
		}
		if err != nil && w.err == nil {
			w.err = err
		}
		w.cond.Broadcast()
	}
}

// drain waits until nothing is waiting or being written, or a write failed.
func (w *h2Writer) drain() {
	for (len(w.pending) > 0 || w.writing) && w.err == nil {
		w.cond.Wait()
	}
}

// Close lets the waiting output go, for at most h2CloseFlush, and closes
// the connection.
func (w *h2Writer) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		w.cond.Broadcast()
		if w.started {
			// Bounds the writer's last write: a peer that reads nothing
			// must not hold the connection open.
			w.c.SetWriteDeadline(time.Now().Add(h2CloseFlush))
			w.drain()
		}
	}
	w.mu.Unlock()
	return w.c.Close()
}

// CloseWrite half-closes after the waiting output has gone.
func (w *h2Writer) CloseWrite() error {
	w.mu.Lock()
	w.drain()
	err := w.err
	w.mu.Unlock()
	if err != nil {
		return err
	}
	if cw, ok := w.c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
