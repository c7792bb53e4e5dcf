package cluster

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

func txn(ra, rb uint64, va, vb string) kvInput {
	return kvInput{Op: opTxn, Key: txnKeys, Rev: ra, Rev2: rb, Value: va, Value2: vb}
}

func rangePair() kvInput { return kvInput{Op: opRange, Key: txnKeys} }

func pair(va string, ra uint64, vb string, rb uint64) kvOutput {
	return kvOutput{OK: true, Pair: pairRead{Exists: [2]bool{va != "", vb != ""}, Values: [2]string{va, vb}, Revs: [2]uint64{ra, rb}}}
}

func txnFailed(p kvOutput) kvOutput { p.OK = false; p.Precondition = true; return p }

// TestTxnModel shows the transaction model convicts a lost update, a read
// of a pair that never was, and a failed compare that should have held,
// and acquits concurrent histories a correct store gives, unknown
// outcomes included.
func TestTxnModel(t *testing.T) {
	bad := map[string]h{
		"lost update: two transactions succeed on the same revisions": h{}.
			op(0, 0, 10, txn(0, 0, "a1", "b1"), okAt(2)).
			op(1, 20, 30, txn(2, 2, "a2", "b2"), okAt(3)).
			op(2, 40, 50, txn(2, 2, "a3", "b3"), okAt(4)),
		"torn read: half of a transaction": h{}.
			op(0, 0, 10, txn(0, 0, "a1", "b1"), okAt(2)).
			op(1, 20, 30, rangePair(), pair("a1", 2, "", 0)),
		"a compare that held reported failed": h{}.
			op(0, 0, 10, txn(0, 0, "a1", "b1"), okAt(2)).
			op(1, 20, 30, txn(2, 2, "x", "y"), txnFailed(pair("a1", 2, "b1", 2))),
		"stale read after a transaction": h{}.
			op(0, 0, 10, txn(0, 0, "a1", "b1"), okAt(2)).
			op(0, 20, 30, txn(2, 2, "a2", "b2"), okAt(3)).
			op(1, 40, 50, rangePair(), pair("a1", 2, "b1", 2)),
	}
	for name, hist := range bad {
		checkHistory(t, name, hist, porcupine.Illegal)
	}
	good := map[string]h{
		"concurrent transactions, one wins": h{}.
			op(0, 0, 10, txn(0, 0, "a1", "b1"), okAt(2)).
			op(1, 0, 10, txn(0, 0, "a2", "b2"), txnFailed(pair("a1", 2, "b1", 2))).
			op(2, 20, 30, rangePair(), pair("a1", 2, "b1", 2)),
		"unknown outcome, then seen applied": h{}.
			op(0, 0, 10, txn(0, 0, "a1", "b1"), unknown()).
			op(1, 20, 30, rangePair(), pair("a1", 5, "b1", 5)).
			op(1, 40, 50, txn(5, 5, "a2", "b2"), okAt(6)),
		"unknown outcome, never applied": h{}.
			op(0, 0, 10, txn(0, 0, "a1", "b1"), unknown()).
			op(1, 20, 30, rangePair(), pair("", 0, "", 0)),
		"transactions beside single-key writes on other keys": h{}.
			op(0, 0, 10, txn(0, 0, "a1", "b1"), okAt(2)).
			op(1, 0, 10, put("shared/0", "x"), okAt(3)).
			op(2, 20, 30, get("shared/0", "linearizable"), read("x", 3)),
	}
	for name, hist := range good {
		checkHistory(t, name, hist, porcupine.Ok)
	}
}

// TestLockLogCheck shows the lock check convicts a hold that wrote after a
// newer one began and acquits holds one after another.
func TestLockLogCheck(t *testing.T) {
	if p := lockLogProblems("5:0:0;5:0:1;9:1:0;9:1:1;12:2:0;"); len(p) != 0 {
		t.Fatalf("holds in order convicted: %v", p)
	}
	for _, bad := range []string{"5:0:0;9:1:0;5:0:1;", "5:0:0;9:1:0;9:1:1;12:2:0;9:1:2;"} {
		if p := lockLogProblems(bad); len(p) == 0 {
			t.Errorf("overlapping holds %q acquitted", bad)
		}
	}
}
