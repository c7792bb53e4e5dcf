package raft

import (
	"fmt"

	"github.com/raftkv/raftkv/raft/confchange"
	pb "github.com/raftkv/raftkv/raftpb"
)

// Bootstrap returns what every initial member of a new cluster persists
// before its first start: one configuration entry at index 1, term 1, naming
// the voters, already committed. Every member writes the identical entry, so
// the logs agree (Log Matching) and a member that joins later learns the
// configuration by replication like any other entry.
func Bootstrap(voters []pb.NodeID) (pb.HardState, []pb.Entry, error) {
	return BootstrapConf(confchange.Target{Voters: voters})
}

// bootstrapTerm is the term of the bootstrap entry. No leader is ever
// elected in it: the first election is for the next term.
const bootstrapTerm pb.Term = 1

// BootstrapConf is Bootstrap with learners and a configuration Context.
func BootstrapConf(target confchange.Target) (pb.HardState, []pb.Entry, error) {
	t, err := confchange.Enter(pb.ConfState{}, target)
	if err != nil {
		return pb.HardState{}, nil, fmt.Errorf("raft: bootstrap: %w", err)
	}
	t.VotersOutgoing = nil // nothing to leave from
	e := pb.Entry{Term: bootstrapTerm, Index: 1, Type: pb.EntryConfChange, Data: pb.AppendConfState(nil, t)}
	return pb.HardState{Term: bootstrapTerm, Commit: 1}, []pb.Entry{e}, nil
}
