package kv

import (
	"fmt"

	"github.com/google/btree"
)

// Lease limits. MaxLeaseTTL is etcd's; both are part of the format.
const (
	MaxLeaseTTL = 9_000_000_000 // seconds
	// MaxCheckpoints bounds the leases one checkpoint command carries.
	MaxCheckpoints = 1000
)

// lease is the replicated part of a lease: its id, the TTL it was granted
// with, and the remaining TTL last checkpointed (0: none since the last
// grant or keep-alive, so a new leader counts the whole TTL). When it
// expires is not replicated: only the leader's clock decides that, and it
// says so through the log with a revoke.
type lease struct {
	id        int64
	ttl       int64 // seconds
	remaining int64 // seconds; 0: the whole ttl
}

func leaseLess(a, b lease) bool { return a.id < b.id }

// leaseKey pairs a lease with a key attached to it, for revoking a lease's
// keys in key order.
type leaseKey struct {
	lease int64
	key   string
}

func leaseKeyLess(a, b leaseKey) bool {
	if a.lease != b.lease {
		return a.lease < b.lease
	}
	return a.key < b.key
}

func newLeaseTree() *btree.BTreeG[lease] { return btree.NewG(btreeDegree, leaseLess) }

func newLeaseKeyTree() *btree.BTreeG[leaseKey] { return btree.NewG(btreeDegree, leaseKeyLess) }

// LeaseCheckpoint records a lease's remaining TTL as the leader saw it.
type LeaseCheckpoint struct {
	ID        int64
	Remaining int64 // seconds; 0 resets to the whole TTL
}

// LeaseInfo is a lease as the replicated state knows it.
type LeaseInfo struct {
	ID  int64
	TTL int64 // granted, in seconds
	// Remaining is the last checkpointed remaining TTL in seconds, 0 if
	// none: then the whole TTL counts.
	Remaining int64
}

func (l lease) info() LeaseInfo { return LeaseInfo{ID: l.id, TTL: l.ttl, Remaining: l.remaining} }

func (cfg Config) checkLease(c *Command) (code, message string) {
	switch c.Op {
	case OpLeaseGrant:
		switch {
		case c.Lease < 0:
			return CodeBadRequest, fmt.Sprintf("lease id %d is negative", c.Lease)
		case c.TTL < 1 || c.TTL > MaxLeaseTTL:
			return CodeBadTTL, fmt.Sprintf("TTL %d s is out of range [1, %d]", c.TTL, MaxLeaseTTL)
		}
	case OpLeaseRevoke:
		if c.Lease <= 0 {
			return CodeBadRequest, fmt.Sprintf("lease id %d: want a positive id", c.Lease)
		}
	case OpLeaseCheckpoint:
		if len(c.Checkpoints) == 0 || len(c.Checkpoints) > MaxCheckpoints {
			return CodeBadRequest, fmt.Sprintf("%d checkpoints; want 1 to %d", len(c.Checkpoints), MaxCheckpoints)
		}
		for _, cp := range c.Checkpoints {
			if cp.ID <= 0 || cp.Remaining < 0 || cp.Remaining > MaxLeaseTTL {
				return CodeBadRequest, fmt.Sprintf("checkpoint of lease %d with %d s remaining", cp.ID, cp.Remaining)
			}
		}
	}
	return CodeOK, ""
}

// grantLocked creates a lease. Id 0 lets the store choose: the command's
// log index, or the next free id after it, which every replica computes
// alike.
func (s *Store) grantLocked(index, id, ttl int64) *Result {
	if id != 0 {
		if _, ok := s.leases.Get(lease{id: id}); ok {
			return s.rejected(CodeLeaseExists, fmt.Sprintf("lease %d already exists", id))
		}
	} else {
		id = index
		for {
			if _, ok := s.leases.Get(lease{id: id}); !ok {
				break
			}
			id++
		}
	}
	if s.leases.Len() >= s.cfg.maxLeases() {
		return s.rejected(CodeTooLarge, fmt.Sprintf("%d leases, the most the store holds", s.leases.Len()))
	}
	s.leases.ReplaceOrInsert(lease{id: id, ttl: ttl})
	return &Result{Lease: id, TTL: ttl}
}

// revokeLocked deletes a lease's keys, all at one revision, and the lease.
func (s *Store) revokeLocked(id int64) *Result {
	if _, ok := s.leases.Get(lease{id: id}); !ok {
		return s.rejected(CodeLeaseNotFound, fmt.Sprintf("lease %d not found", id))
	}
	for _, k := range s.leaseKeysLocked(id) {
		s.deleteLocked(k)
	}
	s.leases.Delete(lease{id: id})
	return &Result{Lease: id}
}

func (s *Store) leaseKeysLocked(id int64) []string {
	var keys []string
	s.leaseKeys.AscendGreaterOrEqual(leaseKey{lease: id}, func(lk leaseKey) bool {
		if lk.lease != id {
			return false
		}
		keys = append(keys, lk.key)
		return true
	})
	return keys
}

// checkpointLocked records remaining TTLs; leases gone since are skipped.
func (s *Store) checkpointLocked(cps []LeaseCheckpoint) *Result {
	for _, cp := range cps {
		if l, ok := s.leases.Get(lease{id: cp.ID}); ok {
			l.remaining = min(cp.Remaining, l.ttl)
			s.leases.ReplaceOrInsert(l)
		}
	}
	return &Result{}
}

// Lease returns a lease and, if keys, the keys attached to it.
func (s *Store) Lease(id int64, keys bool) (LeaseInfo, []string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l, ok := s.leases.Get(lease{id: id})
	if !ok {
		return LeaseInfo{}, nil, false
	}
	var ks []string
	if keys {
		ks = s.leaseKeysLocked(id)
	}
	return l.info(), ks, true
}

// Leases returns every lease in id order.
func (s *Store) Leases() []LeaseInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]LeaseInfo, 0, s.leases.Len())
	s.leases.Ascend(func(l lease) bool {
		out = append(out, l.info())
		return true
	})
	return out
}
