package kv

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// TestQuota fills the state to its quota: the write that would pass it is
// rejected with no_space and changes nothing; deletes go through; history
// counts (an overwrite adds a version) until compaction frees it, after
// which writes are taken again.
func TestQuota(t *testing.T) {
	const quota = 10 * (KeyOverheadBytes + 4 + VersionOverheadBytes + 100)
	r := newReplica(Config{QuotaBytes: quota})
	value := strings.Repeat("v", 100)
	var n int
	for ; n < 100; n++ {
		res := r.do(put(fmt.Sprintf("k%03d", n), value))
		if res.Code == CodeNoSpace {
			break
		}
		mustCode(t, res, CodeOK)
	}
	if n != 10 {
		t.Fatalf("%d keys fit, want 10", n)
	}
	if r.Size() > quota {
		t.Fatalf("Size %d over the quota %d", r.Size(), quota)
	}
	mustAbsent(t, r.Store, "k010")
	if r.QuotaRejections() != 1 {
		t.Fatalf("QuotaRejections %d, want 1", r.QuotaRejections())
	}
	// Any new version of a key is refused: the old one stays in history.
	mustCode(t, r.do(appendCmd("k000", "x")), CodeNoSpace)
	mustCode(t, r.do(put("k000", "small")), CodeNoSpace)
	mustCode(t, r.do(txnCmd(Txn{Success: []TxnOp{putOp("k000", "")}})), CodeNoSpace)
	// Deletes go through; compaction frees what they and history hold.
	mustCode(t, r.do(del("k001")), CodeOK)
	mustCode(t, r.do(del("k002")), CodeOK)
	mustCode(t, r.do(put("k100", value)), CodeNoSpace)
	rev, _ := r.Revision()
	mustCode(t, r.do(Command{Op: OpCompact, Rev: rev}), CodeOK)
	// The delete at the compacted revision itself stays, as a marker, so
	// the two deletes free one key and a half.
	mustCode(t, r.do(put("k100", value)), CodeOK)
	mustCode(t, r.do(put("k102", value)), CodeNoSpace)

	// A refused command with an idempotency key is not remembered: its
	// retry takes effect once space is freed.
	c := put("k102", value)
	c.IdempotencyKey = "retry-me"
	mustCode(t, r.do(c), CodeNoSpace)
	mustCode(t, r.do(del("k100")), CodeOK)
	rev, _ = r.Revision()
	mustCode(t, r.do(Command{Op: OpCompact, Rev: rev}), CodeOK)
	res := r.do(c)
	mustCode(t, res, CodeOK)
	mustGet(t, r.Store, "k102", value, res.Rev)
}

// TestQuotaCountsSessions shows that remembered sessions count against the
// quota, and that forgetting them frees it.
func TestQuotaCountsSessions(t *testing.T) {
	r := newReplica(Config{QuotaBytes: SessionOverheadBytes + KeyOverheadBytes + VersionOverheadBytes + 16, SessionWindow: 5})
	before := r.Size()
	c := del("absent")
	c.IdempotencyKey = "token-01"
	mustCode(t, r.do(c), CodeNotFound)
	if got := r.Size() - before; got != SessionOverheadBytes+8+int64(len("no such key")) {
		t.Fatalf("a session added %d bytes", got)
	}
	mustCode(t, r.do(put("k", "v")), CodeNoSpace)
	for range 5 {
		mustCode(t, r.do(del("absent")), CodeNotFound)
	}
	if r.Size() != 0 || r.Sessions() != 0 {
		t.Fatalf("Size %d with %d sessions after the window passed", r.Size(), r.Sessions())
	}
	mustCode(t, r.do(put("k", "v")), CodeOK)
}

// TestQuotaSizeSurvivesRestore shows that a restored store counts the same
// Size as the one the snapshot was taken from, so replicas that restored
// and replicas that applied reject the same writes.
func TestQuotaSizeSurvivesRestore(t *testing.T) {
	r := newReplica(Config{})
	for i := range 50 {
		c := put(fmt.Sprintf("k%d", i), strings.Repeat("x", i))
		c.IdempotencyKey = fmt.Sprintf("t%d", i)
		r.do(c)
	}
	r.do(appendCmd("k1", "more"))
	r.do(del("k2"))
	other := New(Config{})
	if err := other.Restore(bytesReader(snapshotBytes(t, r.Store))); err != nil {
		t.Fatal(err)
	}
	if other.Size() != r.Size() {
		t.Fatalf("restored Size %d, original %d", other.Size(), r.Size())
	}
}

// heapAfterGC returns the live heap.
func heapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkMemoryPerKey measures the heap a key takes beyond its key and
// value bytes (the "overhead-B/key" metric), with 16-byte keys and 100-byte
// values: KeyOverheadBytes should not be below it.
func BenchmarkMemoryPerKey(b *testing.B) {
	const keys, valueBytes = 200000, 100
	for range b.N {
		before := heapAfterGC()
		s := New(Config{QuotaBytes: -1})
		for i := range keys {
			s.Apply(raftIndex(uint64(i+1)), EncodeCommand(put(fmt.Sprintf("key-%012d", i), strings.Repeat("v", valueBytes))))
		}
		after := heapAfterGC()
		perKey := float64(after-before) / keys
		b.ReportMetric(perKey, "heap-B/key")
		b.ReportMetric(perKey-16-valueBytes, "overhead-B/key")
		b.ReportMetric(float64(s.Size())/keys, "size-B/key")
		runtime.KeepAlive(s)
	}
}

// BenchmarkMemoryPerSession measures the heap a remembered session takes
// beyond its token and message: SessionOverheadBytes should not be below it.
func BenchmarkMemoryPerSession(b *testing.B) {
	const sessions = 100000
	for range b.N {
		before := heapAfterGC()
		s := New(Config{QuotaBytes: -1, MaxSessions: sessions, SessionWindow: 10 * sessions})
		for i := range sessions {
			c := del("absent")
			c.IdempotencyKey = fmt.Sprintf("token-%010d", i)
			s.Apply(raftIndex(uint64(i+1)), EncodeCommand(c))
		}
		after := heapAfterGC()
		perSession := float64(after-before) / sessions
		b.ReportMetric(perSession, "heap-B/session")
		b.ReportMetric(perSession-16-float64(len("no such key")), "overhead-B/session")
		runtime.KeepAlive(s)
	}
}
