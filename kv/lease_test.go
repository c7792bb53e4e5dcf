package kv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLeaseRevokeDeletesItsKeysAtOneRevision(t *testing.T) {
	// Keys put on a lease are deleted together, in one revision that a
	// watcher sees whole, when the lease is revoked; keys moved to another
	// lease or to none stay.
	r := newReplica(Config{})
	g := r.do(Command{Op: OpLeaseGrant, TTL: 10})
	mustCode(t, g, CodeOK)
	id := g.Lease
	if id != 1 || g.TTL != 10 || g.Revision != 1 {
		t.Fatalf("grant %+v: want id 1 (its index), TTL 10, no new revision", g)
	}
	mustCode(t, r.do(Command{Op: OpLeaseGrant, Lease: id, TTL: 5}), CodeLeaseExists)
	r.do(txnCmd(Txn{Success: []TxnOp{{Kind: OpKindPut, Key: "a", Lease: id}, {Kind: OpKindPut, Key: "b", Lease: id},
		{Kind: OpKindPut, Key: "c", Lease: id}}})) // 2
	r.do(put("c", "no lease now")) // 3
	info, keys, ok := r.Lease(id, true)
	if !ok || info.TTL != 10 || len(keys) != 2 || keys[0] != "a" || keys[1] != "b" {
		t.Fatalf("lease %+v keys %v", info, keys)
	}
	w, err := r.Watch("a", "\x00", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if b, _ := w.Next(context.Background()); len(b.Events) != 0 || b.Revision != 3 {
		t.Fatalf("first batch of a watch from now: %+v", b)
	}
	res := r.do(Command{Op: OpLeaseRevoke, Lease: id})
	mustCode(t, res, CodeOK)
	if res.Revision != 4 {
		t.Fatalf("revoke at revision %d, want 4", res.Revision)
	}
	mustAbsent(t, r.Store, "a")
	mustAbsent(t, r.Store, "b")
	mustGet(t, r.Store, "c", "no lease now", 3)
	b, err := w.Next(context.Background())
	if err != nil || len(b.Events) != 2 || b.Revision != 4 || b.Events[0].Type != EventDelete || b.Events[1].KV.Key != "b" {
		t.Fatalf("watch saw %+v, %v; want both deletes at revision 4", b, err)
	}
	mustCode(t, r.do(Command{Op: OpLeaseRevoke, Lease: id}), CodeLeaseNotFound)
	if _, _, ok := r.Lease(id, false); ok {
		t.Fatal("revoked lease still listed")
	}
}

func TestLeaseLimitsAndCheckpoints(t *testing.T) {
	// TTLs out of range are refused; checkpoints record remaining TTLs
	// (capped at the TTL) and survive a snapshot; unknown ids are skipped.
	r := newReplica(Config{MaxLeases: 2})
	mustCode(t, r.do(Command{Op: OpLeaseGrant, TTL: 0}), CodeBadTTL)
	mustCode(t, r.do(Command{Op: OpLeaseGrant, TTL: MaxLeaseTTL + 1}), CodeBadTTL)
	mustCode(t, r.do(Command{Op: OpLeaseGrant, Lease: 7, TTL: 30}), CodeOK)
	mustCode(t, r.do(Command{Op: OpLeaseGrant, Lease: 8, TTL: 30}), CodeOK)
	mustCode(t, r.do(Command{Op: OpLeaseGrant, Lease: 9, TTL: 30}), CodeTooLarge)
	mustCode(t, r.do(Command{Op: OpLeaseCheckpoint, Checkpoints: []LeaseCheckpoint{{ID: 7, Remaining: 12}, {ID: 99, Remaining: 1}, {ID: 8, Remaining: 40}}}), CodeOK)
	s := New(Config{MaxLeases: 2})
	if err := s.Restore(bytesReader(snapshotBytes(t, r.Store))); err != nil {
		t.Fatal(err)
	}
	ls := s.Leases()
	if len(ls) != 2 || ls[0] != (LeaseInfo{ID: 7, TTL: 30, Remaining: 12}) || ls[1] != (LeaseInfo{ID: 8, TTL: 30, Remaining: 30}) {
		t.Fatalf("leases after restore %+v", ls)
	}
}

func TestWatchReplaysHistoryThenFollows(t *testing.T) {
	// A watch from a past revision gets every matching change from
	// history, in order and with previous versions, then the live ones,
	// with no gap or repeat between the two.
	r := newReplica(Config{})
	r.do(put("a", "1")) // 2
	r.do(put("x", "1")) // 3
	r.do(put("a", "2")) // 4
	r.do(del("a"))      // 5
	w, err := r.Watch("a", "b", 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := w.Next(ctx)
	if err != nil || len(b.Events) != 2 {
		t.Fatalf("history: %+v %v", b, err)
	}
	if e := b.Events[0]; e.Type != EventPut || e.KV.ModRevision != 4 || e.Prev == nil || string(e.Prev.Value) != "1" {
		t.Fatalf("first event %+v", e)
	}
	if e := b.Events[1]; e.Type != EventDelete || e.KV.ModRevision != 5 || e.Prev == nil || e.Prev.ModRevision != 4 {
		t.Fatalf("second event %+v", e)
	}
	r.do(put("ab", "1")) // 6
	r.do(put("b", "1"))  // 7: outside [a, b)
	r.do(put("a", "3"))  // 8
	var got []int64
	for len(got) < 2 {
		b, err := w.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Events {
			got = append(got, e.KV.ModRevision)
		}
	}
	if got[0] != 6 || got[1] != 8 {
		t.Fatalf("live events at %v, want 6 and 8", got)
	}
	if rev, ok := w.Progress(); !ok || rev != 8 {
		t.Fatalf("progress %d %v, want 8", rev, ok)
	}
}

func TestWatchCompactedStart(t *testing.T) {
	// A start revision the history no longer holds fails naming the
	// compacted revision, at the start or while catching up.
	r := newReplica(Config{})
	for range 5 {
		r.do(put("k", "v"))
	}
	r.do(Command{Op: OpCompact, Rev: 4})
	_, err := r.Watch("k", "", 2, 0)
	ce, ok := err.(*CompactedError)
	if !ok || ce.Compacted != 4 {
		t.Fatalf("watch from 2: %v", err)
	}
	w, err := r.Watch("k", "", 4, 0)
	if err != nil {
		t.Fatalf("watch from the compacted revision itself: %v", err)
	}
	r.do(Command{Op: OpCompact, Rev: 6})
	if _, err := w.Next(context.Background()); err == nil {
		t.Fatal("catch-up overtaken by compaction did not fail")
	} else if ce, ok := err.(*CompactedError); !ok || ce.Compacted != 6 {
		t.Fatalf("catch-up error %v", err)
	}
}

func TestSlowWatcherIsCancelledNotWaitedFor(t *testing.T) {
	// A watcher whose queue fills is cancelled with a reason naming where
	// to resume; Apply never waits for it, and other watchers go on.
	r := newReplica(Config{})
	slow, _ := r.Watch("k", "", 0, 4)
	fast, _ := r.Watch("k", "", 0, 100)
	ctx := context.Background()
	slow.Next(ctx) // registers
	fast.Next(ctx)
	for i := range 10 {
		r.do(put("k", string(rune('a'+i))))
	}
	var n int
	var err error
	for err == nil {
		var b WatchBatch
		b, err = slow.Next(ctx)
		n += len(b.Events)
	}
	if n != 4 || err == nil || !strings.Contains(err.Error(), "resume from revision 6") {
		t.Fatalf("slow watcher got %d events then %v", n, err)
	}
	for range 10 {
		if _, err := fast.Next(ctx); err != nil {
			t.Fatalf("fast watcher: %v", err)
		}
	}
	if r.Watchers() != 1 {
		t.Fatalf("%d live watchers, want 1", r.Watchers())
	}
	// A restore cancels every live watcher: they resume from history.
	if err := r.Restore(bytesReader(snapshotBytes(t, r.Store))); err != nil {
		t.Fatal(err)
	}
	if _, err := fast.Next(ctx); err == nil || !strings.Contains(err.Error(), "snapshot") {
		t.Fatalf("after a restore: %v", err)
	}
}

func TestWatchFromAFutureRevisionSkipsWhatComesBefore(t *testing.T) {
	// A watch starting past the store's revision (a client resuming on a
	// member that is behind) gets nothing before its start, and
	// everything from it on: regression test for a watcher that got the
	// revisions between the store's and its start again.
	r := newReplica(Config{})
	r.do(put("k", "1")) // 2
	w, err := r.Watch("k", "", 5, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if b, err := w.Next(ctx); err != nil || len(b.Events) != 0 || b.Revision != 4 {
		t.Fatalf("first batch %+v %v, want none up to 4", b, err)
	}
	for i := range 4 {
		r.do(put("k", fmt.Sprint(i))) // 3, 4, 5, 6
	}
	b, err := w.Next(ctx)
	if err != nil || len(b.Events) != 1 || b.Events[0].KV.ModRevision != 5 {
		t.Fatalf("first event %+v %v, want revision 5", b, err)
	}
	if b, _, _ := w.Poll(); len(b.Events) != 1 || b.Events[0].KV.ModRevision != 6 {
		t.Fatalf("then %+v, want revision 6", b)
	}
}

func TestWatcherOnReadyNamesEveryBatchAndCancellation(t *testing.T) {
	// OnReady is called once per batch queued for the watcher and once when
	// the store cancels it, so a goroutine serving many watchers can Poll
	// only those with something to return.
	r := newReplica(Config{})
	w, _ := r.Watch("k", "", 0, 2)
	var ready int
	w.OnReady(func() { ready++ })
	if _, ok, err := w.Poll(); !ok || err != nil { // registers
		t.Fatalf("first poll: %v %v", ok, err)
	}
	r.do(put("other", "x"))
	if ready != 0 {
		t.Fatalf("%d notices for a change of another key", ready)
	}
	r.do(put("k", "a"))
	if ready != 1 {
		t.Fatalf("%d notices for one batch, want 1", ready)
	}
	if b, ok, err := w.Poll(); !ok || err != nil || len(b.Events) != 1 {
		t.Fatalf("poll after the notice: %+v %v %v", b, ok, err)
	}
	// Two batches fill the queue; the third cancels the watcher.
	for _, v := range []string{"b", "c", "d"} {
		r.do(put("k", v))
	}
	if ready != 4 {
		t.Fatalf("%d notices after three more batches (the last cancelling), want 4", ready)
	}
	for range 2 {
		if _, ok, err := w.Poll(); !ok || err != nil {
			t.Fatalf("queued batch: %v %v", ok, err)
		}
	}
	if _, _, err := w.Poll(); !errors.Is(err, ErrWatchCanceled) {
		t.Fatalf("after the queue filled: %v", err)
	}
	// A restore cancels every live watcher, with a notice each.
	v, _ := r.Watch("k", "", 0, 0)
	var vready int
	v.OnReady(func() { vready++ })
	v.Poll()
	if err := r.Restore(bytesReader(snapshotBytes(t, r.Store))); err != nil {
		t.Fatal(err)
	}
	if vready != 1 {
		t.Fatalf("%d notices for a restore, want 1", vready)
	}
}
