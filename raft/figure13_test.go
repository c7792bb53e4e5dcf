package raft_test

import (
	"testing"

	"github.com/raftkv/raftkv/driver"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// Rules of Figure 2 (AppendEntries rule 5) and Figure 13 (InstallSnapshot
// rules 6 to 8) that the scenario tests reach only in passing, each shown
// on one follower stepped by hand. docs/guide.md links here from its rule
// tables.

// followerWithSuffix returns S2 of {1,2,3} at term 2, following nobody
// yet, whose durable log is the bootstrap entry, entries 2..6 of term 2
// and a suffix 7..10 of term 2 that a leader of term 2 appended and never
// committed. Its commit index is 1.
func followerWithSuffix(t *testing.T) *follower {
	t.Helper()
	st := newMemStore()
	_, ents, err := raft.Bootstrap([]pb.NodeID{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := pb.Index(2); i <= 10; i++ {
		ents = append(ents, pb.Entry{Index: i, Term: 2, Data: []byte{byte(i)}})
	}
	if err := st.Append(ents); err != nil {
		t.Fatal(err)
	}
	st.SetHardState(pb.HardState{Term: 2, Vote: 1, Commit: 1})
	r, err := raft.New(raft.Config{ID: 2, Storage: st, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	f := &follower{Raft: r, store: st}
	f.drain(t)
	return f
}

// follower is one core and its durable log, driven by hand.
type follower struct {
	*raft.Raft
	store *memStore
}

// drain hands out the core's Readys, persists each (driver.PersistBatch) and
// advances it, as a runtime would, and returns them.
func (f *follower) drain(t *testing.T) []raft.Ready {
	t.Helper()
	var out []raft.Ready
	for f.HasReady() {
		rd := f.Ready()
		if err := driver.PersistBatch(f.store, []raft.Ready{rd}, func([]pb.Message) {}); err != nil {
			t.Fatal(err)
		}
		if err := f.Advance(rd); err != nil {
			t.Fatal(err)
		}
		out = append(out, rd)
	}
	return out
}

// appendAcks returns the AppendEntriesResp messages of the Readys.
func appendAcks(rds []raft.Ready) []pb.Message {
	var out []pb.Message
	for _, rd := range rds {
		for _, ms := range [][]pb.Message{rd.Messages, rd.MessagesAfterPersist} {
			for _, m := range ms {
				if m.Type == pb.MsgAppendEntriesResp {
					out = append(out, m)
				}
			}
		}
	}
	return out
}

// TestAppendEntriesCommitCappedAtLastNewEntry shows AppendEntries receiver
// rule 5: commitIndex = min(leaderCommit, index of last new entry). The
// leader of term 3 has committed up to 8 with entries 7 and 8 of its own
// term; its AppendEntries carries only entry 6 (prevLogIndex 5). S2's log
// holds entry 6 and, after it, a divergent suffix 7..10 of term 2 that the
// message does not contradict, so nothing is truncated. Committing up to
// leaderCommit (8), or to S2's last index, would commit S2's entries 7 and
// 8, which are not the leader's: State Machine Safety broken. S2 must
// commit up to 6 only, and apply nothing past it.
func TestAppendEntriesCommitCappedAtLastNewEntry(t *testing.T) {
	r := followerWithSuffix(t)
	m := pb.Message{Type: pb.MsgAppendEntries, From: 1, To: 2, Term: 3, Index: 5, LogTerm: 2,
		Entries: []pb.Entry{{Index: 6, Term: 2, Data: []byte{6}}}, Commit: 8}
	if err := r.Step(m); err != nil {
		t.Fatal(err)
	}
	rds := r.drain(t)
	st := r.Status()
	if st.Commit != 6 {
		t.Fatalf("commit index %d after leaderCommit 8 with last new entry 6, want 6", st.Commit)
	}
	if st.LastIndex != 10 {
		t.Fatalf("last index %d, want 10: a suffix the message does not contradict is kept (rule 3 deletes only on conflict)", st.LastIndex)
	}
	for _, rd := range rds {
		for _, e := range rd.CommittedEntries {
			if e.Index > 6 {
				t.Fatalf("entry %d handed out to apply; only entries up to 6 are known to match the leader", e.Index)
			}
		}
	}
	acks := appendAcks(rds)
	if len(acks) != 1 || acks[0].Reject || acks[0].Index != 6 {
		t.Fatalf("acknowledgements %v, want one success at index 6 (the last new entry, not 10)", acks)
	}
}

// TestInstallSnapshotKeepsFollowingEntries shows InstallSnapshot receiver
// rule 6: if an existing log entry has the same index and term as the
// snapshot's last included entry, retain the log entries following it.
// S2 holds entries up to 10; a snapshot through 6 (term 2) matches its
// entry 6, so S2 keeps 7..10, commits 6, and has no state machine to reset
// (the entries up to 6 are applied from its own log).
func TestInstallSnapshotKeepsFollowingEntries(t *testing.T) {
	r := followerWithSuffix(t)
	snap := pb.SnapshotMeta{Index: 6, Term: 2, Conf: pb.ConfState{Voters: []pb.NodeID{1, 2, 3}}}
	if err := r.Step(pb.Message{Type: pb.MsgInstallSnapshot, From: 1, To: 2, Term: 3, Snapshot: &snap}); err != nil {
		t.Fatal(err)
	}
	rds := r.drain(t)
	st := r.Status()
	if st.LastIndex != 10 || st.Commit != 6 {
		t.Fatalf("after a matching snapshot through 6: last %d commit %d, want last 10 (the suffix kept) commit 6", st.LastIndex, st.Commit)
	}
	applied := pb.Index(1)
	for _, rd := range rds {
		if rd.Snapshot != nil {
			t.Fatalf("Ready carries snapshot %+v to restore; the log already holds it", *rd.Snapshot)
		}
		for _, e := range rd.CommittedEntries {
			if e.Index != applied+1 {
				t.Fatalf("applied %d after %d", e.Index, applied)
			}
			applied = e.Index
		}
	}
	if applied != 6 {
		t.Fatalf("applied up to %d from the log, want 6", applied)
	}
	acks := appendAcks(rds)
	if len(acks) != 1 || acks[0].Reject || acks[0].Index != 6 {
		t.Fatalf("acknowledgements %v, want one success at index 6", acks)
	}
}

// TestInstallSnapshotDiscardsConflictingLog shows InstallSnapshot receiver
// rules 7 and 8: when the log holds no entry with the snapshot's last
// index and term, discard the entire log and reset the state machine from
// the snapshot, with the snapshot's configuration. S2's entry 8 is of term
// 2; a snapshot through 8 of term 3 replaces the whole log, entries 9 and
// 10 included, and the Ready hands the snapshot out to be restored.
func TestInstallSnapshotDiscardsConflictingLog(t *testing.T) {
	r := followerWithSuffix(t)
	snap := pb.SnapshotMeta{Index: 8, Term: 3, Conf: pb.ConfState{Voters: []pb.NodeID{1, 2, 3, 4}}}
	if err := r.Step(pb.Message{Type: pb.MsgInstallSnapshot, From: 1, To: 2, Term: 3, Snapshot: &snap}); err != nil {
		t.Fatal(err)
	}
	rds := r.drain(t)
	st := r.Status()
	if st.LastIndex != 8 || st.Commit != 8 {
		t.Fatalf("after a conflicting snapshot through 8: last %d commit %d, want 8 and 8 (the log discarded)", st.LastIndex, st.Commit)
	}
	if len(st.Conf.Voters) != 4 {
		t.Fatalf("configuration %+v, want the snapshot's four voters", st.Conf)
	}
	restored := false
	for _, rd := range rds {
		if rd.Snapshot != nil && rd.Snapshot.Index == 8 && rd.Snapshot.Term == 3 {
			restored = true
		}
		for _, e := range rd.CommittedEntries {
			t.Fatalf("entry %d of the discarded log handed out to apply", e.Index)
		}
	}
	if !restored {
		t.Fatal("no Ready hands the snapshot out to reset the state machine")
	}
	acks := appendAcks(rds)
	if len(acks) != 1 || acks[0].Reject || acks[0].Index != 8 {
		t.Fatalf("acknowledgements %v, want one success at index 8", acks)
	}
}

// TestInstallSnapshotStaleTermIgnored shows InstallSnapshot receiver rule
// 1: reply immediately if term < currentTerm. A snapshot from a leader of
// term 1 changes neither S2's log nor its commit index.
func TestInstallSnapshotStaleTermIgnored(t *testing.T) {
	r := followerWithSuffix(t)
	snap := pb.SnapshotMeta{Index: 9, Term: 1, Conf: pb.ConfState{Voters: []pb.NodeID{1, 2, 3}}}
	if err := r.Step(pb.Message{Type: pb.MsgInstallSnapshot, From: 3, To: 2, Term: 1, Snapshot: &snap}); err != nil {
		t.Fatal(err)
	}
	rds := r.drain(t)
	if st := r.Status(); st.LastIndex != 10 || st.Commit != 1 || st.Term != 2 {
		t.Fatalf("after a term-1 snapshot: last %d commit %d term %d, want 10, 1, 2", st.LastIndex, st.Commit, st.Term)
	}
	for _, rd := range rds {
		if rd.Snapshot != nil {
			t.Fatalf("a stale snapshot was installed: %+v", *rd.Snapshot)
		}
	}
}
