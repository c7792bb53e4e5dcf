package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// gateConn is a net.Conn whose writes go to a buffer. While the gate is
// shut a write waits, as a system call into a full socket does, until the
// gate opens, the write deadline passes or the connection closes.
type gateConn struct {
	net.Conn // unused methods panic
	mu       sync.Mutex
	cond     sync.Cond
	shut     bool
	closed   bool
	deadline time.Time
	fail     error
	out      bytes.Buffer
	writes   int
}

func newGateConn(shut bool) *gateConn {
	c := &gateConn{shut: shut}
	c.cond.L = &c.mu
	return c
}

func (c *gateConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.shut && !c.closed && (c.deadline.IsZero() || time.Now().Before(c.deadline)) {
		if !c.deadline.IsZero() {
			// Wake at the deadline.
			t := time.AfterFunc(time.Until(c.deadline), func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
			c.cond.Wait()
			t.Stop()
			continue
		}
		c.cond.Wait()
	}
	switch {
	case c.closed:
		return 0, net.ErrClosed
	case c.shut:
		return 0, os.ErrDeadlineExceeded
	case c.fail != nil:
		return 0, c.fail
	}
	c.writes++
	return c.out.Write(p)
}

func (c *gateConn) open() { c.mu.Lock(); c.shut = false; c.cond.Broadcast(); c.mu.Unlock() }

func (c *gateConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.cond.Broadcast()
	c.mu.Unlock()
	return nil
}

func (c *gateConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	return nil
}

func (c *gateConn) state() (out []byte, writes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes()), c.writes
}

// Writes made while the writer is in a system call leave together, in
// order, and Close lets them all out first.
func TestH2WriterGathersWritesInOrder(t *testing.T) {
	c := newGateConn(true)
	w := newH2Writer(c)
	var want bytes.Buffer
	for i := range 100 {
		chunk := fmt.Appendf(nil, "frame %03d;", i)
		want.Write(chunk)
		if n, err := w.Write(chunk); n != len(chunk) || err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	c.open()
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	out, writes := c.state()
	if !bytes.Equal(out, want.Bytes()) {
		t.Fatalf("the connection got %q, want %q", out, want.Bytes())
	}
	// The first write may have been taken alone before the others came.
	if writes > 2 {
		t.Fatalf("%d writes to the connection for 100 writes made while it was busy, want at most 2", writes)
	}
	if _, err := w.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v, want net.ErrClosed", err)
	}
}

// A peer that reads nothing holds at most twice h2WriteBehind of output:
// what waits, and the batch in the system call. Then Write waits. Close
// still returns, after h2CloseFlush.
func TestH2WriterBoundsOutputAndClose(t *testing.T) {
	c := newGateConn(true)
	w := newH2Writer(c)
	chunk := bytes.Repeat([]byte("x"), 4<<10)
	var mu sync.Mutex
	accepted := 0
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := w.Write(chunk); err != nil {
				done <- err
				return
			}
			mu.Lock()
			accepted += len(chunk)
			mu.Unlock()
		}
	}()
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	held := accepted
	mu.Unlock()
	if held > 2*h2WriteBehind {
		t.Fatalf("%d bytes taken for a peer that reads nothing, want at most %d", held, 2*h2WriteBehind)
	}
	if held < h2WriteBehind/2 {
		t.Fatalf("only %d bytes taken before waiting, want about %d", held, h2WriteBehind)
	}
	start := time.Now()
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if d := time.Since(start); d < h2CloseFlush/2 || d > 3*h2CloseFlush {
		t.Fatalf("close took %v, want about %v", d, h2CloseFlush)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the waiting write returned no error after close")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a write waiting for room did not return after close")
	}
}

// A failed write is returned by the writes after it.
func TestH2WriterReportsWriteError(t *testing.T) {
	c := newGateConn(false)
	broken := errors.New("connection reset by peer")
	c.fail = broken
	w := newH2Writer(c)
	if _, err := w.Write([]byte("a")); err != nil {
		t.Fatalf("first write: %v (it is only queued)", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, err := w.Write([]byte("b"))
		if errors.Is(err, broken) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes after a failed one still return %v, want %v", err, broken)
		}
		time.Sleep(time.Millisecond)
	}
	if err := w.CloseWrite(); !errors.Is(err, broken) {
		t.Fatalf("close write after a failed write: %v, want %v", err, broken)
	}
	w.Close()
}

// Over a real connection: everything written arrives, in order, and then
// the end of the stream.
func TestH2WriterOverTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	w := newH2Writer(c)
	var want bytes.Buffer
	for i := range 2000 {
		chunk := bytes.Repeat([]byte{byte(i)}, 1+i%1500)
		want.Write(chunk)
		if _, err := w.Write(chunk); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, want.Bytes()) {
			t.Fatalf("the peer read %d bytes, want the %d written, in order", len(b), want.Len())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the peer did not read to the end")
	}
}
