package storage

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

const snapDir = "/data/snap"

func writeSnap(t *testing.T, s *Snapshots, meta pb.SnapshotMeta, data []byte) {
	t.Helper()
	w, err := s.Create(meta)
	must(t, err)
	for len(data) > 0 { // in uneven pieces, as a stream arrives
		n := min(len(data), 1+len(data)/3)
		_, err := w.Write(data[:n])
		must(t, err)
		data = data[n:]
	}
	must(t, w.Commit())
}

func readSnap(s *Snapshots, index pb.Index) (pb.SnapshotMeta, []byte, error) {
	meta, r, err := s.Open(index)
	if err != nil {
		return meta, nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	return meta, data, err
}

func randBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// TestSnapshotsRoundTrip shows that a committed snapshot reads back whole
// with its meta, survives a crash, and that only the newest keep remain.
func TestSnapshotsRoundTrip(t *testing.T) {
	fs := vfs.NewFaultFS(1)
	s, err := OpenSnapshots(fs, snapDir, 2)
	must(t, err)
	if _, ok := s.Latest(); ok {
		t.Fatal("empty store has a latest snapshot")
	}
	conf := pb.ConfState{Voters: []pb.NodeID{1, 2, 3}, Learners: []pb.NodeID{4}}
	for i := pb.Index(1); i <= 3; i++ {
		writeSnap(t, s, pb.SnapshotMeta{Index: i * 100, Term: 2, Conf: conf}, randBytes(int(i)*300000, uint64(i)))
	}
	fs.Crash()
	s, err = OpenSnapshots(fs, snapDir, 2)
	must(t, err)
	latest, ok := s.Latest()
	if !ok || latest.Index != 300 || !latest.Conf.Equal(conf) {
		t.Fatalf("latest %+v %v", latest, ok)
	}
	meta, data, err := readSnap(s, 300)
	must(t, err)
	if meta.Index != 300 || !bytes.Equal(data, randBytes(900000, 3)) {
		t.Fatalf("read back %d bytes of snapshot %d", len(data), meta.Index)
	}
	if _, _, err := s.Open(100); err == nil {
		t.Fatal("snapshot 100 not pruned")
	}
	names, _ := fs.ReadDir(snapDir)
	if len(names) != 2 {
		t.Fatalf("files %v", names)
	}
}

// TestSnapshotsUncommittedInvisible shows that an aborted or interrupted
// snapshot leaves nothing behind, and Open removes its temporary file.
func TestSnapshotsUncommittedInvisible(t *testing.T) {
	fs := vfs.NewFaultFS(1)
	s, err := OpenSnapshots(fs, snapDir, 1)
	must(t, err)
	w, err := s.Create(pb.SnapshotMeta{Index: 5, Term: 1})
	must(t, err)
	w.Write([]byte("partial"))
	w.Abort()
	w, err = s.Create(pb.SnapshotMeta{Index: 6, Term: 1})
	must(t, err)
	w.Write(randBytes(1<<20, 1))
	must(t, fs.SyncDir(snapDir)) // the temp name is durable; the process dies
	fs.Crash()
	s, err = OpenSnapshots(fs, snapDir, 1)
	must(t, err)
	if _, ok := s.Latest(); ok {
		t.Fatal("uncommitted snapshot visible")
	}
	if names, _ := fs.ReadDir(snapDir); len(names) != 0 {
		t.Fatalf("leftovers %v", names)
	}
}

// TestSnapshotsCorruption shows that damage is reported: a flipped data
// bit by the reader at the end (instead of io.EOF), a damaged header or
// trailer by Open.
func TestSnapshotsCorruption(t *testing.T) {
	data := randBytes(100000, 9)
	for _, tc := range []struct {
		name    string
		off     func(size int64) int64
		atOpen  bool // reported by OpenSnapshots or Open, not by the reader
		atStore bool // reported by OpenSnapshots
	}{
		{"data", func(size int64) int64 { return size / 2 }, false, false},
		{"header", func(int64) int64 { return 12 }, true, true},
		{"trailer length", func(size int64) int64 { return size - 14 }, true, false},
		{"trailer checksum", func(size int64) int64 { return size - 6 }, false, false},
	} {
		fs := vfs.NewFaultFS(1)
		s, err := OpenSnapshots(fs, snapDir, 1)
		must(t, err)
		meta := pb.SnapshotMeta{Index: 7, Term: 1}
		writeSnap(t, s, meta, data)
		path := filepath.Join(snapDir, snapName(meta))
		fi, _ := fs.Stat(path)
		must(t, fs.FlipBit(path, tc.off(fi.Size()), 3))
		s, err = OpenSnapshots(fs, snapDir, 1)
		if tc.atStore {
			wantCorrupt(t, err)
			continue
		}
		must(t, err)
		_, got, err := readSnap(s, 7)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: read %d bytes, err %v; want corruption", tc.name, len(got), err)
		}
		if !tc.atOpen && !strings.Contains(err.Error(), "checksum") {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
}

// TestSnapshotsWriteError shows that a failed write or fsync fails Commit
// and leaves no snapshot.
func TestSnapshotsWriteError(t *testing.T) {
	fs := vfs.NewFaultFS(1)
	s, err := OpenSnapshots(fs, snapDir, 1)
	must(t, err)
	w, err := s.Create(pb.SnapshotMeta{Index: 3, Term: 1})
	must(t, err)
	w.Write([]byte("abc"))
	fs.FailNextSync(errors.New("injected"))
	if err := w.Commit(); err == nil {
		t.Fatal("Commit succeeded despite the failed fsync")
	}
	if _, ok := s.Latest(); ok {
		t.Fatal("failed snapshot visible")
	}
}
