package kv

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func txnCmd(t Txn) Command { return Command{Op: OpTxn, Txn: &t} }

func putOp(key, value string) TxnOp { return TxnOp{Kind: OpKindPut, Key: key, Value: []byte(value)} }

func mustRange(t *testing.T, s *Store, key, end string, o RangeOptions) *RangeResult {
	t.Helper()
	r, err := s.Range(key, end, o)
	if err != nil {
		t.Fatalf("Range(%q, %q, %+v): %v", key, end, o, err)
	}
	return r
}

func kvString(kvs []KeyValue) string {
	var parts []string
	for _, kv := range kvs {
		parts = append(parts, fmt.Sprintf("%s=%s@%d/%d/v%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version))
	}
	return strings.Join(parts, ",")
}

func TestRevisionRisesOncePerChangingCommand(t *testing.T) {
	// The store revision rises by exactly one for each command that
	// changes a key, whatever the number of keys; failed and read-only
	// commands leave it alone; create, mod and version follow etcd.
	r := newReplica(Config{})
	if rev, _ := r.Revision(); rev != 1 {
		t.Fatalf("empty store at revision %d, want 1", rev)
	}
	r.do(put("a", "1"))                                                          // 2
	res := r.do(txnCmd(Txn{Success: []TxnOp{putOp("a", "2"), putOp("b", "1")}})) // 3
	mustCode(t, res, CodeOK)
	if res.Revision != 3 {
		t.Fatalf("txn of two puts: revision %d, want 3", res.Revision)
	}
	mustCode(t, r.do(del("zzz")), CodeNotFound)
	r.do(txnCmd(Txn{Success: []TxnOp{{Kind: OpKindRange, Key: "a"}}}))
	r.do(txnCmd(Txn{Success: []TxnOp{{Kind: OpKindDelete, Key: "x", End: "y"}}})) // deletes nothing
	if rev, _ := r.Revision(); rev != 3 {
		t.Fatalf("revision %d after commands that changed nothing, want 3", rev)
	}
	got := kvString(mustRange(t, r.Store, "a", "\x00", RangeOptions{}).KVs)
	if want := "a=2@2/3/v2,b=1@3/3/v1"; got != want {
		t.Fatalf("range = %s, want %s", got, want)
	}
	r.do(del("a"))      // 4
	r.do(put("a", "3")) // 5: a new life
	if got := kvString(mustRange(t, r.Store, "a", "", RangeOptions{}).KVs); got != "a=3@5/5/v1" {
		t.Fatalf("recreated key = %s, want a fresh create revision and version 1", got)
	}
}

func TestRangeAtPastRevisions(t *testing.T) {
	// Every past revision down to the compacted one reads as the store
	// was then: values, deletes and recreations included.
	r := newReplica(Config{})
	r.do(put("a", "1")) // 2
	r.do(put("b", "1")) // 3
	r.do(put("a", "2")) // 4
	r.do(del("b"))      // 5
	r.do(put("c", "1")) // 6
	want := map[int64]string{
		1: "",
		2: "a=1@2/2/v1",
		3: "a=1@2/2/v1,b=1@3/3/v1",
		4: "a=2@2/4/v2,b=1@3/3/v1",
		5: "a=2@2/4/v2",
		6: "a=2@2/4/v2,c=1@6/6/v1",
	}
	for rev := int64(1); rev <= 6; rev++ {
		got := kvString(mustRange(t, r.Store, "a", "\x00", RangeOptions{Revision: rev}).KVs)
		if got != want[rev] {
			t.Errorf("at revision %d: %s, want %s", rev, got, want[rev])
		}
	}
	res := mustRange(t, r.Store, "a", "\x00", RangeOptions{Revision: 4, Limit: 1})
	if len(res.KVs) != 1 || res.Count != 2 || !res.More {
		t.Fatalf("limit 1 at 4: %+v, want one key, count 2, more", res)
	}
	if res := mustRange(t, r.Store, "a", "\x00", RangeOptions{CountOnly: true}); res.Count != 2 || len(res.KVs) != 0 {
		t.Fatalf("count only: %+v", res)
	}
	if res := mustRange(t, r.Store, "a", "\x00", RangeOptions{KeysOnly: true}); res.KVs[0].Value != nil {
		t.Fatalf("keys only carries values: %+v", res)
	}
	_, err := r.Range("a", "", RangeOptions{Revision: 7})
	var ke *Error
	if !errors.As(err, &ke) || ke.Code != CodeFutureRevision {
		t.Fatalf("read at a future revision: %v, want future_revision", err)
	}
	if _, err := r.Range("b", "a", RangeOptions{}); !errors.As(err, &ke) || ke.Code != CodeBadKey || !strings.Contains(ke.Message, "not after") {
		t.Fatalf("end before start: %v", err)
	}
}

func TestCompactionDiscardsHistoryBeforeIt(t *testing.T) {
	// After a compaction at r, reads at r and later are unchanged, reads
	// before r fail naming the compacted revision, and superseded versions
	// and old deletes are gone from memory.
	r := newReplica(Config{})
	r.do(put("a", "1")) // 2
	r.do(put("b", "1")) // 3
	r.do(put("a", "2")) // 4
	r.do(del("b"))      // 5
	r.do(put("a", "3")) // 6
	before := map[int64]string{}
	for rev := int64(4); rev <= 6; rev++ {
		before[rev] = kvString(mustRange(t, r.Store, "a", "\x00", RangeOptions{Revision: rev}).KVs)
	}
	mustCode(t, r.do(Command{Op: OpCompact, Rev: 7}), CodeFutureRevision)
	mustCode(t, r.do(Command{Op: OpCompact, Rev: 4}), CodeOK)
	if _, c := r.Revision(); c != 4 {
		t.Fatalf("compacted revision %d, want 4", c)
	}
	for rev := int64(4); rev <= 6; rev++ {
		if got := kvString(mustRange(t, r.Store, "a", "\x00", RangeOptions{Revision: rev}).KVs); got != before[rev] {
			t.Errorf("at %d after compaction: %s, want %s", rev, got, before[rev])
		}
	}
	_, err := r.Range("a", "", RangeOptions{Revision: 3})
	var ce *CompactedError
	if !errors.As(err, &ce) || ce.Compacted != 4 || !strings.Contains(err.Error(), "revision 4") {
		t.Fatalf("read below the compaction: %v", err)
	}
	mustCode(t, r.do(Command{Op: OpCompact, Rev: 4}), CodeCompacted)
	mustCode(t, r.do(Command{Op: OpCompact, Rev: 6}), CodeOK)
	rec, _ := r.records.Get(&record{key: "a"})
	if len(rec.vers) != 1 {
		t.Fatalf("key a keeps %d versions after compacting to its last write, want 1", len(rec.vers))
	}
	if _, ok := r.records.Get(&record{key: "b"}); ok || r.byKey["b"] != nil {
		t.Fatal("a key deleted before the compaction is still stored")
	}
}

func TestRetentionCompactsAutomatically(t *testing.T) {
	// With HistoryRevisions = 10, the history reaches back 10 revisions,
	// and memory holds no more than that plus the present.
	r := newReplica(Config{HistoryRevisions: 10})
	for i := range 100 {
		r.do(put("k", fmt.Sprint(i)))
	}
	rev, compacted := r.Revision()
	if rev != 101 || compacted != 91 {
		t.Fatalf("revision %d compacted %d, want 101 and 91", rev, compacted)
	}
	rec, _ := r.records.Get(&record{key: "k"})
	if len(rec.vers) != 11 {
		t.Fatalf("%d versions kept, want 11", len(rec.vers))
	}
	if r.changes.len() != 11 {
		t.Fatalf("%d changes in the log, want 11", r.changes.len())
	}
	if got := mustRange(t, r.Store, "k", "", RangeOptions{Revision: 91}).KVs[0].Value; string(got) != "89" {
		t.Fatalf("value at 91 = %s, want 89", got)
	}
}

func TestSnapshotKeepsHistory(t *testing.T) {
	// A restored store answers past reads, compactions and watches from
	// history exactly as the original, and snapshots to the same bytes.
	r := newReplica(Config{})
	for i := range 20 {
		r.do(put(fmt.Sprintf("k%d", i%3), fmt.Sprint(i)))
		if i%5 == 4 {
			r.do(del(fmt.Sprintf("k%d", i%3)))
		}
	}
	r.do(Command{Op: OpCompact, Rev: 8})
	snap := snapshotBytes(t, r.Store)
	c := New(Config{})
	if err := c.Restore(bytesReader(snap)); err != nil {
		t.Fatal(err)
	}
	if c.Hash() != r.Hash() {
		t.Fatal("restored store hashes differently")
	}
	rev, _ := r.Revision()
	for at := int64(8); at <= rev; at++ {
		a := kvString(mustRange(t, r.Store, "k", "\x00", RangeOptions{Revision: at}).KVs)
		b := kvString(mustRange(t, c, "k", "\x00", RangeOptions{Revision: at}).KVs)
		if a != b {
			t.Fatalf("at %d: restored %s, original %s", at, b, a)
		}
	}
	if c.changes.len() != r.changes.len() {
		t.Fatalf("change log: restored %d events, original %d", c.changes.len(), r.changes.len())
	}
	for i := range r.changes.len() {
		if e := *r.changes.at(i); *c.changes.at(i) != e {
			t.Fatalf("change %d: restored %+v, original %+v", i, *c.changes.at(i), e)
		}
	}
}

func TestChangeLogRing(t *testing.T) {
	// The ring against a slice: pushes and pops in bursts that wrap it,
	// grow it past several doublings and shrink it back, with from
	// checked against a scan at each step.
	rng := rand.New(rand.NewPCG(7, 11))
	var l changeLog
	var want []histEvent
	rev := int64(0)
	for step := range 4000 {
		burst := rng.IntN(300)
		if step%400 < 200 {
			for range burst {
				rev += int64(rng.IntN(2))
				e := histEvent{key: fmt.Sprint("k", rev), rev: rev, sub: uint32(len(want))}
				l.push(e)
				want = append(want, e)
			}
		} else {
			for range min(burst, len(want)) {
				if got := l.pop(); got != want[0] {
					t.Fatalf("step %d: popped %+v, want %+v", step, got, want[0])
				}
				want = want[1:]
			}
		}
		if l.len() != len(want) || (len(l.ring) > minChangeRing && l.len() < len(l.ring)/4) {
			t.Fatalf("step %d: %d events in a ring of %d, want %d", step, l.len(), len(l.ring), len(want))
		}
		for i := range want {
			if *l.at(i) != want[i] {
				t.Fatalf("step %d: event %d is %+v, want %+v", step, i, *l.at(i), want[i])
			}
		}
		probe := rev - int64(rng.IntN(50))
		i := 0
		for i < len(want) && want[i].rev < probe {
			i++
		}
		if got := l.from(probe); got != i {
			t.Fatalf("step %d: from(%d) = %d, want %d", step, probe, got, i)
		}
	}
}

func TestRestoreVersion1Snapshot(t *testing.T) {
	// A snapshot from before revisions is refused by Restore with
	// ErrOldSnapshotFormat, the state untouched: a member converting on
	// its own would assign revisions the others do not share.
	// ConvertSnapshot converts it: each key's old revision (a log index)
	// becomes its create and mod revision, the store revision becomes the
	// applied index, and history starts there.
	body := []byte("RKVS\x01\x09")
	body = append(body, 2, 1, 'a', 1, 'x', 3, 1, 'b', 0, 7, 0)
	v1 := withCRC(body)
	s := New(Config{})
	s.Apply(1, EncodeCommand(put("k", "v")))
	before := s.Hash()
	err := s.Restore(bytesReader(v1))
	if !errors.Is(err, ErrOldSnapshotFormat) || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "applied index 9") {
		t.Fatalf("Restore of a version 1 snapshot: %v; want ErrOldSnapshotFormat naming applied index 9", err)
	}
	if s.Hash() != before || s.AppliedIndex() != 1 {
		t.Fatal("the refused restore changed the state")
	}

	var converted bytes.Buffer
	format, err := ConvertSnapshot(&converted, bytesReader(v1), Config{})
	if err != nil || format != 1 {
		t.Fatalf("ConvertSnapshot = format %d, %v; want format 1", format, err)
	}
	if got := converted.Bytes()[len(snapshotMagic)]; got != SnapshotVersion {
		t.Fatalf("converted stream is version %d, want %d", got, SnapshotVersion)
	}
	// Converting is deterministic: the same backup gives the same bytes.
	var again bytes.Buffer
	if _, err := ConvertSnapshot(&again, bytesReader(v1), Config{}); err != nil || !bytes.Equal(again.Bytes(), converted.Bytes()) {
		t.Fatalf("a second conversion differs (err %v)", err)
	}
	// A current stream passes through unchanged.
	var through bytes.Buffer
	if format, err := ConvertSnapshot(&through, bytes.NewReader(converted.Bytes()), Config{}); err != nil || format != SnapshotVersion || !bytes.Equal(through.Bytes(), converted.Bytes()) {
		t.Fatalf("ConvertSnapshot of a version %d stream = format %d, %v; want it copied as it is", SnapshotVersion, format, err)
	}
	// A corrupt version 1 stream is refused as corrupt, writing nothing.
	var none bytes.Buffer
	if _, err := ConvertSnapshot(&none, bytesReader(withFlippedByte(v1, len(v1)-1)), Config{}); !errors.Is(err, ErrCorrupt) || none.Len() != 0 {
		t.Fatalf("corrupt version 1 stream: %v, %d bytes written; want ErrCorrupt and none", err, none.Len())
	}

	if err := s.Restore(&converted); err != nil {
		t.Fatal(err)
	}
	if rev, c := s.Revision(); rev != 9 || c != 9 {
		t.Fatalf("revision %d compacted %d, want 9 and 9", rev, c)
	}
	if got := kvString(mustRange(t, s, "a", "\x00", RangeOptions{}).KVs); got != "a=x@3/3/v1,b=@7/7/v1" {
		t.Fatalf("converted keys %s", got)
	}
	res := s.Apply(10, EncodeCommand(Command{Op: OpPut, Key: "a", Value: []byte("y"), Cond: CondRevMatch, Rev: 3})).(*Result)
	if !res.OK() || res.Rev != 10 {
		t.Fatalf("If-Match with the ETag from before the conversion: %+v", res)
	}
}

func withFlippedByte(b []byte, at int) []byte {
	out := bytes.Clone(b)
	out[at] ^= 0x20
	return out
}
