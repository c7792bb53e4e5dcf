package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// pair returns both ends of a loopback TCP connection, a wrapped.
func pair(t *testing.T) (a *Conn, b net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	w, ok := Wrap(c).(*Conn)
	if !ok {
		t.Fatalf("Wrap(%T) did not wrap", c)
	}
	t.Cleanup(func() { w.Close(); b.Close() })
	return w, b
}

// pattern is n bytes that show where a byte went missing or was repeated.
func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7) + seed
	}
	return p
}

func TestReadWriteAndEOF(t *testing.T) {
	a, b := pair(t)
	if _, err := b.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := a.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read = %q, %v; want hello", buf[:n], err)
	}
	if n, err := a.Write([]byte("world")); n != 5 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if _, err := io.ReadFull(b, buf[:5]); err != nil || string(buf[:5]) != "world" {
		t.Fatalf("peer read %q, %v; want world", buf[:5], err)
	}
	if n, err := a.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v", n, err)
	}
	b.Close()
	if n, err := a.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after the peer closed = %d, %v; want 0, EOF", n, err)
	}
}

// A write larger than the socket's buffers meets EAGAIN, waits for the
// poller and goes on where it stopped.
func TestLargeWriteArrivesWhole(t *testing.T) {
	a, b := pair(t)
	want := pattern(16<<20, 3)
	got := make(chan []byte, 1)
	go func() {
		var buf bytes.Buffer
		chunk := make([]byte, 4096)
		for {
			n, err := b.Read(chunk)
			buf.Write(chunk[:n])
			if err != nil {
				break
			}
			time.Sleep(10 * time.Microsecond) // slower than the writer
		}
		got <- buf.Bytes()
	}()
	n, err := a.Write(want)
	if n != len(want) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(want))
	}
	a.Close()
	if g := <-got; !bytes.Equal(g, want) {
		t.Fatalf("peer got %d bytes, differing from the %d written", len(g), len(want))
	}
}

func TestWriteBuffers(t *testing.T) {
	a, b := pair(t)
	// More buffers than one writev takes, empty ones among them, and one
	// large enough to fill the socket.
	var bufs [][]byte
	var want []byte
	for i := range 3000 {
		p := pattern(i%13, byte(i))
		if i == 1500 {
			p = pattern(4<<20, 9)
		}
		bufs = append(bufs, p)
		want = append(want, p...)
	}
	got := make(chan []byte, 1)
	go func() {
		all, _ := io.ReadAll(b)
		got <- all
	}()
	n, err := WriteBuffers(a, bufs...)
	if n != int64(len(want)) || err != nil {
		t.Fatalf("WriteBuffers = %d, %v; want %d, nil", n, err, len(want))
	}
	a.Close()
	if g := <-got; !bytes.Equal(g, want) {
		t.Fatalf("peer got %d bytes, differing from the %d written", len(g), len(want))
	}
	for i, p := range bufs {
		if i != 1500 && len(p) != i%13 {
			t.Fatalf("buffer %d changed length to %d", i, len(p))
		}
	}
}

// WriteBuffers on anything else goes through net.Buffers.
func TestWriteBuffersOtherWriter(t *testing.T) {
	var w bytes.Buffer
	n, err := WriteBuffers(&w, []byte("a"), nil, []byte("bc"))
	if n != 3 || err != nil || w.String() != "abc" {
		t.Fatalf("WriteBuffers = %d, %v, %q", n, err, w.String())
	}
}

func TestReadDeadline(t *testing.T) {
	a, _ := pair(t)
	a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	start := time.Now()
	_, err := a.Read(make([]byte, 8))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past its deadline = %v; want a deadline error", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("error %v is not a net.Error timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("error %v: want a *net.OpError named read", err)
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Fatal("Read returned before its deadline")
	}
}

func TestWriteDeadline(t *testing.T) {
	a, _ := pair(t) // the peer never reads, so the buffers fill
	big := make([]byte, 64<<20)
	a.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	n, err := a.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write past its deadline = %d, %v; want a deadline error", n, err)
	}
	if n <= 0 || n >= 64<<20 {
		t.Fatalf("Write reported %d bytes; want what the buffers took", n)
	}
}

// Close unblocks a read waiting for data, as with net.Conn.
func TestCloseDuringRead(t *testing.T) {
	a, _ := pair(t)
	done := make(chan error, 1)
	go func() {
		_, err := a.Read(make([]byte, 8))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	a.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close = %v; want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked after Close")
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close = %v; want net.ErrClosed", err)
	}
}

// Concurrent writes never interleave, and a read runs beside them.
func TestConcurrentUse(t *testing.T) {
	a, b := pair(t)
	const writers, each, size = 4, 200, 1000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := bytes.Repeat([]byte{byte('a' + w)}, size)
			for range each {
				if _, err := a.Write(msg); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	echoed := make(chan error, 1)
	go func() {
		buf := make([]byte, 3)
		_, err := io.ReadFull(a, buf)
		if err == nil && string(buf) != "abc" {
			err = errors.New("read " + string(buf))
		}
		echoed <- err
	}()
	if _, err := b.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, size)
	for range writers * each {
		if _, err := io.ReadFull(b, msg); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(msg, bytes.Repeat(msg[:1], size)) {
			t.Fatalf("writes interleaved: %q...", msg[:40])
		}
	}
	wg.Wait()
	if err := <-echoed; err != nil {
		t.Fatal(err)
	}
}

// CloseWrite half-closes: the peer reads EOF and can still answer.
func TestCloseWrite(t *testing.T) {
	a, b := pair(t)
	if _, err := a.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := a.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(b); err != nil || string(got) != "bye" {
		t.Fatalf("peer read %q, %v; want bye then EOF", got, err)
	}
	if _, err := b.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "ok" {
		t.Fatalf("read %q, %v after CloseWrite; want ok", buf, err)
	}
}

func TestWrapLeavesOthers(t *testing.T) {
	p, q := net.Pipe()
	defer p.Close()
	defer q.Close()
	if Wrap(p) != p {
		t.Fatal("Wrap changed a pipe")
	}
}

func TestListenerWraps(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Listener{inner}
	defer l.Close()
	go func() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err == nil {
			c.Write([]byte("x"))
			c.Close()
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*Conn); !ok {
		t.Fatalf("Accept returned %T", c)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c, buf); err != nil || buf[0] != 'x' {
		t.Fatalf("read %q, %v", buf, err)
	}
}
