package vfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestOSBasics checks the real implementation: write, fdatasync, read
// back, rename and remove with directory syncs, and the directory lock.
func TestOSBasics(t *testing.T) {
	fs := OS()
	dir := t.TempDir()
	f, err := fs.Create(filepath.Join(dir, "a"))
	must(t, err)
	write(t, f, "data")
	must(t, f.Sync())
	must(t, fs.Rename(filepath.Join(dir, "a"), filepath.Join(dir, "b")))
	must(t, fs.SyncDir(dir))
	buf := make([]byte, 4)
	if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != "data" {
		t.Fatalf("ReadAt %q %v", buf, err)
	}
	must(t, f.Close())
	names, err := fs.ReadDir(dir)
	if err != nil || len(names) != 1 || names[0] != "b" {
		t.Fatalf("ReadDir %v %v", names, err)
	}
	lk, err := fs.Lock(dir)
	must(t, err)
	if _, err := fs.Lock(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v", err)
	}
	must(t, lk.Close())
	lk, err = fs.Lock(dir)
	must(t, err)
	must(t, lk.Close())
	must(t, fs.Remove(filepath.Join(dir, "b")))
	if _, err := fs.Stat(filepath.Join(dir, "b")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat removed: %v", err)
	}
}

// TestOSWriteBack: an OS file writes its data out without error and
// keeps it readable; a closed one reports the failure; a file that
// cannot write back (FaultFS) is left alone.
func TestOSWriteBack(t *testing.T) {
	fs := OS()
	f, err := fs.Create(filepath.Join(t.TempDir(), "a"))
	must(t, err)
	data := make([]byte, 2<<20)
	for i := range data {
		data[i] = byte(i)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	must(t, WriteBack(f))
	got := make([]byte, len(data))
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back after WriteBack: %v", err)
	}
	must(t, f.Close())
	if runtime.GOOS == "linux" {
		// The call reaches the kernel: on a closed file it must fail.
		if _, ok := f.(WriteBacker); !ok {
			t.Fatal("an OS file cannot write back on Linux")
		}
		if err := WriteBack(f); err == nil {
			t.Fatal("WriteBack of a closed file succeeded")
		}
	}
	ff, err := NewFaultFS(1).Create("b")
	must(t, err)
	must(t, WriteBack(ff))
}

// TestOSWriteAtSync checks both ways a file of the OS writes and syncs
// buffers in one request: chained in an io_uring where there is one, and
// the plain calls. Each overwrites the middle of a file and extends it.
func TestOSWriteAtSync(t *testing.T) {
	for name, writeSync := range map[string]func(*os.File, [][]byte, int64) (int, error){
		"WriteAtSync": func(f *os.File, bufs [][]byte, off int64) (int, error) {
			return osFile{f}.WriteAtSync(bufs, off)
		},
		"plain calls": writeAtThenSync,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f")
			must(t, os.WriteFile(path, []byte("0123456789"), 0o644))
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			must(t, err)
			defer f.Close()
			n, err := writeSync(f, [][]byte{[]byte("ab"), []byte("cdefghijkl")}, 6)
			if n != 12 || err != nil {
				t.Fatalf("n=%d err=%v, want 12, nil", n, err)
			}
			got, err := os.ReadFile(path)
			must(t, err)
			if string(got) != "012345abcdefghijkl" {
				t.Fatalf("file holds %q", got)
			}
			ro, err := os.Open(path)
			must(t, err)
			defer ro.Close()
			if n, err := writeSync(ro, [][]byte{[]byte("x")}, 0); n != 0 || err == nil {
				t.Fatalf("on a read-only handle: n=%d err=%v, want an error", n, err)
			}
		})
	}
}
