package storage

import (
	"bytes"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

// writeBackFS counts the write-backs asked of its files (vfs.WriteBack),
// which it passes on to the files underneath.
type writeBackFS struct {
	vfs.FS
	calls *atomic.Int64
}

type writeBackFile struct {
	vfs.File
	calls *atomic.Int64
}

func (f writeBackFile) WriteBack() error {
	f.calls.Add(1)
	return vfs.WriteBack(f.File)
}

func (fs writeBackFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return writeBackFile{f, fs.calls}, nil
}

func (fs writeBackFS) Create(name string) (vfs.File, error) { return fs.wrap(fs.FS.Create(name)) }
func (fs writeBackFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenFile(name, flag, perm))
}

// TestSegmentZerosWrittenBackInChunks: preparing a segment writes its
// zeros out a chunk at a time, so that the disk never holds the whole
// segment queued ahead of the log's next sync, and the file is still
// all zeros and of the full size.
func TestSegmentZerosWrittenBackInChunks(t *testing.T) {
	var calls atomic.Int64
	fs := writeBackFS{vfs.OS(), &calls}
	path := filepath.Join(t.TempDir(), "seg")
	const size = 4<<20 + 123
	if err := zeroFile(fs, path, size, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := calls.Load(), int64(size/len(zeroChunk)); got < want {
		t.Fatalf("%d write-backs for a %d-byte segment, want at least %d", got, size, want)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != size || !bytes.Equal(b, make([]byte, size)) {
		t.Fatalf("segment of %d bytes, not %d zeros", len(b), size)
	}
}

// TestSnapshotWrittenBackInChunks: a snapshot's data reaches the disk
// while it is written, one write-back per snapWriteBackBytes, and the
// snapshot reads back whole after Commit.
func TestSnapshotWrittenBackInChunks(t *testing.T) {
	var calls atomic.Int64
	fs := writeBackFS{vfs.OS(), &calls}
	s, err := OpenSnapshots(fs, t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	meta := pb.SnapshotMeta{Index: 10, Term: 2, Conf: pb.ConfState{Voters: []pb.NodeID{1}}}
	w, err := s.Create(meta)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 3*snapWriteBackBytes/16+5)
	for p := data; len(p) > 0; {
		n := min(len(p), 64<<10)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if got := calls.Load(); got < 3 {
		t.Fatalf("%d write-backs while writing %d bytes, want at least 3", got, len(data))
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	_, rc, err := s.Open(meta.Index)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got bytes.Buffer
	if _, err := got.ReadFrom(rc); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("read back %d bytes, wrote %d", got.Len(), len(data))
	}
}
