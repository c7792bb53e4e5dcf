package raft_test

import (
	"testing"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// TestNewWithCommitBehindSnapshot pins the bug simulation seed 59 found: a
// server whose durable snapshot is newer than the commit index of its
// durable hard state (commit-only changes are not synced at once, the
// snapshot is written when the application takes it) refused to restart.
// A snapshot holds only committed entries, so its index is committed.
func TestNewWithCommitBehindSnapshot(t *testing.T) {
	st := logWithCommitBehind(t, 6)
	r, err := raft.New(raft.Config{ID: 1, Storage: st, Applied: 6})
	if err != nil {
		t.Fatalf("restart with commit 3 behind snapshot 6: %v", err)
	}
	if got := r.Committed(); got != 6 {
		t.Fatalf("commit %d after restart, want 6 (the snapshot's index)", got)
	}
}

// TestNewWithCommitBehindApplicationSnapshot pins the bug WAL simulation
// seed 87 found: the node keeps its log compacted only to the snapshot
// before the newest, so after a crash the newest snapshot (the state
// machine's, restored as Applied) can be ahead of both the log's snapshot
// and the durable commit index. The server refused to restart with
// "applied 25 past commit 18". What the application applied is committed.
func TestNewWithCommitBehindApplicationSnapshot(t *testing.T) {
	st := logWithCommitBehind(t, 2)
	r, err := raft.New(raft.Config{ID: 1, Storage: st, Applied: 6})
	if err != nil {
		t.Fatalf("restart with commit 3 and log snapshot 2 behind applied snapshot 6: %v", err)
	}
	if got := r.Committed(); got != 6 {
		t.Fatalf("commit %d after restart, want 6 (the applied index)", got)
	}
	if rd := r.Ready(); len(rd.CommittedEntries) > 0 {
		t.Fatalf("restart hands out entries %d.. again, below the applied index 6", rd.CommittedEntries[0].Index)
	}
	if _, err := raft.New(raft.Config{ID: 1, Storage: st, Applied: 9}); err == nil {
		t.Fatal("restart with applied 9 past the log's last index 8 accepted")
	}
}

// logWithCommitBehind returns a durable log of entries 1..8 (term 2 after
// the bootstrap entry) whose hard state says commit 3, with the log
// compacted by a snapshot at snapIndex.
func logWithCommitBehind(t *testing.T, snapIndex pb.Index) *raft.MemoryStorage {
	t.Helper()
	st := raft.NewMemoryStorage()
	_, ents, err := raft.Bootstrap([]pb.NodeID{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := pb.Index(2); i <= 8; i++ {
		ents = append(ents, pb.Entry{Index: i, Term: 2})
	}
	if err := st.Append(ents); err != nil {
		t.Fatal(err)
	}
	st.SetHardState(pb.HardState{Term: 2, Vote: 1, Commit: 3})
	if err := st.CreateSnapshot(snapIndex, pb.ConfState{Voters: []pb.NodeID{1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	return st
}
