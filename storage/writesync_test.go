package storage

import (
	"io"
	"os"
	"sync/atomic"
	"testing"

	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

// countingFS is the OS file system whose files count the batches they
// write and sync in one request.
type countingFS struct {
	vfs.FS
	writeSyncs *atomic.Int64
}

type countingFile struct {
	vfs.File
	writeSyncs *atomic.Int64
}

func (c countingFile) WriteAtSync(bufs [][]byte, off int64) (int, error) {
	c.writeSyncs.Add(1)
	return c.File.(vfs.WriteSyncer).WriteAtSync(bufs, off)
}

func (c countingFile) WriteAt(p []byte, off int64) (int, error) {
	return c.File.(io.WriterAt).WriteAt(p, off)
}

func (c countingFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return countingFile{f, c.writeSyncs}, nil
}

func (c countingFS) Create(name string) (vfs.File, error) {
	return c.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
}

func (c countingFS) Open(name string) (vfs.File, error) {
	return c.OpenFile(name, os.O_RDONLY, 0)
}

// TestBatchesWrittenAndSyncedInOneRequest shows that on a file system
// whose files can write and sync in one request (the OS's), the log's
// batches that stay within a segment go that way, that batches rolling to
// a new segment still work, and that everything comes back after a
// restart.
func TestBatchesWrittenAndSyncedInOneRequest(t *testing.T) {
	dir := t.TempDir()
	var n atomic.Int64
	fs := countingFS{vfs.OS(), &n}
	l := openLog(t, fs, dir, 4096)
	next := pb.Index(1)
	for range 40 {
		saveSync(t, l, pb.HardState{Term: 1, Commit: next - 1}, nil, mkEnts(next, next+3, 1, 100))
		next += 3
	}
	if len(l.segs) < 3 {
		t.Fatalf("%d segments, want several rolls", len(l.segs))
	}
	if got := n.Load(); got < 20 {
		t.Fatalf("%d of 40 batches written and synced in one request, want most", got)
	}
	want := stateOf(t, l)
	must(t, l.Close())
	l = openLog(t, fs, dir, 4096)
	defer l.Close()
	if err := stateOf(t, l).diff(want); err != nil {
		t.Fatalf("after a restart: %v", err)
	}
	if l.LastIndex() != next-1 {
		t.Fatalf("last index %d, want %d", l.LastIndex(), next-1)
	}
}
