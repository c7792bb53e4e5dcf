package raft

import (
	"errors"
	"strings"
	"testing"

	pb "github.com/raftkv/raftkv/raftpb"
)

// newTestLeader returns S1 leading {1,2,3} in term 2: the configuration
// at 1, its no-op at 2 and commands at 3..5, durable; S2 holds them all,
// so they are committed; S3 has not answered.
func newTestLeader(t *testing.T) (*Raft, *MemoryStorage) {
	t.Helper()
	st := NewMemoryStorage()
	hs, ents, err := Bootstrap([]pb.NodeID{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Append(ents); err != nil {
		t.Fatal(err)
	}
	st.SetHardState(hs)
	r, err := New(Config{ID: 1, Storage: st})
	if err != nil {
		t.Fatal(err)
	}
	r.becomeCandidate()
	r.becomeLeader()
	if _, _, err := r.Propose([]byte("a"), []byte("b"), []byte("c")); err != nil {
		t.Fatal(err)
	}
	rd := r.Ready()
	if err := st.Append(rd.Entries); err != nil {
		t.Fatal(err)
	}
	st.SetHardState(rd.HardState)
	if err := r.Advance(rd); err != nil {
		t.Fatal(err)
	}
	if err := r.Step(pb.Message{Type: pb.MsgAppendEntriesResp, From: 2, To: 1, Term: 2, Index: 5}); err != nil {
		t.Fatal(err)
	}
	if r.Committed() != 5 || r.role != Leader {
		t.Fatalf("setup: %s commit %d, want leader with commit 5", r.role, r.Committed())
	}
	if err := r.CheckInvariants(); err != nil {
		t.Fatalf("setup: %v", err)
	}
	return r, st
}

// TestCheckInvariants shows that each documented invariant of the core's
// state is checked: breaking it makes CheckInvariants fail and name it.
func TestCheckInvariants(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(r *Raft)
		want    string
	}{
		{"applied above applying", func(r *Raft) { r.log.applied = r.log.applying + 1 },
			"want applied 2 <= applying 1"},
		{"commit past the last index", func(r *Raft) { r.log.committed = r.log.lastIndex() + 1 },
			"committed 6 <= last 5"},
		{"entries in progress before the unstable offset", func(r *Raft) {
			r.log.unstable.offsetInProgress = r.log.unstable.offset - 1
		}, "want offset 6 <= in progress 5"},
		{"an unstable entry at the wrong index", func(r *Raft) {
			r.appendLocal([]pb.Entry{{Data: []byte("d")}})
			r.log.unstable.entries[0].Index++
		}, "entry 0 has index 7, want 6"},
		{"an entry of a term past the current one", func(r *Raft) {
			r.appendLocal([]pb.Entry{{Data: []byte("d")}})
			r.log.unstable.entries[0].Term = 3
		}, "last entry 6 has term 3 past the current term 2"},
		{"applying ahead of what was handed out for persistence", func(r *Raft) {
			r.appendLocal([]pb.Entry{{Data: []byte("d")}})
			r.log.commitTo(6)
			r.log.applying = 6
		}, "applying 6 not yet handed out"},
		{"a vote changed after it was handed out", func(r *Raft) { r.vote = 3 }, "handed out, now term 2 vote 3"},
		{"a leader that did not vote for itself", func(r *Raft) {
			r.vote, r.prevHard.Vote, r.durableHard.Vote = 3, 3, 3
		}, "leader with lead 1 vote 3"},
		{"a candidate that did not vote for itself", func(r *Raft) {
			r.role, r.lead = Candidate, pb.None
			r.vote, r.prevHard.Vote, r.durableHard.Vote = 2, 2, 2
		}, "candidate with vote 2"},
		{"a role the configuration does not give", func(r *Raft) {
			r.becomeFollower(r.term, 2)
			r.role = Learner
		}, "role learner, the configuration"},
		{"a follower holding a transfer", func(r *Raft) {
			r.becomeFollower(r.term, 2)
			r.leadTransferee = 3
		}, "holds leader state: transferee 3"},
		{"reads miscounted", func(r *Raft) { r.reads.count++ }, "reads: 0 held, counted 1"},
		{"a hard state handed out ahead of memory", func(r *Raft) { r.prevHard.Term = r.term + 1 },
			"handed out, now term 2"},
		{"a pending configuration at or below the commit index", func(r *Raft) {
			r.confs = append(r.confs, confRecord{index: r.log.committed, conf: r.conf()})
		}, "pending configuration at 5"},
		{"an invalid configuration", func(r *Raft) {
			r.confs[0].conf.Learners = []pb.NodeID{1}
		}, "1 is both voter and learner"},
		{"a tracker out of step with the configuration", func(r *Raft) { r.trk.Learners = []pb.NodeID{7} },
			"tracker holds"},
		{"a follower's match not below its next", func(r *Raft) {
			r.trk.Progress[3].Match = r.trk.Progress[3].Next
		}, "member 3: progress"},
		{"a follower's next past the log", func(r *Raft) { r.trk.Progress[2].Next = 9 },
			"member 2: next 9 past last index 5"},
		{"the leader's own match off its durable log", func(r *Raft) { r.trk.Progress[1].Match = 4 },
			"leader's own match 4, durable last index 5"},
		{"a learner flag the configuration does not give", func(r *Raft) { r.trk.Progress[2].IsLearner = true },
			"member 2: learner flag true"},
		{"a follower holding heartbeat rounds", func(r *Raft) {
			r.bcastHeartbeat()
			r.becomeFollower(r.term, 2)
			r.reads.sent = append(r.reads.sent, roundSent{seq: 1})
		}, "lease: follower holds 1 round send ticks"},
		{"round send ticks out of order", func(r *Raft) {
			r.ticks = 3
			r.bcastHeartbeat()
			r.ticks = 4
			r.bcastHeartbeat()
			r.reads.sent[1].tick = 2
		}, "lease: round send ticks"},
		{"an answer backing the lease past its window", func(r *Raft) {
			seq := r.bcastHeartbeat()
			r.reads.acked = map[pb.NodeID]roundAck{2: {seq: seq, leaseEnd: r.ticks + r.leaseTicks() + 1}}
		}, "lease: member 2 answered round 1"},
		{"Readys outstanding out of order", func(r *Raft) {
			r.outstanding = append(r.outstanding, readyRecord{id: r.nextReadyID}, readyRecord{id: r.nextReadyID - 1})
		}, "readys: outstanding"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := newTestLeader(t)
			tc.corrupt(r)
			err := r.CheckInvariants()
			if err == nil {
				t.Fatalf("no violation reported")
			}
			if !errors.Is(err, ErrInvariant) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrInvariant naming %q", err, tc.want)
			}
		})
	}
}

// TestCheckInvariantsSkipsAFailedCore shows that a core stopped on a failed
// read is not checked: it promises only to refuse work.
func TestCheckInvariantsSkipsAFailedCore(t *testing.T) {
	r, _ := newTestLeader(t)
	r.log.fail(errors.New("disk: input/output error"))
	r.log.applied = r.log.applying + 1
	if err := r.CheckInvariants(); err != nil {
		t.Fatalf("failed core checked: %v", err)
	}
}
