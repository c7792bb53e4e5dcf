package kv

import (
	"slices"

	"github.com/raftkv/raftkv/raftpb"
)

// session is one remembered idempotency key and the Result its first
// command got. Sessions are immutable once recorded, so a table and the
// clones a snapshot holds can share them.
type session struct {
	token  string
	index  raftpb.Index
	result Result
}

// sessionTable is the exactly-once table: a map by token for lookups and
// a FIFO by log index for expiry, eviction and snapshots. Sessions are
// recorded in index order and only ever leave from the oldest end, so a
// queue is all the order needed.
//
// Invariants: the map and the queue hold the same sessions; no two
// sessions share a token or an index (one command per index). A clone
// (for a snapshot) has the queue only and is never changed.
type sessionTable struct {
	byToken map[string]*session
	fifo    sessionFIFO
	bytes   int64 // the sessions' part of Store.Size
}

func newSessionTable() *sessionTable {
	return &sessionTable{byToken: map[string]*session{}}
}

func (t *sessionTable) len() int { return t.fifo.n }

// clone returns a frozen copy for a snapshot, in time proportional to the
// number of queue chunks, not of sessions.
func (t *sessionTable) clone() *sessionTable {
	return &sessionTable{fifo: t.fifo.clone(), bytes: t.bytes}
}

// lookup returns the Result recorded for token.
func (t *sessionTable) lookup(token string) (Result, bool) {
	s, ok := t.byToken[token]
	if !ok {
		return Result{}, false
	}
	return s.result, true
}

func (t *sessionTable) has(token string) bool {
	_, ok := t.byToken[token]
	return ok
}

// expire forgets the sessions recorded window or more positions before
// index. It depends only on log positions, so every replica forgets the
// same sessions at the same index.
func (t *sessionTable) expire(index raftpb.Index, window uint64) {
	for t.fifo.n > 0 && uint64(index-t.fifo.oldest().index) >= window {
		t.removeOldest()
	}
}

// record remembers the result of the command at index, first forgetting
// the oldest sessions if the table is at max.
func (t *sessionTable) record(token string, index raftpb.Index, r Result, max int) {
	for t.len() >= max {
		t.removeOldest()
	}
	t.insert(&session{token: token, index: index, result: r})
}

// insert adds s, whose index must be above every recorded one.
func (t *sessionTable) insert(s *session) {
	t.byToken[s.token] = s
	t.fifo.push(s)
	t.bytes += sessionBytes(s)
}

func (t *sessionTable) removeOldest() {
	old := t.fifo.oldest()
	delete(t.byToken, old.token)
	t.bytes -= sessionBytes(old)
	t.fifo.pop()
}

// ascend calls f on each session, oldest first, until f returns false.
func (t *sessionTable) ascend(f func(*session) bool) { t.fifo.ascend(f) }

// fifoChunk is the number of sessions per chunk of a sessionFIFO.
const fifoChunk = 256

// sessionFIFO is a queue in fixed-size chunks. A clone copies the chunk
// list only and shares the chunks: the queue never writes a slot a clone
// can see (pushes go past every clone's length, pops only move head), so
// clones stay valid, and may be read concurrently, while the queue moves on.
type sessionFIFO struct {
	chunks [][]*session // each of capacity fifoChunk; only the last may be short
	head   int          // position of the oldest session in chunks[0]
	n      int
}

func (q *sessionFIFO) push(s *session) {
	if k := len(q.chunks); k == 0 || len(q.chunks[k-1]) == fifoChunk {
		q.chunks = append(q.chunks, make([]*session, 0, fifoChunk))
	}
	k := len(q.chunks) - 1
	q.chunks[k] = append(q.chunks[k], s)
	q.n++
}

func (q *sessionFIFO) oldest() *session { return q.chunks[0][q.head] }

func (q *sessionFIFO) pop() {
	q.head++
	q.n--
	switch {
	case q.n == 0:
		q.chunks, q.head = nil, 0
	case q.head == fifoChunk:
		q.chunks[0] = nil // the chunk stays alive only for clones that hold it
		q.chunks, q.head = q.chunks[1:], 0
	}
}

func (q *sessionFIFO) clone() sessionFIFO {
	c := *q
	c.chunks = slices.Clone(q.chunks)
	return c
}

func (q *sessionFIFO) ascend(f func(*session) bool) {
	from := q.head
	for _, c := range q.chunks {
		for _, s := range c[from:] {
			if !f(s) {
				return
			}
		}
		from = 0
	}
}
