package sim

import (
	"github.com/raftkv/raftkv/driver"
	"testing"

	pb "github.com/raftkv/raftkv/raftpb"
)

// TestStoreCrashKeepsOnlySynced shows the durability model the
// simulator's crashes rely on, for both stores: a Save is visible at once
// but survives a crash only after Sync, an injected fsync failure makes
// nothing durable and stops the store, and a snapshot the application
// takes is durable at once and survives in the snapshot files. (The WAL
// store's crashes do not tear writes here: a torn write may keep part of
// what a failed fsync left.)
func TestStoreCrashKeepsOnlySynced(t *testing.T) {
	t.Run("mem", func(t *testing.T) { testStoreCrash(t, NewMemStore(1, 42)) })
	t.Run("wal", func(t *testing.T) {
		s := NewWALStore(1, 42)
		s.(*walStore).tearing = false
		testStoreCrash(t, s)
	})
}

func testStoreCrash(t *testing.T, s Store) {
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
	if err := s.Sync(); !isDiskFault(err) {
		t.Fatalf("injected failure: %v", err)
	}
	must(s.Crash())
	if term, _ := s.Term(3); term != 1 || s.LastIndex() != 3 || s.DurableHardState().Term != 1 {
		t.Fatalf("a failed sync made something durable: term(3)=%d last %d", term, s.LastIndex())
	}
	conf := pb.ConfState{Voters: []pb.NodeID{1}}
	for _, i := range []pb.Index{1, 2} {
		term, _ := s.Term(i)
		img := image{index: i, term: term, chain: uint64(i), conf: conf}
		must(s.PutImage(img))
		must(s.Compact(img.meta()))
	}
	must(s.Crash())
	meta, ok, err := driver.Recover(s, s.Latest)
	if err != nil || !ok {
		t.Fatalf("recover: %v (found %v)", err, ok)
	}
	img, err := s.Image(meta.Index)
	if err != nil || img.index != 2 || img.chain != 2 || s.FirstIndex() > 3 {
		t.Fatalf("snapshot not durable: %+v (%v), first %d", img, err, s.FirstIndex())
	}
}

// TestWALStoreRecoverInstallsReceivedSnapshot shows the WAL store's start
// as the node's: a snapshot a leader sent is a durable file before the
// core hears of it, so a crash can keep the file and lose the log record
// that installed it; the restart restores the file and installs it in the
// log, with its index committed.
func TestWALStoreRecoverInstallsReceivedSnapshot(t *testing.T) {
	s := NewWALStore(1, 7)
	s.(*walStore).tearing = false
	ents := []pb.Entry{{Index: 1, Term: 1}, {Index: 2, Term: 1}}
	if err := s.Save(pb.HardState{Term: 1, Commit: 1}, nil, ents); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	img := image{index: 10, term: 2, chain: 99, conf: pb.ConfState{Voters: []pb.NodeID{1, 2, 3}}}
	if err := s.PutImage(img); err != nil {
		t.Fatal(err)
	}
	meta := img.meta()
	if err := s.Save(pb.HardState{Term: 2, Commit: 10}, &meta, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Crash(); err != nil { // before the Save was synced
		t.Fatal(err)
	}
	if s.LastIndex() != 2 {
		t.Fatalf("unsynced install survived the crash: last %d", s.LastIndex())
	}
	meta, ok, err := driver.Recover(s, s.Latest)
	if err != nil || !ok {
		t.Fatalf("recover: %v (found %v)", err, ok)
	}
	got, err := s.Image(meta.Index)
	if err != nil {
		t.Fatal(err)
	}
	hs, cs, _ := s.InitialState()
	if got.index != 10 || got.chain != 99 || s.FirstIndex() != 11 || s.LastIndex() != 10 ||
		hs.Commit != 10 || hs.Term != 2 || len(cs.Voters) != 3 {
		t.Fatalf("after recover: image %+v, log [%d, %d], hard state %+v, conf %v",
			got, s.FirstIndex(), s.LastIndex(), hs, cs)
	}
}
