package kv

import (
	"bytes"
	"fmt"
	"math/rand/v2"
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
		c.Cond, c.Rev = CondRevMatch, raftpb.Index(rng.Uint64N(uint64(next)+1))
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
				}
			}
		})
	}
}

// model is the specification of the store written the obvious way: a map,
// sorted on demand, and a linear scan of the sessions.
type model struct {
	cfg      Config
	kv       map[string]entry
	sessions map[string]Result
}

func newModel(cfg Config) *model {
	return &model{cfg: cfg, kv: map[string]entry{}, sessions: map[string]Result{}}
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
		m.kv[c.Key] = entry{key: c.Key, value: c.Value, rev: index}
	case OpAppend:
		v := append(append([]byte(nil), cur.value...), c.Value...)
		if len(v) > m.cfg.maxValueBytes() {
			fail.Code = CodeTooLarge
			return fail
		}
		m.kv[c.Key] = entry{key: c.Key, value: v, rev: index}
	case OpDelete:
		if !ok {
			return Result{Index: index, Code: CodeNotFound}
		}
		delete(m.kv, c.Key)
		return Result{Index: index, Prev: cur.rev}
	}
	return Result{Index: index, Rev: index, Prev: cur.rev}
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
