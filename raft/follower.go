package raft

import (
	"math"

	"github.com/raftkv/raftkv/raft/confchange"
	pb "github.com/raftkv/raftkv/raftpb"
)

// handleAppendEntries is the receiver side of AppendEntries (Figure 2).
func (r *Raft) handleAppendEntries(m pb.Message) {
	if !wellFormedEntries(m) {
		return // a malformed message changes nothing
	}
	// Rule 1 (reply false if term < currentTerm) was applied by stepTerm.
	if m.Index < r.log.committed {
		// Everything up to committed already matches the leader's log.
		r.send(pb.Message{To: m.From, Type: pb.MsgAppendEntriesResp, Index: r.log.committed})
		return
	}
	if !r.log.matchTerm(m.Index, m.LogTerm) && !(mutated(MutationSkipLogMatching) && m.Index <= r.log.lastIndex()) {
		// Rule 2: no entry at prevLogIndex whose term matches prevLogTerm.
		// Reject with a hint: the largest index <= prevLogIndex whose term
		// is <= prevLogTerm, where the logs may match. The leader skips
		// back a whole term per round trip instead of one entry.
		hint, hintTerm := r.log.findConflictByTerm(min(m.Index, r.log.lastIndex()), m.LogTerm)
		r.send(pb.Message{To: m.From, Type: pb.MsgAppendEntriesResp, Index: m.Index, Reject: true,
			Hint: hint, HintTerm: hintTerm})
		return
	}
	// Rules 3 and 4: delete a conflicting suffix (never an entry that
	// matches, §5.3 Log Matching), append the entries not already there.
	lastNew := m.Index + pb.Index(len(m.Entries))
	if ci := r.log.findConflict(m.Entries); ci != 0 {
		if ci <= r.log.committed {
			return // would rewrite a committed entry: not from a correct leader
		}
		r.appendToLog(m.Entries[ci-m.Entries[0].Index:])
	}
	// Rule 5: commitIndex = min(leaderCommit, index of last new entry).
	if r.log.commitTo(min(m.Commit, lastNew)) {
		r.afterCommit()
	}
	r.send(pb.Message{To: m.From, Type: pb.MsgAppendEntriesResp, Index: lastNew})
}

// wellFormedEntries checks what a correct leader always sends: entries
// contiguous after prevLogIndex, terms not above the message's and not
// decreasing, configuration entries that decode and are valid.
func wellFormedEntries(m pb.Message) bool {
	prevTerm := m.LogTerm
	if prevTerm > m.Term {
		return false
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Index != m.Index+pb.Index(i)+1 || e.Term < prevTerm || e.Term > m.Term {
			return false
		}
		prevTerm = e.Term
		switch e.Type {
		case pb.EntryNormal:
		case pb.EntryConfChange:
			cs, err := pb.DecodeConfState(e.Data)
			if err != nil || confchange.Validate(cs) != nil {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// wellFormedSnapshot: a snapshot ends at an entry, which has a term (at
// least 1, at most the sender's) and an index after which a log can go
// on: a snapshot at the largest index would start the log at index 0.
func wellFormedSnapshot(m pb.Message) bool {
	s := m.Snapshot
	return s != nil && s.Index > 0 && s.Index < math.MaxUint64 && s.Term > 0 && s.Term <= m.Term &&
		confchange.Validate(s.Conf) == nil
}

// handleHeartbeat answers the leader's heartbeat, which maintains its
// authority (§5.2) and carries its commit index.
func (r *Raft) handleHeartbeat(m pb.Message) {
	// The leader never sends a commit above what we hold; bound it anyway so
	// a confused message cannot move commit past the log.
	if r.log.commitTo(min(m.Commit, r.log.lastIndex())) {
		r.afterCommit()
	}
	r.send(pb.Message{To: m.From, Type: pb.MsgHeartbeatResp, Context: m.Context})
}

// handleInstallSnapshot is the receiver side of InstallSnapshot (Figure 13).
func (r *Raft) handleInstallSnapshot(m pb.Message) {
	if !wellFormedSnapshot(m) {
		return // a malformed message changes nothing
	}
	s := *m.Snapshot
	switch {
	case s.Index <= r.log.committed:
		// Already have it all.
	case r.log.matchTerm(s.Index, s.Term):
		// Our log holds the snapshot's last entry: keep what follows it
		// (Figure 13, rule 6) and just learn it is committed.
		r.log.commitTo(s.Index)
		r.afterCommit()
	default:
		// Figure 13, rules 7 and 8: discard the log and reset the state
		// machine from the snapshot (and its configuration, §7).
		r.log.restore(s)
		r.confs = []confRecord{{index: s.Index, conf: s.Conf}}
		r.applyConf()
		r.send(pb.Message{To: m.From, Type: pb.MsgAppendEntriesResp, Index: r.log.lastIndex()})
		return
	}
	r.send(pb.Message{To: m.From, Type: pb.MsgAppendEntriesResp, Index: r.log.committed})
}
