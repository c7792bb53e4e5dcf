package kv

import "fmt"

// The quota bounds the memory the state takes, as Size counts it: each key
// costs its key bytes plus KeyOverheadBytes, each version kept of it
// (history and delete markers included) its value bytes plus
// VersionOverheadBytes, each remembered session its token and message plus
// SessionOverheadBytes. The overheads are what BenchmarkMemoryPerKey,
// BenchmarkMemoryPerHistoricalVersion and BenchmarkMemoryPerSession
// measure (Go heap beyond the bytes, rounded up), so Size tracks the heap
// the state takes to within a small factor. A command that would write
// versions taking Size past Config.QuotaBytes (a put, an append, a
// transaction's puts) is rejected with CodeNoSpace and changes nothing;
// deletes, revokes and compactions always go through, and compaction is
// what frees the space history takes. Like every limit the decision depends
// only on the state and the Config, so every replica decides alike. A
// rejection for the quota is not recorded in the session table, so a retry
// with the same idempotency key takes effect once space is freed.

// Defaults and overheads of the quota.
const (
	// DefaultQuotaBytes is the quota of the zero Config: 2 GiB.
	DefaultQuotaBytes = 2 << 30
	// KeyOverheadBytes is the memory a key's record takes beyond its key
	// bytes (the tree's item and node share, string and slice headers).
	KeyOverheadBytes = 64
	// VersionOverheadBytes is the memory a stored version takes beyond its
	// value bytes (the version, its change-log entry, slice growth).
	VersionOverheadBytes = 192
	// SessionOverheadBytes is the memory a remembered session takes beyond
	// its token and message (map entry, queue slot, the session itself).
	SessionOverheadBytes = 160
)

// CodeNoSpace: the write would take the state past its quota (507).
const CodeNoSpace = "no_space"

func (c Config) quotaBytes() int64 {
	if c.QuotaBytes == 0 {
		return DefaultQuotaBytes
	}
	return c.QuotaBytes
}

func recordBytes(key string) int64 { return int64(len(key)) + KeyOverheadBytes }

func versionBytes(v *version) int64 { return int64(len(v.value)) + VersionOverheadBytes }

func sessionBytes(s *session) int64 {
	return int64(len(s.token)+len(s.result.Message)) + SessionOverheadBytes
}

// putBytes is what a put of value at key adds to Size.
func (s *Store) putBytes(key string, value []byte) int64 {
	n := int64(len(value)) + VersionOverheadBytes
	if s.byKey[key] == nil {
		n += recordBytes(key)
	}
	return n
}

// recordPutBytes is putBytes with the key's record looked up already
// (nil if absent).
func recordPutBytes(rec *record, key string, value []byte) int64 {
	n := int64(len(value)) + VersionOverheadBytes
	if rec == nil {
		n += recordBytes(key)
	}
	return n
}

// quotaCheckLocked rejects a command that would add grow bytes to Size if
// that would take it past the quota.
func (s *Store) quotaCheckLocked(grow int64) *Result {
	q := s.cfg.quotaBytes()
	if q < 0 || grow <= 0 || s.keyBytes+s.sessions.bytes+grow <= q {
		return nil
	}
	s.quotaRejections++
	return s.rejected(CodeNoSpace,
		fmt.Sprintf("the state would grow to %d bytes, over its quota of %d; compact the history or delete keys", s.keyBytes+s.sessions.bytes+grow, q))
}

// Size returns the state's size as the quota counts it.
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

// countKeyBytes sums the records' sizes, after a restore.
func countKeyBytes(v *snapshotView) int64 {
	var n int64
	v.records.Ascend(func(rec *record) bool {
		n += recordBytes(rec.key)
		for i := range rec.vers {
			n += versionBytes(&rec.vers[i])
		}
		return true
	})
	return n
}
