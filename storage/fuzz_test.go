package storage

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"

	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

// seedSegments builds a real two-segment log and returns its files' bytes.
func seedSegments(t testing.TB) [][]byte {
	fs := vfs.NewFaultFS(1)
	l := openLog(t, fs, testDir, 300)
	saveSync(t, l, pb.HardState{Term: 1, Vote: 2}, nil, mkEnts(1, 4, 1, 40))
	saveSync(t, l, pb.HardState{Term: 2, Commit: 2}, nil, mkEnts(3, 6, 2, 40))
	must(t, l.Compact(pb.SnapshotMeta{Index: 2, Term: 1, Conf: pb.ConfState{Voters: []pb.NodeID{1}}}))
	must(t, l.Close())
	var out [][]byte
	for _, s := range l.segs {
		b, err := fs.ReadFile(s.path)
		must(t, err)
		out = append(out, b)
	}
	for len(out) < 2 {
		out = append(out, nil)
	}
	return out
}

// FuzzDecodeRecord feeds arbitrary bytes to the record reader and to every
// payload decoder: errors, never a panic, and a re-encoded record decodes
// to the same payload.
func FuzzDecodeRecord(f *testing.F) {
	for _, seg := range seedSegments(f) {
		f.Add(seg, uint32(1))
	}
	f.Add([]byte{}, uint32(0))
	f.Add(make([]byte, 32), uint32(3))
	f.Fuzz(func(t *testing.T, data []byte, seq uint32) {
		for off := 0; off < len(data); {
			typ, payload, n, err := decodeRecord(data[off:], recordPos(seq, int64(off)))
			if err != nil {
				var re *recordError
				if err != errShortRecord && !errors.As(err, &re) {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				break
			}
			if n < recordHeaderBytes || n > len(data)-off {
				t.Fatalf("record length %d at %d of %d", n, off, len(data))
			}
			decodePayload(typ, payload)
			off += n
		}
		rec := appendRecord(nil, recEntry, recordPos(seq, 7), data)
		_, payload, n, err := decodeRecord(rec, recordPos(seq, 7))
		if len(data) <= recordMaxBytes && (err != nil || n != len(rec) || !bytes.Equal(payload, data)) {
			t.Fatalf("round trip: %v", err)
		}
		if _, _, _, err := decodeRecord(rec, recordPos(seq, 8)); err == nil {
			t.Fatal("record valid at another position")
		}
	})
}

func decodePayload(typ recordType, p []byte) {
	switch typ {
	case recSegmentHeader:
		decodeSegmentHeader(p)
	case recEntry:
		pb.DecodeEntry(p)
	case recHardState:
		pb.DecodeHardState(p)
	case recSnapshot, recCompact:
		pb.DecodeSnapshotMeta(p)
	case recSeal:
		decodeSeal(p)
	}
}

// FuzzOpenDir opens a directory of two segment files of arbitrary bytes.
// Open must fail with a clear error or succeed; when it succeeds (maybe
// after cutting a torn tail) the log must serve reads, take a write, and
// reopen to the same state: a repair is never needed twice.
func FuzzOpenDir(f *testing.F) {
	segs := seedSegments(f)
	f.Add(segs[0], segs[1], uint64(4))
	f.Add(segs[0], []byte{}, uint64(0))
	f.Add(segs[0][:len(segs[0])-3], segs[1], uint64(4))
	f.Fuzz(func(t *testing.T, a, b []byte, first uint64) {
		fs := vfs.NewFaultFS(1)
		must(t, fs.MkdirAll(testDir, 0o755))
		must(t, fs.WriteFile(filepath.Join(testDir, segmentName(1, 1)), a))
		if len(b) > 0 {
			must(t, fs.WriteFile(filepath.Join(testDir, segmentName(2, pb.Index(first))), b))
		}
		l, err := Open(fs, testDir, Options{SegmentBytes: 300, Logger: quietLogger})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("open failed without corruption: %v", err)
			}
			return
		}
		st := stateOf(t, l)
		next := st.last + 1
		must(t, l.Save(pb.HardState{}, nil, []pb.Entry{{Index: next, Term: max(st.hard.Term, termOf(st))}}))
		must(t, l.Close())
		l, err = Open(fs, testDir, Options{SegmentBytes: 300, Logger: quietLogger})
		if err != nil {
			t.Fatalf("reopen after a successful open: %v", err)
		}
		defer l.Close()
		if l.LastIndex() != next {
			t.Fatalf("last index %d after reopen, want %d", l.LastIndex(), next)
		}
		got, _ := l.Entries(st.first, next, 0)
		if err := entsDiff(got, st.ents); err != nil {
			t.Fatalf("reopen changed entries: %v", err)
		}
	})
}

func termOf(st logState) pb.Term {
	if n := len(st.ents); n > 0 {
		return st.ents[n-1].Term
	}
	return st.snap.Term
}
