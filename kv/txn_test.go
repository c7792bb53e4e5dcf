package kv

import (
	"fmt"
	"strings"
	"testing"
)

func cmpMod(key string, op CompareOp, n int64) Compare {
	return Compare{Key: key, Target: CompareMod, Op: op, Number: n}
}

func TestTxnComparesChooseTheBranch(t *testing.T) {
	// Each target and operator decides as etcd's do; an absent key has
	// zero version, create, mod and lease, and no value to compare.
	r := newReplica(Config{})
	r.do(put("a", "m")) // 2
	cases := []struct {
		c    Compare
		want bool
	}{
		{Compare{Key: "a", Target: CompareValue, Op: CompareEqual, Value: []byte("m")}, true},
		{Compare{Key: "a", Target: CompareValue, Op: CompareLess, Value: []byte("n")}, true},
		{Compare{Key: "a", Target: CompareValue, Op: CompareGreater, Value: []byte("n")}, false},
		{Compare{Key: "a", Target: CompareVersion, Op: CompareEqual, Number: 1}, true},
		{Compare{Key: "a", Target: CompareCreate, Op: CompareNotEqual, Number: 2}, false},
		{cmpMod("a", CompareGreater, 1), true},
		{cmpMod("a", CompareLess, 2), false},
		{Compare{Key: "a", Target: CompareLease, Op: CompareEqual, Number: 0}, true},
		{cmpMod("absent", CompareEqual, 0), true},
		{Compare{Key: "absent", Target: CompareVersion, Op: CompareLess, Number: 1}, true},
		{Compare{Key: "absent", Target: CompareValue, Op: CompareNotEqual, Value: []byte("x")}, false},
		{Compare{Key: "a", End: "b", Target: CompareVersion, Op: CompareEqual, Number: 1}, true},
		{Compare{Key: "0", End: "\x00", Target: CompareMod, Op: CompareGreater, Number: 5}, false},
	}
	for i, tc := range cases {
		res := r.do(txnCmd(Txn{Compares: []Compare{tc.c}, Success: []TxnOp{{Kind: OpKindRange, Key: "a"}}}))
		mustCode(t, res, CodeOK)
		if res.Txn.Succeeded != tc.want {
			t.Errorf("case %d %+v: succeeded %v, want %v", i, tc.c, res.Txn.Succeeded, tc.want)
		}
	}
}

func TestTxnIsOneAtomicStep(t *testing.T) {
	// The chosen branch runs in order at one revision: a range after a put
	// sees it, a range before does not; the failure branch runs when a
	// compare fails; prev_kv reports what was replaced.
	r := newReplica(Config{})
	r.do(put("a", "1")) // 2
	res := r.do(txnCmd(Txn{
		Compares: []Compare{cmpMod("a", CompareEqual, 2)},
		Success: []TxnOp{
			{Kind: OpKindRange, Key: "a", End: "z"},
			{Kind: OpKindPut, Key: "a", Value: []byte("2"), PrevKV: true},
			{Kind: OpKindPut, Key: "b", Value: []byte("1")},
			{Kind: OpKindRange, Key: "a", End: "z"},
			{Kind: OpKindRange, Key: "a", Range: RangeOptions{Revision: 2}},
		},
		Failure: []TxnOp{putOp("failed", "1")},
	}))
	mustCode(t, res, CodeOK)
	tr := res.Txn
	if !tr.Succeeded || res.Revision != 3 || len(tr.Results) != 5 {
		t.Fatalf("result %+v %+v", res, tr)
	}
	if got := kvString(tr.Results[0].Range.KVs); got != "a=1@2/2/v1" {
		t.Errorf("range before the puts: %s", got)
	}
	if p := tr.Results[1].PrevKV; p == nil || string(p.Value) != "1" {
		t.Errorf("put prev_kv %+v", p)
	}
	if got := kvString(tr.Results[3].Range.KVs); got != "a=2@2/3/v2,b=1@3/3/v1" {
		t.Errorf("range after the puts: %s", got)
	}
	if got := kvString(tr.Results[4].Range.KVs); got != "a=1@2/2/v1" {
		t.Errorf("range at revision 2 inside the txn: %s", got)
	}
	res = r.do(txnCmd(Txn{Compares: []Compare{cmpMod("a", CompareEqual, 2)}, Success: []TxnOp{putOp("x", "1")},
		Failure: []TxnOp{{Kind: OpKindDelete, Key: "a", End: "c", PrevKV: true}}}))
	if res.Txn.Succeeded || res.Txn.Results[0].Deleted != 2 || len(res.Txn.Results[0].PrevKVs) != 2 || res.Revision != 4 {
		t.Fatalf("failure branch: %+v %+v", res, res.Txn)
	}
	mustAbsent(t, r.Store, "a")
	mustAbsent(t, r.Store, "x")
}

func TestTxnFailsWholeOrNotAtAll(t *testing.T) {
	// An operation that cannot run (a put on an unknown lease, a range at
	// a compacted revision) fails the whole transaction before anything
	// changes, with the reason.
	r := newReplica(Config{})
	r.do(put("a", "1"))
	r.do(put("a", "2"))
	r.do(Command{Op: OpCompact, Rev: 3})
	res := r.do(txnCmd(Txn{Success: []TxnOp{putOp("b", "1"), {Kind: OpKindPut, Key: "c", Lease: 42}}}))
	mustCode(t, res, CodeLeaseNotFound)
	if !strings.Contains(res.Message, "lease 42") {
		t.Errorf("message %q does not name the lease", res.Message)
	}
	res = r.do(txnCmd(Txn{Success: []TxnOp{putOp("b", "1"), {Kind: OpKindRange, Key: "a", Range: RangeOptions{Revision: 2}}}}))
	mustCode(t, res, CodeCompacted)
	res = r.do(txnCmd(Txn{Success: []TxnOp{{Kind: OpKindPut, Key: "nokey", IgnoreValue: true}}}))
	mustCode(t, res, CodeNotFound)
	mustAbsent(t, r.Store, "b")
	if rev, _ := r.Revision(); rev != 3 {
		t.Fatalf("revision %d after refused transactions, want 3", rev)
	}
}

func TestTxnRejectsMalformed(t *testing.T) {
	// Malformed transactions are refused by Validate, with a reason, and
	// alike by Apply.
	cfg := Config{MaxKeyBytes: 8}
	many := make([]TxnOp, MaxTxnOps+1)
	for i := range many {
		many[i] = putOp(fmt.Sprint(i), "")
	}
	cases := []struct {
		txn  Txn
		code string
		msg  string
	}{
		{Txn{Success: many}, CodeTooManyOps, "at most 128"},
		{Txn{Compares: []Compare{{Key: "a", Target: 9}}}, CodeBadRequest, "unknown target"},
		{Txn{Compares: []Compare{{Key: "a", Op: 7}}}, CodeBadRequest, "unknown operator"},
		{Txn{Compares: []Compare{{Key: "a", Target: CompareMod, Value: []byte("x")}}}, CodeBadRequest, "takes a number"},
		{Txn{Compares: []Compare{{Key: "", Target: CompareMod}}}, CodeBadKey, "empty key"},
		{Txn{Success: []TxnOp{{Kind: OpKindRange, Key: "b", End: "a"}}}, CodeBadKey, "not after"},
		{Txn{Success: []TxnOp{{Kind: OpKindPut, Key: "a", End: "b"}}}, CodeBadRequest, "one key"},
		{Txn{Success: []TxnOp{putOp("a", "1"), putOp("a", "2")}}, CodeBadRequest, "twice"},
		{Txn{Failure: []TxnOp{putOp("ab", "1"), {Kind: OpKindDelete, Key: "a", End: "b"}}}, CodeBadRequest, "deletes"},
		{Txn{Success: []TxnOp{{Kind: OpKindRange, Key: "a", Range: RangeOptions{Limit: -1}}}}, CodeBadRequest, "limit"},
		{Txn{Success: []TxnOp{putOp("123456789", "")}}, CodeBadKey, "over 8"},
		{Txn{Success: []TxnOp{{Kind: 9, Key: "a"}}}, CodeBadRequest, "unknown operation"},
	}
	r := newReplica(cfg)
	for i, tc := range cases {
		c := txnCmd(tc.txn)
		err := cfg.Validate(&c)
		ke, _ := err.(*Error)
		if ke == nil || ke.Code != tc.code || !strings.Contains(ke.Message, tc.msg) {
			t.Errorf("case %d: Validate = %v, want %s containing %q", i, err, tc.code, tc.msg)
		}
		if i == 3 || i == 11 {
			continue // not encodable: the target or kind decides the layout
		}
		if res := r.do(c); res.Code != tc.code {
			t.Errorf("case %d: Apply code %s, want %s (%s)", i, res.Code, tc.code, res.Message)
		}
	}
}

func TestTxnRetryAnswersFromHistory(t *testing.T) {
	// A retried transaction gets the first attempt's answer, ranges and
	// previous versions read again from history, and changes nothing.
	r := newReplica(Config{})
	r.do(put("a", "1"))
	c := txnCmd(Txn{Success: []TxnOp{
		{Kind: OpKindPut, Key: "a", Value: []byte("2"), PrevKV: true},
		{Kind: OpKindRange, Key: "a", End: "\x00"},
	}})
	c.IdempotencyKey = "tok"
	first := r.do(c)
	r.do(put("a", "3"))
	retry := r.do(c)
	if retry.Index != first.Index || retry.Revision != first.Revision || !retry.Txn.Succeeded {
		t.Fatalf("retry %+v, first %+v", retry, first)
	}
	if got, want := kvString(retry.Txn.Results[1].Range.KVs), kvString(first.Txn.Results[1].Range.KVs); got != want {
		t.Fatalf("retried range %s, first %s", got, want)
	}
	if p := retry.Txn.Results[0].PrevKV; p == nil || string(p.Value) != "1" {
		t.Fatalf("retried prev_kv %+v", p)
	}
	mustGet(t, r.Store, "a", "3", 4)
	// The session survives a snapshot with what a retry needs.
	s := New(Config{})
	if err := s.Restore(bytesReader(snapshotBytes(t, r.Store))); err != nil {
		t.Fatal(err)
	}
	again := s.Apply(r.next, EncodeCommand(c)).(*Result)
	if got := kvString(again.Txn.Results[1].Range.KVs); got != kvString(first.Txn.Results[1].Range.KVs) {
		t.Fatalf("retry after restore: range %s", got)
	}
}

func TestTxnCommandRoundTrip(t *testing.T) {
	// Every field of a transaction, compaction and lease command survives
	// encoding.
	cmds := []Command{
		{Op: OpTxn, IdempotencyKey: "t", Txn: &Txn{
			Compares: []Compare{{Key: "a", End: "b", Target: CompareValue, Op: CompareNotEqual, Value: []byte("v")},
				{Key: "c", Target: CompareLease, Op: CompareGreater, Number: -3}},
			Success: []TxnOp{{Kind: OpKindPut, Key: "k", Value: []byte("v"), Lease: 7, PrevKV: true, IgnoreLease: true},
				{Kind: OpKindRange, Key: "a", End: "\x00", Range: RangeOptions{Revision: 5, Limit: 2, CountOnly: true, KeysOnly: true,
					SortBy: SortByMod, Order: SortDescend, MinMod: 1, MaxMod: 2, MinCreate: 3, MaxCreate: 4}}},
			Failure: []TxnOp{{Kind: OpKindDelete, Key: "d", End: "e", PrevKV: true}},
		}},
		{Op: OpCompact, Rev: 99},
		{Op: OpLeaseGrant, Lease: 5, TTL: 60},
		{Op: OpLeaseRevoke, Lease: 5},
		{Op: OpLeaseCheckpoint, Checkpoints: []LeaseCheckpoint{{ID: 1, Remaining: 2}, {ID: 3, Remaining: 0}}},
	}
	for _, c := range cmds {
		got, err := DecodeCommand(EncodeCommand(c))
		if err != nil {
			t.Fatalf("%v: %v", c.Op, err)
		}
		if a, b := fmt.Sprintf("%+v", c), fmt.Sprintf("%+v", got); c.Txn == nil && a != b {
			t.Fatalf("round trip %s != %s", b, a)
		}
		if c.Txn != nil && fmt.Sprintf("%+v", *c.Txn) != fmt.Sprintf("%+v", *got.Txn) {
			t.Fatalf("txn round trip\n%+v\n%+v", *got.Txn, *c.Txn)
		}
	}
}
