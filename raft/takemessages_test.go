package raft_test

import (
	"testing"

	pb "github.com/raftkv/raftkv/raftpb"
)

// TestTakeMessagesAheadOfTheReady shows what a runtime whose Ready pipeline
// is full (its fsync is stalled) may still send: a follower holding
// entries not yet durable answers a heartbeat through TakeMessages, while
// its acknowledgement of those entries stays for the Ready that persists
// them; and once the term moves on and is not yet durable, nothing leaves.
func TestTakeMessagesAheadOfTheReady(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	c.one("x", 3, 10*electionTicks)
	f := c.followerOf(lead)
	r := c.cores[f]
	term, last := r.Term(), c.cores[lead].Status().LastIndex
	// The disk stalls: nothing the follower is handed from now on is advanced.
	step := func(m pb.Message) {
		t.Helper()
		m.From, m.To = lead, f
		if m.Term == 0 {
			m.Term = term
		}
		if err := r.Step(m); err != nil {
			t.Fatal(err)
		}
	}
	step(pb.Message{Type: pb.MsgAppendEntries, Index: last, LogTerm: term,
		Entries: []pb.Entry{{Index: last + 1, Term: term, Data: []byte("y")}}})
	rd := r.Ready()
	if len(rd.Entries) != 1 || len(rd.MessagesAfterPersist) != 1 || !rd.MustSync {
		t.Fatalf("Ready for the new entry: %d entries, %d messages after persist, MustSync %v",
			len(rd.Entries), len(rd.MessagesAfterPersist), rd.MustSync)
	}
	step(pb.Message{Type: pb.MsgAppendEntries, Index: last + 1, LogTerm: term,
		Entries: []pb.Entry{{Index: last + 2, Term: term, Data: []byte("z")}}})
	step(pb.Message{Type: pb.MsgHeartbeat, Commit: last, Context: []byte("hb")})
	got := r.TakeMessages()
	if len(got) != 1 || got[0].Type != pb.MsgHeartbeatResp || string(got[0].Context) != "hb" {
		t.Fatalf("TakeMessages = %v, want only the heartbeat answer", got)
	}
	if again := r.TakeMessages(); len(again) != 0 {
		t.Fatalf("second TakeMessages = %v, want nothing", again)
	}
	rd2 := r.Ready()
	if len(rd2.Messages) != 0 || len(rd2.MessagesAfterPersist) != 1 ||
		rd2.MessagesAfterPersist[0].Type != pb.MsgAppendEntriesResp {
		t.Fatalf("next Ready: now %v, after persist %v; want the acknowledgement after persist only",
			rd2.Messages, rd2.MessagesAfterPersist)
	}

	// A higher term arrives and is not durable: not even a heartbeat answer leaves.
	step(pb.Message{Type: pb.MsgHeartbeat, Term: term + 1, Commit: last, Context: []byte("hb2")})
	if got := r.TakeMessages(); len(got) != 0 {
		t.Fatalf("TakeMessages with term %d not durable = %v, want nothing", term+1, got)
	}
	rd3 := r.Ready()
	if len(rd3.MessagesAfterPersist) != 1 || rd3.MessagesAfterPersist[0].Type != pb.MsgHeartbeatResp {
		t.Fatalf("Ready of the new term: after persist %v, want the heartbeat answer", rd3.MessagesAfterPersist)
	}
}
