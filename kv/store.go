package kv

import (
	"fmt"
	"strings"
	"sync"

	"github.com/google/btree"

	"github.com/raftkv/raftkv/raftpb"
)

// Defaults for the zero Config.
const (
	DefaultMaxKeyBytes   = 4096
	DefaultMaxValueBytes = 1 << 20
	DefaultSessionWindow = 100000
	DefaultMaxSessions   = 100000
	DefaultMaxListItems  = 10000
)

// Config holds the store's limits. The zero value uses the defaults above.
// Every replica of a cluster must run with the same Config: the limits
// decide results, so replicas that disagree on them diverge.
type Config struct {
	// MaxKeyBytes bounds a key's length (keys are 1..MaxKeyBytes bytes).
	MaxKeyBytes int
	// MaxValueBytes bounds a value's length, including one grown by append.
	MaxValueBytes int
	// SessionWindow is how many log positions an idempotency key is
	// remembered for: a session recorded at index i is forgotten once an
	// Apply reaches index i+SessionWindow.
	SessionWindow uint64
	// MaxSessions bounds the session table; at the bound, recording a new
	// session forgets the oldest.
	MaxSessions int
	// MaxListItems bounds the items one List returns.
	MaxListItems int
	// QuotaBytes bounds the state's size as Store.Size counts it (see
	// quota.go): a write that would pass it is rejected with CodeNoSpace.
	// 0 means DefaultQuotaBytes; negative, no quota.
	QuotaBytes int64
}

func (c Config) maxKeyBytes() int   { return orDefault(c.MaxKeyBytes, DefaultMaxKeyBytes) }
func (c Config) maxValueBytes() int { return orDefault(c.MaxValueBytes, DefaultMaxValueBytes) }
func (c Config) maxSessions() int   { return orDefault(c.MaxSessions, DefaultMaxSessions) }
func (c Config) maxListItems() int  { return orDefault(c.MaxListItems, DefaultMaxListItems) }

func (c Config) sessionWindow() uint64 {
	if c.SessionWindow == 0 {
		return DefaultSessionWindow
	}
	return c.SessionWindow
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// btreeDegree trades node size against depth; 32 keeps nodes within a few
// cache lines of pointers and a million keys within four levels.
const btreeDegree = 32

// entry is one key of the map. Entries are values in the tree and their
// Value slices are never written after insertion, which is what lets a
// cloned tree (a snapshot) and readers share them with later Applies.
type entry struct {
	key   string
	value []byte
	rev   raftpb.Index
}

func entryLess(a, b entry) bool { return a.key < b.key }

func newEntryTree() *btree.BTreeG[entry] { return btree.NewG(btreeDegree, entryLess) }

// Item is one key of a List answer.
type Item struct {
	Key   string
	Value []byte
	Rev   raftpb.Index
}

// Store is the replicated key-value state machine. See the package doc for
// the contract and for what is safe for concurrent use.
type Store struct {
	cfg Config

	// mu guards everything below. Apply, Snapshot and Restore take it for
	// writing (Snapshot because Clone rewrites the tree's copy-on-write
	// context); reads take it for reading.
	mu       sync.RWMutex
	entries  *btree.BTreeG[entry]
	sessions *sessionTable
	// applied is the index of the last command applied or restored.
	applied raftpb.Index
	// keyBytes is the keys' part of Size (quota.go).
	keyBytes        int64
	quotaRejections uint64
}

// New returns an empty store with the given limits.
func New(cfg Config) *Store {
	return &Store{cfg: cfg, entries: newEntryTree(), sessions: newSessionTable()}
}

// Config returns the store's limits as given to New.
func (s *Store) Config() Config { return s.cfg }

// Apply applies the committed command cmd at log index index and returns its
// *Result. It must be called in log order from one goroutine: an index not
// after AppliedIndex is a broken caller and panics, since applying twice or
// out of order would make this replica diverge.
//
// A command that does not decode, or breaks a limit, changes nothing but
// AppliedIndex and yields a Result with the matching code. An empty command
// (the no-op entry a new leader appends, §8) changes nothing and succeeds.
func (s *Store) Apply(index raftpb.Index, cmd []byte) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyLocked(index, cmd)
}

func (s *Store) applyLocked(index raftpb.Index, cmd []byte) *Result {
	if index <= s.applied {
		panic(fmt.Sprintf("kv: Apply at index %d, not after applied index %d", index, s.applied))
	}
	s.applied = index
	s.sessions.expire(index, s.cfg.sessionWindow())
	if len(cmd) == 0 {
		return &Result{Index: index}
	}
	c, err := DecodeCommand(cmd)
	if err != nil {
		return rejected(index, 0, CodeBadRequest, err.Error())
	}
	// A rejection by Validate is not recorded in the session table: the
	// same bytes are rejected alike at any index, and recording them would
	// let malformed traffic crowd out real sessions.
	if code, msg := s.cfg.check(&c); code != CodeOK {
		return rejected(index, 0, code, msg)
	}
	if c.IdempotencyKey != "" {
		if first, ok := s.sessions.lookup(c.IdempotencyKey); ok {
			return &first
		}
	}
	r := s.executeLocked(index, &c)
	// A rejection for the quota is not remembered either: the same command
	// may take effect once space is freed, and a retry must be able to.
	if c.IdempotencyKey != "" && r.Code != CodeNoSpace {
		s.sessions.record(c.IdempotencyKey, index, *r, s.cfg.maxSessions())
	}
	return r
}

// executeLocked runs a validated command against the map.
func (s *Store) executeLocked(index raftpb.Index, c *Command) *Result {
	cur, exists := s.entries.Get(entry{key: c.Key})
	switch {
	case c.Cond == CondRevMatch && !exists:
		return rejected(index, 0, CodePreconditionFailed, fmt.Sprintf("key is absent, If-Match wants revision %d", c.Rev))
	case c.Cond == CondRevMatch && cur.rev != c.Rev:
		return rejected(index, cur.rev, CodePreconditionFailed, fmt.Sprintf("key is at revision %d, If-Match wants %d", cur.rev, c.Rev))
	case c.Cond == CondAbsent && exists:
		return rejected(index, cur.rev, CodePreconditionFailed, fmt.Sprintf("key exists at revision %d", cur.rev))
	}
	switch c.Op {
	case OpPut:
		if r := s.quotaCheckLocked(index, cur, exists, c.Key, c.Value); r != nil {
			s.quotaRejections++
			return r
		}
		s.entries.ReplaceOrInsert(entry{key: c.Key, value: c.Value, rev: index})
		s.keyBytes += keyBytes(c.Key, c.Value)
	case OpAppend:
		if len(cur.value)+len(c.Value) > s.cfg.maxValueBytes() {
			return rejected(index, cur.rev, CodeTooLarge,
				fmt.Sprintf("append would make the value %d bytes, over %d", len(cur.value)+len(c.Value), s.cfg.maxValueBytes()))
		}
		// Always a fresh slice: the old value may be shared with a snapshot
		// or a reader, so it is never written in place.
		v := make([]byte, len(cur.value)+len(c.Value))
		copy(v[copy(v, cur.value):], c.Value)
		if r := s.quotaCheckLocked(index, cur, exists, c.Key, v); r != nil {
			s.quotaRejections++
			return r
		}
		s.entries.ReplaceOrInsert(entry{key: c.Key, value: v, rev: index})
		s.keyBytes += keyBytes(c.Key, v)
	case OpDelete:
		if !exists {
			return rejected(index, 0, CodeNotFound, "no such key")
		}
		s.entries.Delete(entry{key: c.Key})
		s.keyBytes -= keyBytes(cur.key, cur.value)
		return &Result{Index: index, Rev: 0, Prev: cur.rev}
	}
	if exists {
		s.keyBytes -= keyBytes(cur.key, cur.value)
	}
	return &Result{Index: index, Rev: index, Prev: cur.rev}
}

// AppliedIndex returns the index of the last applied command, or of the
// snapshot last restored.
func (s *Store) AppliedIndex() raftpb.Index {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.applied
}

// Get returns the key's value and revision. The value is shared with the
// store and must not be modified; the store itself never modifies it.
func (s *Store) Get(key string) (value []byte, rev raftpb.Index, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.entries.Get(entry{key: key})
	return e.value, e.rev, ok
}

// List returns the keys with the given prefix in key order, at most limit of
// them (limit <= 0 or over Config.MaxListItems means MaxListItems), and
// whether more keys with the prefix follow. Values are shared as with Get.
func (s *Store) List(prefix string, limit int) (items []Item, more bool) {
	if limit <= 0 || limit > s.cfg.maxListItems() {
		limit = s.cfg.maxListItems()
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.entries.AscendGreaterOrEqual(entry{key: prefix}, func(e entry) bool {
		if !strings.HasPrefix(e.key, prefix) {
			return false
		}
		if len(items) == limit {
			more = true
			return false
		}
		items = append(items, Item{Key: e.key, Value: e.value, Rev: e.rev})
		return true
	})
	return items, more
}

// Len returns the number of keys.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.entries.Len()
}

// Sessions returns the number of idempotency keys remembered.
func (s *Store) Sessions() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sessions.len()
}
