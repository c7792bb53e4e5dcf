package raft_test

import (
	"slices"
	"testing"

	"github.com/raftkv/raftkv/raft/confchange"
	pb "github.com/raftkv/raftkv/raftpb"
)

// TestConfTakesEffectOnAppendAndRevertsOnTruncation shows the §6 rule
// that a server uses the newest configuration in its log, committed or
// not: S2 appends C_old,new ({1,2,3} & {1,2,4}) from the leader of term 3
// and is in the joint configuration at once, with nothing committed. A
// leader of term 4 that never had that entry overwrites index 11; S2 then
// falls back to the configuration before it, {1,2,3}.
func TestConfTakesEffectOnAppendAndRevertsOnTruncation(t *testing.T) {
	r := followerWithSuffix(t)
	old := pb.ConfState{Voters: []pb.NodeID{1, 2, 3}}
	joint, err := confchange.Enter(old, confchange.Target{Voters: []pb.NodeID{1, 2, 4}})
	if err != nil {
		t.Fatal(err)
	}
	conf := pb.Entry{Index: 11, Term: 3, Type: pb.EntryConfChange, Data: pb.AppendConfState(nil, joint)}
	if err := r.Step(pb.Message{Type: pb.MsgAppendEntries, From: 1, To: 2, Term: 3, Index: 10, LogTerm: 2,
		Entries: []pb.Entry{conf}, Commit: 1}); err != nil {
		t.Fatal(err)
	}
	r.drain(t)
	st := r.Status()
	if st.Commit != 1 {
		t.Fatalf("commit %d, want 1: the configuration entry is not committed", st.Commit)
	}
	if !st.Conf.Joint() || !slices.Equal(st.Conf.Voters, []pb.NodeID{1, 2, 4}) {
		t.Fatalf("configuration in force %s after appending C_old,new, want it at once", st.Conf)
	}
	if err := r.Step(pb.Message{Type: pb.MsgAppendEntries, From: 3, To: 2, Term: 4, Index: 10, LogTerm: 2,
		Entries: []pb.Entry{{Index: 11, Term: 4, Data: []byte("x")}}, Commit: 1}); err != nil {
		t.Fatal(err)
	}
	r.drain(t)
	st = r.Status()
	if st.LastIndex != 11 {
		t.Fatalf("last index %d, want 11", st.LastIndex)
	}
	if st.Conf.Joint() || !slices.Equal(st.Conf.Voters, old.Voters) {
		t.Fatalf("configuration %s after its entry was overwritten, want %s again", st.Conf, old)
	}
}
