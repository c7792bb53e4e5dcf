package kv

import (
	"fmt"

	"github.com/raftkv/raftkv/raftpb"
)

// The quota bounds the memory the state takes, as Size counts it: each key
// costs its key and value bytes plus KeyOverheadBytes, each remembered
// session its token and message plus SessionOverheadBytes. The overheads
// are what BenchmarkMemoryPerKey and BenchmarkMemoryPerSession measure (Go
// heap per key beyond its bytes, rounded up), so Size tracks the heap the
// state takes to within a small factor. A put or append that would take
// Size past Config.QuotaBytes is rejected with CodeNoSpace and changes
// nothing; deletes, and commands that do not grow the state, always go
// through. Like every limit the decision depends only on the state and the
// Config, so every replica decides alike. A rejection for the quota is not
// recorded in the session table, so a retry with the same idempotency key
// takes effect once space is freed.

// Defaults and overheads of the quota.
const (
	// DefaultQuotaBytes is the quota of the zero Config: 2 GiB.
	DefaultQuotaBytes = 2 << 30
	// KeyOverheadBytes is the memory a key takes beyond its key and value
	// bytes (the tree's item and node share, string and slice headers).
	KeyOverheadBytes = 128
	// SessionOverheadBytes is the memory a remembered session takes beyond
	// its token and message (map entry, queue slot, the session itself).
	SessionOverheadBytes = 128
)

// CodeNoSpace: the write would take the state past its quota (507).
const CodeNoSpace = "no_space"

func (c Config) quotaBytes() int64 {
	if c.QuotaBytes == 0 {
		return DefaultQuotaBytes
	}
	return c.QuotaBytes
}

func keyBytes(key string, value []byte) int64 {
	return int64(len(key)+len(value)) + KeyOverheadBytes
}

func sessionBytes(s *session) int64 {
	return int64(len(s.token)+len(s.result.Message)) + SessionOverheadBytes
}

// quotaCheckLocked rejects a write that makes the key's value value (cur
// being the key as it is) if it would take the state past the quota.
func (s *Store) quotaCheckLocked(index raftpb.Index, cur entry, exists bool, key string, value []byte) *Result {
	q := s.cfg.quotaBytes()
	if q < 0 {
		return nil
	}
	grow := keyBytes(key, value)
	if exists {
		grow -= keyBytes(cur.key, cur.value)
	}
	if grow <= 0 || s.keyBytes+s.sessions.bytes+grow <= q {
		return nil
	}
	return rejected(index, cur.rev, CodeNoSpace,
		fmt.Sprintf("the state would grow to %d bytes, over its quota of %d", s.keyBytes+s.sessions.bytes+grow, q))
}

// Size returns the state's size as the quota counts it: keys and values
// with KeyOverheadBytes each, sessions with SessionOverheadBytes each.
func (s *Store) Size() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.keyBytes + s.sessions.bytes
}

// QuotaBytes returns the quota in force; negative means none.
func (s *Store) QuotaBytes() int64 { return s.cfg.quotaBytes() }

// QuotaRejections returns how many writes this store has rejected for the
// quota since it was created (not kept in snapshots).
func (s *Store) QuotaRejections() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.quotaRejections
}

// countKeyBytes sums the keys' sizes, after a restore.
func countKeyBytes(v *snapshotView) int64 {
	var n int64
	v.entries.Ascend(func(e entry) bool {
		n += keyBytes(e.key, e.value)
		return true
	})
	return n
}
