package kv

import (
	"github.com/google/btree"

	"github.com/raftkv/raftkv/raftpb"
)

// session is one remembered idempotency key and the Result its first
// command got. Sessions are immutable once recorded, so the two trees of a
// table and the clones a snapshot holds can share them.
type session struct {
	token  string
	index  raftpb.Index
	result Result
}

// sessionTable is the exactly-once table. It is indexed twice: by token for
// lookups, and by log index as a FIFO for expiry and eviction. Both are
// B-trees rather than a map and a list so that a snapshot clones them in
// O(1) and writes them in a deterministic order.
//
// Invariants: the two trees hold the same sessions; no two sessions share a
// token or an index (one command per index).
type sessionTable struct {
	byToken *btree.BTreeG[*session]
	byIndex *btree.BTreeG[*session]
}

func newSessionTable() *sessionTable {
	return &sessionTable{
		byToken: btree.NewG(btreeDegree, func(a, b *session) bool { return a.token < b.token }),
		byIndex: btree.NewG(btreeDegree, func(a, b *session) bool { return a.index < b.index }),
	}
}

func (t *sessionTable) len() int { return t.byIndex.Len() }

func (t *sessionTable) clone() *sessionTable {
	return &sessionTable{byToken: t.byToken.Clone(), byIndex: t.byIndex.Clone()}
}

// lookup returns the Result recorded for token.
func (t *sessionTable) lookup(token string) (Result, bool) {
	s, ok := t.byToken.Get(&session{token: token})
	if !ok {
		return Result{}, false
	}
	return s.result, true
}

// expire forgets the sessions recorded window or more positions before
// index. It depends only on log positions, so every replica forgets the
// same sessions at the same index.
func (t *sessionTable) expire(index raftpb.Index, window uint64) {
	for {
		oldest, ok := t.byIndex.Min()
		if !ok || uint64(index-oldest.index) < window {
			return
		}
		t.remove(oldest)
	}
}

// record remembers the result of the command at index, first forgetting
// the oldest sessions if the table is at max.
func (t *sessionTable) record(token string, index raftpb.Index, r Result, max int) {
	for t.len() >= max {
		oldest, _ := t.byIndex.Min()
		t.remove(oldest)
	}
	t.insert(&session{token: token, index: index, result: r})
}

func (t *sessionTable) insert(s *session) {
	t.byToken.ReplaceOrInsert(s)
	t.byIndex.ReplaceOrInsert(s)
}

func (t *sessionTable) remove(s *session) {
	t.byToken.Delete(s)
	t.byIndex.Delete(s)
}
