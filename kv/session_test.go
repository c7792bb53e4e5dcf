package kv

import (
	"fmt"
	"slices"
	"testing"

	"github.com/raftkv/raftkv/raftpb"
)

func withToken(c Command, token string) Command {
	c.IdempotencyKey = token
	return c
}

func TestIdempotentRetryReturnsFirstResult(t *testing.T) {
	// A retry with the same idempotency key gets the first attempt's Result,
	// Index included, and applies nothing again: an append is not doubled.
	r := newReplica(Config{})
	first := r.do(withToken(appendCmd("k", "x"), "tok-1"))
	r.do(put("other", "v"))
	retry := r.do(withToken(appendCmd("k", "x"), "tok-1"))
	if *retry != *first || retry.Index != 1 {
		t.Fatalf("retry %+v, want first result %+v", *retry, *first)
	}
	mustGet(t, r.Store, "k", "x", 2)
	if r.AppliedIndex() != 3 {
		t.Fatalf("applied %d, want 3: a retry still takes its log position", r.AppliedIndex())
	}
	// A failed first attempt is remembered too: the retry does not succeed
	// where the original failed.
	c := withToken(put("k", "y"), "tok-2")
	c.Cond, c.Rev = CondRevMatch, 99
	failed := r.do(c)
	mustCode(t, failed, CodePreconditionFailed)
	c.Rev = 1
	if again := r.do(c); *again != *failed {
		t.Fatalf("retry after failure %+v, want %+v", *again, *failed)
	}
	mustGet(t, r.Store, "k", "x", 2)
	// Different tokens are different writes.
	mustCode(t, r.do(withToken(appendCmd("k", "z"), "tok-3")), CodeOK)
	mustGet(t, r.Store, "k", "xz", 4)
	if r.Sessions() != 3 {
		t.Fatalf("%d sessions, want 3", r.Sessions())
	}
}

func TestIdempotentRejectionIsNotRecorded(t *testing.T) {
	// A command refused by validation does not take a session, so a fixed
	// retry with the same token is applied.
	r := newReplica(Config{MaxValueBytes: 2})
	mustCode(t, r.do(withToken(put("k", "long"), "tok")), CodeTooLarge)
	mustCode(t, r.do(withToken(put("k", "ok"), "tok")), CodeOK)
	mustGet(t, r.Store, "k", "ok", 2)
}

func TestSessionsExpireByLogPosition(t *testing.T) {
	// A session recorded at index i is remembered up to index
	// i+SessionWindow-1 and forgotten from i+SessionWindow on, whatever
	// commands fill the gap.
	const window = 10
	r := newReplica(Config{SessionWindow: window})
	r.do(withToken(appendCmd("k", "a"), "tok")) // index 1
	for r.next < 1+window-1 {
		r.raw(nil)
	}
	if res := r.do(withToken(appendCmd("k", "a"), "tok")); res.Index != 1 { // index 10
		t.Fatalf("retry inside the window got %+v", *res)
	}
	mustGet(t, r.Store, "k", "a", 2)
	res := r.do(withToken(appendCmd("k", "a"), "tok")) // index 11: expired
	if res.Index != 11 {
		t.Fatalf("retry after the window got %+v, want a fresh apply", *res)
	}
	mustGet(t, r.Store, "k", "aa", 3)

	// Expiry counts positions, not Apply calls: a gap in indexes (entries
	// the runtime does not hand to the store) expires alike.
	s := New(Config{SessionWindow: window})
	s.Apply(1, EncodeCommand(withToken(put("k", "v"), "t")))
	s.Apply(100, nil)
	if s.Sessions() != 0 {
		t.Fatalf("%d sessions after a gap larger than the window", s.Sessions())
	}
}

func TestSessionTableIsBounded(t *testing.T) {
	// At MaxSessions the oldest session is forgotten first.
	r := newReplica(Config{MaxSessions: 3})
	for i := range 5 {
		r.do(withToken(appendCmd("k", "x"), fmt.Sprint("tok-", i))) // indexes 1..5
	}
	if r.Sessions() != 3 {
		t.Fatalf("%d sessions, want 3", r.Sessions())
	}
	// tok-0 and tok-1 were evicted: retrying them applies again.
	if res := r.do(withToken(appendCmd("k", "x"), "tok-0")); res.Index != 6 {
		t.Fatalf("evicted token answered from the table: %+v", *res)
	}
	// tok-3 is still there (tok-2 was evicted by the re-recorded tok-0).
	if res := r.do(withToken(appendCmd("k", "x"), "tok-3")); res.Index != 4 {
		t.Fatalf("kept token not answered from the table: %+v", *res)
	}
	if res := r.do(withToken(appendCmd("k", "x"), "tok-2")); res.Index != 8 {
		t.Fatalf("oldest token not evicted: %+v", *res)
	}
	mustGet(t, r.Store, "k", "xxxxxxx", 8)
}

func TestSessionsSurviveSnapshot(t *testing.T) {
	// The session table is part of the snapshot: a retry after a restore
	// is answered from it.
	r := newReplica(Config{})
	first := r.do(withToken(appendCmd("k", "x"), "tok"))
	restored := newReplica(Config{})
	if err := restored.Restore(bytesReader(snapshotBytes(t, r.Store))); err != nil {
		t.Fatal(err)
	}
	restored.next = restored.AppliedIndex() + 1
	if res := restored.do(withToken(appendCmd("k", "x"), "tok")); *res != *first {
		t.Fatalf("retry after restore %+v, want %+v", *res, *first)
	}
	mustGet(t, restored.Store, "k", "x", 2)
}

func TestSessionCloneIsFrozen(t *testing.T) {
	// A clone (what a snapshot writes) keeps the sessions of the moment it
	// was taken, in index order, while the table goes on recording and
	// forgetting across chunk boundaries; it can be read concurrently.
	tab := newSessionTable()
	next := raftpb.Index(1)
	add := func(n int) {
		for range n {
			tab.record(fmt.Sprintf("tok-%d", next), next, Result{Index: next}, 1000)
			next++
		}
	}
	indexes := func(st *sessionTable) []raftpb.Index {
		var out []raftpb.Index
		st.ascend(func(s *session) bool { out = append(out, s.index); return true })
		return out
	}
	add(fifoChunk + 10) // a full chunk and a partial one
	frozen := tab.clone()
	want := indexes(frozen)
	if len(want) != fifoChunk+10 || want[0] != 1 || want[len(want)-1] != raftpb.Index(fifoChunk+10) {
		t.Fatalf("clone holds %d sessions from %v, want 1..%d", len(want), want[:1], fifoChunk+10)
	}
	done := make(chan []raftpb.Index)
	go func() { done <- indexes(frozen) }()
	add(3000) // fills the shared partial chunk, evicts past it (max 1000)
	tab.expire(next, 500)
	if got := <-done; !slices.Equal(got, want) {
		t.Fatalf("concurrent read of the clone changed: %d sessions", len(got))
	}
	if got := indexes(frozen); !slices.Equal(got, want) {
		t.Fatalf("clone changed after the table moved on: %d sessions", len(got))
	}
	live := indexes(tab)
	if len(live) != 499 || live[0] != next-499 || tab.len() != len(tab.byToken) {
		t.Fatalf("table holds %d sessions from %v (map %d), want the 499 newest", len(live), live[:1], len(tab.byToken))
	}
	if _, ok := tab.lookup("tok-1"); ok {
		t.Fatal("an evicted session is still found by token")
	}
	if r, ok := tab.lookup(fmt.Sprintf("tok-%d", next-1)); !ok || r.Index != next-1 {
		t.Fatalf("newest session lookup = %+v, %v", r, ok)
	}
}
