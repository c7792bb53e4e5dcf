package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

const testDir = "/data/wal"

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// openLog opens a log with small segments, failing the test on error.
func openLog(t testing.TB, fs vfs.FS, dir string, segBytes int64) *Log {
	t.Helper()
	l, err := Open(fs, dir, Options{SegmentBytes: segBytes, Logger: quietLogger})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return l
}

// mkEnts returns entries lo..hi-1 of term, each with size bytes of data
// that name the entry, so a misplaced entry shows.
func mkEnts(lo, hi pb.Index, term pb.Term, size int) []pb.Entry {
	var out []pb.Entry
	for i := lo; i < hi; i++ {
		out = append(out, pb.Entry{Index: i, Term: term, Data: entryData(i, term, size)})
	}
	return out
}

func entryData(i pb.Index, term pb.Term, size int) []byte {
	if size == 0 {
		return nil
	}
	d := []byte(fmt.Sprintf("%d/%d:", i, term))
	for len(d) < size {
		d = append(d, byte('a'+int(i)%26))
	}
	return d[:size]
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func saveSync(t testing.TB, l *Log, hs pb.HardState, snap *pb.SnapshotMeta, ents []pb.Entry) {
	t.Helper()
	must(t, l.Save(hs, snap, ents))
	must(t, l.Sync())
}

// logState is everything raft.Storage shows, for comparisons.
type logState struct {
	hard        pb.HardState
	snap        pb.SnapshotMeta
	first, last pb.Index
	ents        []pb.Entry
}

func stateOf(t testing.TB, s raft.Storage) logState {
	t.Helper()
	hs, _, err := s.InitialState()
	must(t, err)
	snap, err := s.Snapshot()
	must(t, err)
	st := logState{hard: hs, snap: snap, first: s.FirstIndex(), last: s.LastIndex()}
	if st.last >= st.first {
		st.ents, err = s.Entries(st.first, st.last+1, 0)
		must(t, err)
	}
	return st
}

func (a logState) diff(b logState) error {
	switch {
	case a.hard != b.hard:
		return fmt.Errorf("hard state %+v vs %+v", a.hard, b.hard)
	case a.snap.Index != b.snap.Index || a.snap.Term != b.snap.Term || !a.snap.Conf.Equal(b.snap.Conf):
		return fmt.Errorf("snapshot %+v vs %+v", a.snap, b.snap)
	case a.first != b.first || a.last != b.last:
		return fmt.Errorf("range [%d,%d] vs [%d,%d]", a.first, a.last, b.first, b.last)
	}
	return entsDiff(a.ents, b.ents)
}

func entsDiff(a, b []pb.Entry) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d entries vs %d", len(a), len(b))
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Index != y.Index || x.Term != y.Term || x.Type != y.Type || !bytes.Equal(x.Data, y.Data) {
			return fmt.Errorf("entry %d: %v vs %v", i, x, y)
		}
	}
	return nil
}

func wantCorrupt(t testing.TB, err error) *CorruptError {
	t.Helper()
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("want a *CorruptError, got %v", err)
	}
	return ce
}

// segmentRecords returns the offsets of the records in a segment file's
// bytes and where they end: at the end of the file or where the rest is
// zeros (the free space of a preallocated segment). Anything else fails.
func segmentRecords(t testing.TB, data []byte, path string) (starts []int64, end int64) {
	t.Helper()
	s, err := parseSegmentName(path)
	must(t, err)
	off := int64(0)
	for off < int64(len(data)) {
		_, _, n, err := decodeRecord(data[off:], recordPos(s.seq, off))
		if err != nil {
			if !bytes.Equal(data[off:], make([]byte, len(data)-int(off))) {
				t.Fatalf("%s: bad record at %d: %v", path, off, err)
			}
			break
		}
		starts = append(starts, off)
		off += int64(n)
	}
	return starts, off
}
