package vfs

import (
	"bytes"
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, f File, s string) {
	t.Helper()
	if _, err := f.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func contents(t *testing.T, fs *FaultFS, name string) string {
	t.Helper()
	b, err := fs.ReadFile(name)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

// TestFaultCrashKeepsOnlySynced shows the durability model: data survives
// a crash only after File.Sync, a name only after SyncDir.
func TestFaultCrashKeepsOnlySynced(t *testing.T) {
	fs := NewFaultFS(1)
	must(t, fs.MkdirAll("/d", 0o755))
	f, err := fs.Create("/d/a")
	must(t, err)
	write(t, f, "synced")
	must(t, f.Sync())
	fs.Crash()
	if _, err := fs.Stat("/d/a"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file without SyncDir survived: %v", err)
	}

	f, _ = fs.Create("/d/a")
	write(t, f, "synced")
	must(t, f.Sync())
	must(t, fs.SyncDir("/d"))
	write(t, f, "+lost")
	fs.Crash()
	if got := contents(t, fs, "/d/a"); got != "synced" {
		t.Fatalf("after crash: %q", got)
	}
	if _, err := f.Write([]byte("x")); !errors.Is(err, ErrCrashed) {
		t.Fatalf("handle from before the crash: %v", err)
	}
}

// TestFaultRenameRemoveNeedSyncDir shows that an unsynced rename or remove
// is undone by a crash.
func TestFaultRenameRemoveNeedSyncDir(t *testing.T) {
	fs := NewFaultFS(1)
	must(t, fs.MkdirAll("/d", 0o755))
	must(t, fs.WriteFile("/d/a", []byte("A")))
	must(t, fs.WriteFile("/d/b", []byte("B")))
	must(t, fs.Rename("/d/a", "/d/c"))
	must(t, fs.Remove("/d/b"))
	if names, _ := fs.ReadDir("/d"); len(names) != 1 || names[0] != "c" {
		t.Fatalf("live names %v", names)
	}
	fs.Crash()
	if names, _ := fs.ReadDir("/d"); len(names) != 2 || names[0] != "a" || names[1] != "b" {
		t.Fatalf("names after crash %v", names)
	}
	must(t, fs.Rename("/d/a", "/d/c"))
	must(t, fs.SyncDir("/d"))
	fs.Crash()
	if got := contents(t, fs, "/d/c"); got != "A" {
		t.Fatalf("renamed file: %q", got)
	}
}

// TestFaultTear shows a torn crash: the last write keeps a prefix of its
// unsynced bytes, as data or as zeros.
func TestFaultTear(t *testing.T) {
	for _, zeroed := range []bool{false, true} {
		fs := NewFaultFS(1)
		must(t, fs.MkdirAll("/d", 0o755))
		must(t, fs.WriteFile("/d/a", []byte("base")))
		f, _ := fs.OpenFile("/d/a", os.O_RDWR|os.O_APPEND, 0)
		write(t, f, "0123456789")
		fs.CrashTearing(4, zeroed)
		want := "base0123"
		if zeroed {
			want = "base\x00\x00\x00\x00"
		}
		if got := contents(t, fs, "/d/a"); got != want {
			t.Fatalf("zeroed=%v: %q, want %q", zeroed, got, want)
		}
	}
}

// TestFaultCrashRandomDeterministic shows that the same seed and the same
// operations give the same files.
func TestFaultCrashRandomDeterministic(t *testing.T) {
	run := func() string {
		fs := NewFaultFS(42)
		fs.MkdirAll("/d", 0o755)
		fs.WriteFile("/d/a", nil)
		var out bytes.Buffer
		for i := 0; i < 20; i++ {
			f, _ := fs.OpenFile("/d/a", os.O_RDWR|os.O_APPEND, 0)
			f.Write(bytes.Repeat([]byte{byte('a' + i)}, 100))
			fs.CrashRandom()
			b, _ := fs.ReadFile("/d/a")
			out.Write(b)
		}
		return out.String()
	}
	if a, b := run(), run(); a != b {
		t.Fatal("CrashRandom is not deterministic")
	}
}

// TestFaultInjectedErrors shows EIO and ENOSPC injection, checkable with
// errors.Is, and that a failed sync makes nothing durable.
func TestFaultInjectedErrors(t *testing.T) {
	fs := NewFaultFS(1)
	must(t, fs.MkdirAll("/d", 0o755))
	must(t, fs.WriteFile("/d/a", nil))
	f, _ := fs.OpenFile("/d/a", os.O_RDWR|os.O_APPEND, 0)
	fs.FailNextWrite(syscall.ENOSPC)
	if _, err := f.Write([]byte("x")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write: %v", err)
	}
	write(t, f, "y")
	fs.FailSyncAfter(1, syscall.EIO)
	must(t, f.Sync())
	write(t, f, "z")
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("sync: %v", err)
	}
	fs.Crash()
	if got := contents(t, fs, "/d/a"); got != "y" {
		t.Fatalf("after failed sync and crash: %q", got)
	}
}

// TestFaultFlipBit shows that a flipped bit is in the durable copy too.
func TestFaultFlipBit(t *testing.T) {
	fs := NewFaultFS(1)
	must(t, fs.MkdirAll("/d", 0o755))
	must(t, fs.WriteFile("/d/a", []byte{0, 0}))
	must(t, fs.FlipBit("/d/a", 1, 0))
	fs.Crash()
	if b, _ := fs.ReadFile("/d/a"); b[1] != 1 {
		t.Fatalf("flip lost: %v", b)
	}
	if err := fs.FlipBit("/d/a", 2, 0); err == nil {
		t.Fatal("flip past the end accepted")
	}
}

// TestFaultReadAtTruncateLock covers the rest of the File and FS surface.
func TestFaultReadAtTruncateLock(t *testing.T) {
	fs := NewFaultFS(1)
	must(t, fs.MkdirAll("/d", 0o755))
	f, _ := fs.Create("/d/a")
	write(t, f, "hello world")
	buf := make([]byte, 5)
	if n, err := f.ReadAt(buf, 6); n != 5 || err != nil || string(buf) != "world" {
		t.Fatalf("ReadAt: %d %v %q", n, err, buf)
	}
	if n, err := f.ReadAt(buf, 8); n != 3 || err != io.EOF {
		t.Fatalf("short ReadAt: %d %v", n, err)
	}
	must(t, f.Truncate(5))
	if fi, _ := f.Stat(); fi.Size() != 5 {
		t.Fatalf("size %d", fi.Size())
	}
	lk, err := fs.Lock("/d")
	must(t, err)
	if _, err := fs.Lock("/d"); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v", err)
	}
	must(t, lk.Close())
	lk, err = fs.Lock("/d")
	must(t, err)
	fs.Crash() // the process died: its lock goes
	if _, err := fs.Lock("/d"); err != nil {
		t.Fatalf("lock after crash: %v", err)
	}
	if _, err := fs.Open("/d/missing"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("open missing: %v", err)
	}
	if _, err := fs.Create("/nodir/x"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("create in missing dir: %v", err)
	}
}

// TestFaultWriteAt shows WriteAt's crash semantics inside a synced,
// zero-filled file (a preallocated one): unsynced bytes are lost at a
// crash, synced ones kept, and the last write tears to a prefix.
func TestFaultWriteAt(t *testing.T) {
	fs := NewFaultFS(1)
	must(t, fs.MkdirAll("/d", 0o755))
	must(t, fs.WriteFile("/d/a", make([]byte, 16)))
	f, err := fs.OpenFile("/d/a", os.O_RDWR, 0)
	must(t, err)
	wa := f.(io.WriterAt)
	if _, err := wa.WriteAt([]byte("abcd"), 2); err != nil {
		t.Fatal(err)
	}
	must(t, f.Sync())
	if _, err := wa.WriteAt([]byte("efgh"), 6); err != nil {
		t.Fatal(err)
	}
	if got := contents(t, fs, "/d/a"); got != "\x00\x00abcdefgh\x00\x00\x00\x00\x00\x00" {
		t.Fatalf("live: %q", got)
	}
	fs.Crash()
	if got := contents(t, fs, "/d/a"); got != "\x00\x00abcd"+string(make([]byte, 10)) {
		t.Fatalf("after crash: %q", got)
	}

	f, _ = fs.OpenFile("/d/a", os.O_RDWR, 0)
	wa = f.(io.WriterAt)
	wa.WriteAt([]byte("0123456789"), 4) // overwrites synced bytes and extends the file
	fs.CrashTearing(3, false)
	if got := contents(t, fs, "/d/a"); got != "\x00\x00ab012"+string(make([]byte, 9)) {
		t.Fatalf("after a torn crash: %q", got)
	}

	a, _ := fs.OpenFile("/d/a", os.O_RDWR|os.O_APPEND, 0)
	if _, err := a.(io.WriterAt).WriteAt([]byte("x"), 0); err == nil {
		t.Fatal("WriteAt on an O_APPEND handle succeeded")
	}
	fs.FailNextWrite(syscall.EIO)
	if _, err := f.(io.WriterAt).WriteAt([]byte("x"), 0); !errors.Is(err, ErrCrashed) {
		t.Fatalf("WriteAt on a handle from before the crash: %v", err)
	}
	f, _ = fs.OpenFile("/d/a", os.O_RDWR, 0)
	if _, err := f.(io.WriterAt).WriteAt([]byte("x"), 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("injected write fault: %v", err)
	}
}

// TestFaultCapacity shows a FaultFS with a capacity: growth past it fails
// with ENOSPC and writes nothing, overwrites inside a file succeed, and
// removing a file frees its bytes.
func TestFaultCapacity(t *testing.T) {
	fs := NewFaultFS(1)
	if err := fs.MkdirAll("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	fs.SetCapacity(100)
	f, err := fs.Create("/d/a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 80)); err != nil {
		t.Fatal(err)
	}
	if free, _ := fs.FreeBytes("/d"); free != 20 {
		t.Fatalf("FreeBytes %d, want 20", free)
	}
	if _, err := f.Write(make([]byte, 30)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write past the capacity: %v, want ENOSPC", err)
	}
	if fi, _ := f.Stat(); fi.Size() != 80 {
		t.Fatalf("a refused write changed the size to %d", fi.Size())
	}
	if _, err := f.(interface {
		WriteAt([]byte, int64) (int, error)
	}).WriteAt([]byte("overwrite"), 10); err != nil {
		t.Fatalf("overwrite inside the file: %v", err)
	}
	if err := f.Truncate(200); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("truncate past the capacity: %v, want ENOSPC", err)
	}
	f.Close()
	if err := fs.Remove("/d/a"); err != nil {
		t.Fatal(err)
	}
	g, _ := fs.Create("/d/b")
	if _, err := g.Write(make([]byte, 100)); err != nil {
		t.Fatalf("write after the remove freed space: %v", err)
	}
}
