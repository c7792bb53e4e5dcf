//go:build linux

package uring

import (
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

func needRing(t *testing.T) {
	t.Helper()
	if !Available() {
		if runtime.GOOS == "linux" && os.Getenv("CI") != "" {
			t.Fatal("io_uring refused on this Linux machine; CI expects it")
		}
		t.Skip("no io_uring here")
	}
}

func TestFdatasyncWritesThrough(t *testing.T) {
	needRing(t)
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := range 50 {
		if _, err := f.Write([]byte("record\n")); err != nil {
			t.Fatal(err)
		}
		ok, err := Fdatasync(f)
		if !ok || err != nil {
			t.Fatalf("sync %d: ok=%v err=%v", i, ok, err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 50*len("record\n") {
		t.Fatalf("file holds %d bytes, want %d", len(b), 50*len("record\n"))
	}
}

// A sync that fails fails as fdatasync(2) would on the same descriptor,
// with the file's name.
func TestFdatasyncErrorMatchesSystemCall(t *testing.T) {
	needRing(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	want := syscall.Fdatasync(int(pw.Fd()))
	if want == nil {
		t.Fatal("fdatasync of a pipe succeeded; the test needs a descriptor it fails on")
	}
	ok, err := Fdatasync(pw)
	if !ok {
		t.Fatal("Fdatasync fell back although a ring is available")
	}
	var pe *os.PathError
	if !errors.As(err, &pe) || pe.Op != "fdatasync" || pe.Path != pw.Name() || !errors.Is(err, want) {
		t.Fatalf("err = %v, want fdatasync %s: %v", err, pw.Name(), want)
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// Concurrent syncs each get a ring; no more than maxIdle stay open after:
// the rest are closed, and their descriptors with them.
func TestConcurrentSyncs(t *testing.T) {
	needRing(t)
	dir := t.TempDir()
	before := openFDs(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Create(filepath.Join(dir, string(rune('a'+g))))
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			for range 20 {
				f.Write([]byte("x"))
				if ok, err := Fdatasync(f); !ok || err != nil {
					errs <- errors.Join(errors.New("sync failed or fell back"), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if after := openFDs(t); after > before+maxIdle {
		t.Fatalf("%d descriptors open after 16 concurrent syncers, %d before: rings beyond the %d kept idle were not closed", after, before, maxIdle)
	}
}

// While a sync is in flight the goroutine waits in the poller and its
// processor runs other goroutines: with one processor, a goroutine that
// only counts keeps counting during the syncs. (A sync that held the
// processor, as a blocking io_uring_enter made with RawSyscall would, lets
// it count only between them.)
func TestSyncLeavesProcessorFree(t *testing.T) {
	needRing(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var count atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				count.Add(1)
				runtime.Gosched()
			}
		}
	}()
	syncs, during := 0, 0
	for range 40 {
		f.Write(make([]byte, 4096))
		before := count.Load()
		if ok, err := Fdatasync(f); !ok || err != nil {
			t.Fatalf("sync: ok=%v err=%v", ok, err)
		}
		syncs++
		if count.Load() > before {
			during++
		}
	}
	close(stop)
	<-done
	if during < syncs/2 {
		t.Fatalf("the counting goroutine ran during %d of %d syncs, want at least half", during, syncs)
	}
}

func TestFallbackWhenRefused(t *testing.T) {
	was := disabled.Load()
	disabled.Store(true)
	defer disabled.Store(was)
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ok, err := Fdatasync(f); ok || err != nil {
		t.Fatalf("Fdatasync with io_uring refused: ok=%v err=%v, want false, nil", ok, err)
	}
	if Available() {
		t.Fatal("Available with io_uring refused")
	}
}

func TestWriteSyncWritesAtOffset(t *testing.T) {
	needRing(t)
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("0123456789abcdefghij"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ok, n, err := WriteSync(f, [][]byte{[]byte("AB"), []byte("CDE"), []byte("F")}, 4)
	if !ok || err != nil || n != 6 {
		t.Fatalf("WriteSync: ok=%v n=%d err=%v, want true 6 nil", ok, n, err)
	}
	// Past the end too: the file grows as with pwrite.
	ok, n, err = WriteSync(f, [][]byte{[]byte("XYZ")}, 19)
	if !ok || err != nil || n != 3 {
		t.Fatalf("WriteSync at the end: ok=%v n=%d err=%v", ok, n, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "0123ABCDEFabcdefghiXYZ"; string(b) != want {
		t.Fatalf("file holds %q, want %q", b, want)
	}
}

// A write that fails reports the write's error, as pwrite(2) would on the
// same descriptor, and nothing after it runs.
func TestWriteSyncWriteError(t *testing.T) {
	needRing(t)
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path) // read-only: writes fail with EBADF
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, want := f.WriteAt([]byte("x"), 0)
	ok, n, err := WriteSync(f, [][]byte{[]byte("xy"), []byte("z")}, 0)
	if !ok {
		t.Fatal("WriteSync fell back although a ring is available")
	}
	var pe *os.PathError
	if !errors.As(err, &pe) || pe.Op != "write" || !errors.Is(err, syscall.EBADF) || n != 0 {
		t.Fatalf("WriteSync on a read-only file: n=%d err=%v, want 0 and %v", n, err, want)
	}
}

// A write cut short (here by RLIMIT_FSIZE) stops the chain; WriteSync
// goes on with plain calls, which then report the limit, and counts what
// was written.
func TestWriteSyncShortWrite(t *testing.T) {
	needRing(t)
	signal.Ignore(syscall.SIGXFSZ)
	defer signal.Reset(syscall.SIGXFSZ)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lim := old
	lim.Cur = 100
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skipf("cannot lower RLIMIT_FSIZE: %v", err)
	}
	ok, n, err := WriteSync(f, [][]byte{make([]byte, 60), make([]byte, 60), make([]byte, 10)}, 0)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if !ok || n != 100 || !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("WriteSync across the limit: ok=%v n=%d err=%v, want true, 100, EFBIG", ok, n, err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != 100 {
		t.Fatalf("file size %v (%v), want 100", fi.Size(), err)
	}
}

func TestWriteSyncDeclines(t *testing.T) {
	needRing(t)
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	many := make([][]byte, entries) // more writes than a chain holds
	for i := range many {
		many[i] = []byte("x")
	}
	for _, bufs := range [][][]byte{many, {[]byte("a"), {}}} {
		if ok, n, err := WriteSync(f, bufs, 0); ok || n != 0 || err != nil {
			t.Fatalf("WriteSync of %d buffers: ok=%v n=%d err=%v, want a decline", len(bufs), ok, n, err)
		}
	}
	if fi, _ := f.Stat(); fi.Size() != 0 {
		t.Fatalf("a declined WriteSync wrote %d bytes", fi.Size())
	}
}
