package kv

import (
	"fmt"
	"math"
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
	// DefaultHistoryRevisions is the history kept by default: reads and
	// watches reach back this many revisions before the automatic
	// compaction discards them.
	DefaultHistoryRevisions = 100000
	DefaultMaxLeases        = 1 << 20
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
	// MaxListItems bounds the items one List or range returns.
	MaxListItems int
	// HistoryRevisions is how many revisions of history the store keeps:
	// once the revision passes compacted+HistoryRevisions, the store
	// compacts to revision-HistoryRevisions, at the same revision on every
	// replica. Negative keeps all history until compacted explicitly.
	HistoryRevisions int64
	// MaxLeases bounds the leases; a grant beyond is refused (too_large).
	MaxLeases int
	// QuotaBytes bounds the state's size as Store.Size counts it (see
	// quota.go), history included: a write that would pass it is rejected
	// with CodeNoSpace. 0 means DefaultQuotaBytes; negative, no quota.
	QuotaBytes int64
}

func (c Config) maxKeyBytes() int   { return orDefault(c.MaxKeyBytes, DefaultMaxKeyBytes) }
func (c Config) maxValueBytes() int { return orDefault(c.MaxValueBytes, DefaultMaxValueBytes) }
func (c Config) maxSessions() int   { return orDefault(c.MaxSessions, DefaultMaxSessions) }
func (c Config) maxListItems() int  { return orDefault(c.MaxListItems, DefaultMaxListItems) }
func (c Config) maxLeases() int     { return orDefault(c.MaxLeases, DefaultMaxLeases) }

func (c Config) historyRevisions() int64 {
	switch {
	case c.HistoryRevisions < 0:
		return math.MaxInt64
	case c.HistoryRevisions == 0:
		return DefaultHistoryRevisions
	}
	return c.HistoryRevisions
}

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

// Item is one key of a List answer.
type Item struct {
	Key   string
	Value []byte
	Rev   int64 // the key's mod revision
}

// Store is the replicated key-value state machine. See the package doc for
// the contract and for what is safe for concurrent use.
type Store struct {
	cfg Config

	// mu guards everything below. Apply, Snapshot and Restore take it for
	// writing (Snapshot because Clone rewrites the trees' copy-on-write
	// context); reads take it for reading.
	mu      sync.RWMutex
	records *btree.BTreeG[*record]
	// byKey holds the records of the tree by key, for point lookups; it is
	// derived (not in snapshots) and never iterated, so its order cannot
	// reach a result.
	byKey map[string]*record
	// gen is the generation of records and arrays no snapshot view holds;
	// see record.
	gen       uint64
	leases    *btree.BTreeG[lease]
	leaseKeys *btree.BTreeG[leaseKey] // derived from records; not in snapshots
	sessions  *sessionTable
	changes   changeLog // derived from records; not in snapshots
	// applied is the index of the last command applied or restored.
	applied raftpb.Index
	// rev is the store revision: one more for every command that changed
	// a key. compacted is the oldest revision reads may ask for.
	rev, compacted int64
	// keys counts the keys that exist now.
	keys int
	// keyBytes is the records' part of Size (quota.go).
	keyBytes        int64
	quotaRejections uint64

	// The command being applied: sub counts the keys it changed so far,
	// pending holds their events while watchers are live (publishing).
	sub        uint32
	pending    []Event
	publishing bool

	hub *watchHub
}

// firstRevision is the revision of an empty store, as in etcd: the first
// write makes revision 2.
const firstRevision = 1

// New returns an empty store with the given limits.
func New(cfg Config) *Store {
	return &Store{cfg: cfg, records: newRecordTree(), byKey: map[string]*record{}, gen: 1, leases: newLeaseTree(),
		leaseKeys: newLeaseKeyTree(), sessions: newSessionTable(), rev: firstRevision, hub: newWatchHub()}
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
		return &Result{Index: index, Revision: s.rev}
	}
	c, err := decodeCommand(cmd, s.byKey)
	if err != nil {
		return s.stamp(index, rejected(0, CodeBadRequest, err.Error()))
	}
	// A rejection by Validate is not recorded in the session table: the
	// same bytes are rejected alike at any index, and recording them would
	// let malformed traffic crowd out real sessions.
	if code, msg := s.cfg.check(&c); code != CodeOK {
		return s.stamp(index, rejected(0, code, msg))
	}
	if c.IdempotencyKey != "" {
		if first, ok := s.sessions.lookup(c.IdempotencyKey); ok {
			if first.Txn != nil && c.Op == OpTxn {
				first.Txn = s.replayTxnLocked(first.Txn, c.Txn)
			}
			return &first
		}
	}
	s.publishing = s.hub.watching()
	r := s.executeLocked(index, &c)
	if r.Code != CodeOK && s.sub != 0 {
		// Every rejection is decided before the first write; one after it
		// would leave the command half applied on every replica.
		panic(fmt.Sprintf("kv: command at index %d rejected (%s) after changing %d keys", index, r.Code, s.sub))
	}
	s.finishLocked()
	s.stamp(index, r)
	// A rejection for the quota is not remembered either: the same command
	// may take effect once space is freed, and a retry must be able to.
	if c.IdempotencyKey != "" && r.Code != CodeNoSpace {
		rec := *r
		if rec.Txn != nil {
			rec.Txn = rec.Txn.forSession()
		}
		s.sessions.record(c.IdempotencyKey, index, rec, s.cfg.maxSessions())
	}
	return r
}

func (s *Store) stamp(index raftpb.Index, r *Result) *Result {
	r.Index, r.Revision = index, s.rev
	return r
}

// executeLocked runs a validated command.
func (s *Store) executeLocked(index raftpb.Index, c *Command) *Result {
	switch c.Op {
	case OpTxn:
		return s.executeTxnLocked(c.Txn)
	case OpCompact:
		switch {
		case c.Rev > s.rev:
			return s.rejected(CodeFutureRevision, fmt.Sprintf("compaction to revision %d, after the store's revision %d", c.Rev, s.rev))
		case c.Rev <= s.compacted:
			return s.rejected(CodeCompacted, fmt.Sprintf("revision %d is compacted already (history starts at revision %d)", c.Rev, s.compacted))
		}
		s.compactLocked(c.Rev)
		return &Result{}
	case OpLeaseGrant:
		return s.grantLocked(int64(index), c.Lease, c.TTL)
	case OpLeaseRevoke:
		return s.revokeLocked(c.Lease)
	case OpLeaseCheckpoint:
		return s.checkpointLocked(c.Checkpoints)
	}
	return s.executeKeyLocked(c)
}

// executeKeyLocked runs a validated single-key command.
func (s *Store) executeKeyLocked(c *Command) *Result {
	rec := s.byKey[c.Key]
	cur := rec.current()
	var curRev int64
	if cur != nil {
		curRev = cur.mod
	}
	switch {
	case c.Cond == CondRevMatch && cur == nil:
		return rejected(0, CodePreconditionFailed, fmt.Sprintf("key is absent, If-Match wants revision %d", c.Rev))
	case c.Cond == CondRevMatch && curRev != c.Rev:
		return rejected(curRev, CodePreconditionFailed, fmt.Sprintf("key is at revision %d, If-Match wants %d", curRev, c.Rev))
	case c.Cond == CondAbsent && cur != nil:
		return rejected(curRev, CodePreconditionFailed, fmt.Sprintf("key exists at revision %d", curRev))
	}
	switch c.Op {
	case OpPut:
		if r := s.quotaCheckLocked(recordPutBytes(rec, c.Key, c.Value)); r != nil {
			r.Rev, r.Prev = curRev, curRev
			return r
		}
		s.writeRecordLocked(rec, c.Key, c.Value, 0)
	case OpAppend:
		var old []byte
		var lease int64
		if cur != nil {
			old, lease = cur.value, cur.lease
		}
		if len(old)+len(c.Value) > s.cfg.maxValueBytes() {
			return rejected(curRev, CodeTooLarge,
				fmt.Sprintf("append would make the value %d bytes, over %d", len(old)+len(c.Value), s.cfg.maxValueBytes()))
		}
		// Always a fresh slice: the old value may be shared with a snapshot
		// or a reader, so it is never written in place.
		v := make([]byte, len(old)+len(c.Value))
		copy(v[copy(v, old):], c.Value)
		if r := s.quotaCheckLocked(recordPutBytes(rec, c.Key, v)); r != nil {
			r.Rev, r.Prev = curRev, curRev
			return r
		}
		s.writeRecordLocked(rec, c.Key, v, lease)
	case OpDelete:
		if cur == nil {
			return rejected(0, CodeNotFound, "no such key")
		}
		s.deleteLocked(c.Key)
		return &Result{Rev: 0, Prev: curRev}
	}
	return &Result{Rev: s.pendingRev(), Prev: curRev}
}

// AppliedIndex returns the index of the last applied command, or of the
// snapshot last restored.
func (s *Store) AppliedIndex() raftpb.Index {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.applied
}

// Revision returns the store revision and the compacted revision (the
// oldest a read may ask for).
func (s *Store) Revision() (rev, compacted int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev, s.compacted
}

// Get returns the key's value and mod revision. The value is shared with
// the store and must not be modified; the store itself never modifies it.
func (s *Store) Get(key string) (value []byte, rev int64, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if v := s.byKey[key].current(); v != nil {
		return v.value, v.mod, true
	}
	return nil, 0, false
}

// Range reads [key, end) (end "" for key alone, "\x00" for every key from
// key on) at the present or a past revision. Errors are a *Error
// (bad_key, bad_request, future_revision) or a *CompactedError.
func (s *Store) Range(key, end string, o RangeOptions) (*RangeResult, error) {
	if code, msg := s.cfg.checkKeyRange(key, end); code != CodeOK {
		return nil, &Error{Code: code, Message: msg}
	}
	if code, msg := checkRangeOptions(&o); code != CodeOK {
		return nil, &Error{Code: code, Message: msg}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	rev, err := s.checkRevision(o.Revision)
	if err != nil {
		return nil, err
	}
	return s.rangeLocked(key, end, atRevision(rev), &o, s.rev), nil
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
	s.records.AscendGreaterOrEqual(&record{key: prefix}, func(rec *record) bool {
		if !strings.HasPrefix(rec.key, prefix) {
			return false
		}
		v := rec.current()
		if v == nil {
			return true
		}
		if len(items) == limit {
			more = true
			return false
		}
		items = append(items, Item{Key: rec.key, Value: v.value, Rev: v.mod})
		return true
	})
	return items, more
}

// Len returns the number of keys that exist now.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.keys
}

// Sessions returns the number of idempotency keys remembered.
func (s *Store) Sessions() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sessions.len()
}
