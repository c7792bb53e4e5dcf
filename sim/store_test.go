package sim

import (
	"errors"
	"testing"

	pb "github.com/raftkv/raftkv/raftpb"
)

// TestMemStoreCrashKeepsOnlySynced shows the durability model the
// simulator's crashes rely on: a Save is visible at once but survives a
// crash only after Sync, an injected fsync failure makes nothing durable,
// and a snapshot the application takes is durable at once.
func TestMemStoreCrashKeepsOnlySynced(t *testing.T) {
	s := NewMemStore(1)
	ents := func(lo, hi pb.Index, term pb.Term) []pb.Entry {
		var out []pb.Entry
		for i := lo; i <= hi; i++ {
			out = append(out, pb.Entry{Index: i, Term: term})
		}
		return out
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Save(pb.HardState{Term: 1, Vote: 1, Commit: 2}, nil, ents(1, 3, 1)))
	must(s.Sync())
	must(s.Save(pb.HardState{Term: 2, Vote: 2, Commit: 3}, nil, ents(4, 5, 2)))
	if s.LastIndex() != 5 {
		t.Fatalf("unsynced entries not visible: last %d", s.LastIndex())
	}
	must(s.Crash())
	if hs, _, _ := s.InitialState(); s.LastIndex() != 3 || hs.Term != 1 || hs.Vote != 1 {
		t.Fatalf("after crash: last %d, hard state %+v; want 3 and term 1 vote 1", s.LastIndex(), hs)
	}
	must(s.Save(pb.HardState{Term: 3, Commit: 3}, nil, ents(3, 4, 3)))
	s.FailNextSync()
	if err := s.Sync(); !errors.Is(err, errSyncFailed) {
		t.Fatalf("injected failure: %v", err)
	}
	must(s.Crash())
	if term, _ := s.Term(3); term != 1 || s.LastIndex() != 3 || s.DurableHardState().Term != 1 {
		t.Fatalf("a failed sync made something durable: term(3)=%d last %d", term, s.LastIndex())
	}
	must(s.CreateSnapshot(2, pb.ConfState{Voters: []pb.NodeID{1}}))
	must(s.Crash())
	if snap, _ := s.Snapshot(); snap.Index != 2 || s.FirstIndex() != 3 {
		t.Fatalf("snapshot not durable: %+v, first %d", snap, s.FirstIndex())
	}
}
