package kv

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"

	"github.com/raftkv/raftkv/raftpb"
)

// randomCommand draws a command from a small key and token space so that
// preconditions, retries, evictions and expiries all happen often; now and
// then it draws bytes that do not decode, or the empty no-op.
func randomCommand(rng *rand.Rand, next raftpb.Index) []byte {
	switch rng.IntN(40) {
	case 0:
		return nil
	case 1:
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return b
	}
	c := Command{
		Op:  Op(1 + rng.IntN(3)),
		Key: fmt.Sprintf("k%d", rng.IntN(30)),
	}
	if c.Op != OpDelete {
		c.Value = bytes.Repeat([]byte{byte('a' + rng.IntN(26))}, rng.IntN(12))
	}
	switch rng.IntN(4) {
	case 0:
		c.Cond, c.Rev = CondRevMatch, int64(rng.Uint64N(uint64(next)+2))
	case 1:
		if c.Op != OpDelete || rng.IntN(10) == 0 {
			c.Cond = CondAbsent
		}
	}
	if rng.IntN(3) == 0 {
		c.IdempotencyKey = fmt.Sprintf("tok-%d", rng.IntN(40))
	}
	return EncodeCommand(c)
}

// detConfig is small enough that every limit is reached in a short run.
var detConfig = Config{MaxKeyBytes: 3, MaxValueBytes: 16, SessionWindow: 50, MaxSessions: 12}

func TestDeterminismAcrossReplicas(t *testing.T) {
	// Replicas fed the same command stream return equal Results and have
	// equal Hashes after every step; so does a replica that joins midway
	// from a snapshot. The model checks that what they agree on is right.
	// (Hashes are compared every few steps: a divergence persists, and a
	// hash per step made this the slowest test under -race.)
	for seed := range uint64(40) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0x6b76))
			a, b := New(detConfig), New(detConfig)
			var late *Store
			m := newModel(detConfig)
			index := raftpb.Index(0)
			for step := range 1000 {
				// Gaps in the index sequence stand for entries the runtime
				// does not hand to the store (configuration changes).
				index += raftpb.Index(1 + rng.IntN(2))
				cmd := randomCommand(rng, index)
				ra := a.Apply(index, cmd).(*Result)
				rb := b.Apply(index, cmd).(*Result)
				if *ra != *rb {
					t.Fatalf("step %d index %d: results differ: %+v vs %+v", step, index, *ra, *rb)
				}
				if want := m.apply(index, cmd); want.Code != ra.Code || want.Index != ra.Index || want.Rev != ra.Rev || want.Prev != ra.Prev {
					t.Fatalf("step %d index %d: result %+v, model says %+v", step, index, *ra, want)
				}
				if late != nil {
					if rl := late.Apply(index, cmd).(*Result); *rl != *ra {
						t.Fatalf("step %d: restored replica result %+v, want %+v", step, *rl, *ra)
					}
				}
				if step == 500 {
					late = New(detConfig)
					if err := late.Restore(bytes.NewReader(snapshotBytes(t, a))); err != nil {
						t.Fatal(err)
					}
				}
				if step%10 == 0 || step == 999 {
					if ha, hb := a.Hash(), b.Hash(); ha != hb || (late != nil && late.Hash() != ha) {
						t.Fatalf("step %d: hashes differ", step)
					}
					m.check(t, a)
					checkRecordIndex(t, a)
					if late != nil {
						checkRecordIndex(t, late)
					}
				}
			}
		})
	}
}

// model is the specification of the store written the obvious way: a map,
// sorted on demand, and a linear scan of the sessions.
type model struct {
	cfg      Config
	kv       map[string]modelEntry
	sessions map[string]Result
	rev      int64
}

type modelEntry struct {
	value []byte
	rev   int64
}

func newModel(cfg Config) *model {
	return &model{cfg: cfg, kv: map[string]modelEntry{}, sessions: map[string]Result{}, rev: 1}
}

func (m *model) apply(index raftpb.Index, cmd []byte) Result {
	for tok, r := range m.sessions {
		if uint64(index-r.Index) >= m.cfg.sessionWindow() {
			delete(m.sessions, tok)
		}
	}
	if len(cmd) == 0 {
		return Result{Index: index}
	}
	c, err := DecodeCommand(cmd)
	if err != nil {
		return Result{Index: index, Code: CodeBadRequest}
	}
	if code, _ := m.cfg.check(&c); code != CodeOK {
		return Result{Index: index, Code: code}
	}
	if r, ok := m.sessions[c.IdempotencyKey]; ok && c.IdempotencyKey != "" {
		return r
	}
	r := m.execute(index, c)
	if c.IdempotencyKey != "" {
		if len(m.sessions) == m.cfg.maxSessions() {
			oldest := ""
			for tok, s := range m.sessions {
				if oldest == "" || s.Index < m.sessions[oldest].Index {
					oldest = tok
				}
			}
			delete(m.sessions, oldest)
		}
		m.sessions[c.IdempotencyKey] = r
	}
	return r
}

func (m *model) execute(index raftpb.Index, c Command) Result {
	cur, ok := m.kv[c.Key]
	fail := Result{Index: index, Rev: cur.rev, Prev: cur.rev, Code: CodePreconditionFailed}
	if (c.Cond == CondRevMatch && (!ok || cur.rev != c.Rev)) || (c.Cond == CondAbsent && ok) {
		return fail
	}
	switch c.Op {
	case OpPut:
		m.rev++
		m.kv[c.Key] = modelEntry{value: c.Value, rev: m.rev}
	case OpAppend:
		v := append(append([]byte(nil), cur.value...), c.Value...)
		if len(v) > m.cfg.maxValueBytes() {
			fail.Code = CodeTooLarge
			return fail
		}
		m.rev++
		m.kv[c.Key] = modelEntry{value: v, rev: m.rev}
	case OpDelete:
		if !ok {
			return Result{Index: index, Code: CodeNotFound}
		}
		delete(m.kv, c.Key)
		m.rev++
		return Result{Index: index, Prev: cur.rev}
	}
	return Result{Index: index, Rev: m.rev, Prev: cur.rev}
}

func (m *model) check(t *testing.T, s *Store) {
	t.Helper()
	keys := make([]string, 0, len(m.kv))
	for k := range m.kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	items, more := s.List("", 0)
	if more || len(items) != len(keys) || s.Len() != len(keys) || s.Sessions() != len(m.sessions) {
		t.Fatalf("store has %d keys (more=%v) and %d sessions, model %d and %d", len(items), more, s.Sessions(), len(keys), len(m.sessions))
	}
	for i, k := range keys {
		e := m.kv[k]
		if items[i].Key != k || !bytes.Equal(items[i].Value, e.value) || items[i].Rev != e.rev {
			t.Fatalf("item %d: %+v, model %q=%q@%d", i, items[i], k, e.value, e.rev)
		}
	}
}

// randomCoordCommand draws from every kind of command: single-key writes,
// transactions with compares and ranges, compactions and lease commands,
// over a key space small enough that they meet.
func randomCoordCommand(rng *rand.Rand, rev int64) Command {
	key := func() string { return fmt.Sprintf("k%d", rng.IntN(12)) }
	var c Command
	switch x := rng.IntN(20); {
	case x < 6:
		c = Command{Op: Op(1 + rng.IntN(3)), Key: key()}
		if c.Op != OpDelete {
			c.Value = []byte{byte('a' + rng.IntN(26))}
		}
	case x < 13:
		t := &Txn{}
		for range rng.IntN(3) {
			t.Compares = append(t.Compares, Compare{Key: key(), Target: CompareTarget(1 + rng.IntN(4)),
				Op: CompareOp(rng.IntN(4)), Number: rng.Int64N(rev + 2)})
		}
		ops := func() []TxnOp {
			var ops []TxnOp
			used := map[string]bool{}
			for range rng.IntN(4) {
				k := key()
				switch rng.IntN(4) {
				case 0:
					if !used[k] {
						used[k] = true
						ops = append(ops, TxnOp{Kind: OpKindPut, Key: k, Value: []byte{byte(rng.IntN(256))}, PrevKV: true,
							Lease: int64(rng.IntN(3)) * int64(rng.IntN(30))})
					}
				case 1:
					ops = append(ops, TxnOp{Kind: OpKindRange, Key: k, End: "\x00",
						Range: RangeOptions{Revision: rng.Int64N(rev + 1), Limit: rng.Int64N(4)}})
				case 2:
					ops = append(ops, TxnOp{Kind: OpKindRange, Key: "k", End: "l", Range: RangeOptions{SortBy: SortByMod, Order: SortDescend}})
				default:
					if len(used) == 0 {
						ops = append(ops, TxnOp{Kind: OpKindDelete, Key: k, End: k + "\x00", PrevKV: true})
					}
				}
			}
			return ops
		}
		t.Success, t.Failure = ops(), ops()
		c = Command{Op: OpTxn, Txn: t}
	case x < 15:
		c = Command{Op: OpCompact, Rev: rev - rng.Int64N(8)}
	case x < 17:
		c = Command{Op: OpLeaseGrant, Lease: int64(rng.IntN(30)), TTL: 1 + rng.Int64N(100)}
	case x < 19:
		c = Command{Op: OpLeaseRevoke, Lease: int64(rng.IntN(30))}
	default:
		c = Command{Op: OpLeaseCheckpoint, Checkpoints: []LeaseCheckpoint{{ID: int64(1 + rng.IntN(30)), Remaining: rng.Int64N(50)}}}
	}
	if rng.IntN(3) == 0 {
		c.IdempotencyKey = fmt.Sprintf("tok-%d", rng.IntN(40))
	}
	return c
}

func TestDeterminismWithHistoryTransactionsAndLeases(t *testing.T) {
	// Replicas fed the same stream of every kind of command give equal
	// Results (transaction answers included) and equal Hashes (history and
	// leases included), as does one restored from a snapshot midway; and
	// every revision still in the history reads exactly as the present
	// read when that revision was the present.
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0xc00d))
			cfg := Config{HistoryRevisions: 40, SessionWindow: 60, MaxSessions: 20, MaxLeases: 20}
			a, b := New(cfg), New(cfg)
			var late *Store
			present := map[int64]string{1: ""}
			for step := range 600 {
				index := raftpb.Index(step + 1)
				rev, compacted := a.Revision()
				cmd := EncodeCommand(randomCoordCommand(rng, rev))
				ra := a.Apply(index, cmd).(*Result)
				rb := b.Apply(index, cmd).(*Result)
				if !reflect.DeepEqual(ra, rb) {
					t.Fatalf("step %d: results differ:\n%+v\n%+v", step, ra, rb)
				}
				if late != nil {
					if rl := late.Apply(index, cmd).(*Result); !reflect.DeepEqual(rl, ra) {
						t.Fatalf("step %d: restored replica's result differs:\n%+v\n%+v", step, rl, ra)
					}
				}
				if step == 300 {
					late = New(cfg)
					if err := late.Restore(bytes.NewReader(snapshotBytes(t, a))); err != nil {
						t.Fatal(err)
					}
				}
				rev, compacted = a.Revision()
				all, err := a.Range("\x00", "\x00", RangeOptions{})
				if err != nil {
					t.Fatal(err)
				}
				present[rev] = kvString(all.KVs)
				at := max(compacted, 1) + rng.Int64N(rev-max(compacted, 1)+1)
				past, err := a.Range("\x00", "\x00", RangeOptions{Revision: at})
				if err != nil {
					t.Fatalf("step %d: read at %d (compacted %d, revision %d): %v", step, at, compacted, rev, err)
				}
				if got := kvString(past.KVs); got != present[at] {
					t.Fatalf("step %d: at revision %d reads %s, but then it was %s", step, at, got, present[at])
				}
				if step%10 == 0 || step == 599 {
					if ha, hb := a.Hash(), b.Hash(); ha != hb || (late != nil && late.Hash() != ha) {
						t.Fatalf("step %d: hashes differ", step)
					}
					checkRecordIndex(t, a)
					// The quota's Size, kept up incrementally, matches a
					// count from scratch (the one Restore makes).
					fresh := New(cfg)
					if err := fresh.Restore(bytes.NewReader(snapshotBytes(t, a))); err != nil {
						t.Fatal(err)
					}
					if a.Size() != fresh.Size() || (late != nil && late.Size() != a.Size()) {
						t.Fatalf("step %d: Size %d, counted afresh %d", step, a.Size(), fresh.Size())
					}
				}
			}
		})
	}
}
