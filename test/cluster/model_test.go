package cluster

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The model is the judge of every cluster run: these tests show that it
// convicts the anomalies the runs look for, and acquits histories a correct
// store can produce. They need no cluster and run with the unit tests.

// unknownReturn is what the workload records as the return time of an
// operation whose outcome nobody knows (workload.record).
const unknownReturn = 1<<62 - 1

// h builds a history from operations written as
// (client, call, return, input, output).
type h []porcupine.Operation

func (hist h) op(client int, call, ret int64, in kvInput, out kvOutput) h {
	if out.Unknown {
		ret = unknownReturn
	}
	return append(hist, porcupine.Operation{ClientId: client, Call: call, Return: ret, Input: in, Output: out})
}

func put(k, v string) kvInput             { return kvInput{Op: opPut, Key: k, Value: v} }
func appendOp(k, v string) kvInput        { return kvInput{Op: opAppend, Key: k, Value: v} }
func cas(k, v string, rev uint64) kvInput { return kvInput{Op: opCAS, Key: k, Value: v, Rev: rev} }
func create(k, v string) kvInput          { return kvInput{Op: opCreate, Key: k, Value: v} }
func del(k string) kvInput                { return kvInput{Op: opDelete, Key: k} }
func get(k, level string) kvInput         { return kvInput{Op: opGet, Key: k, Consistency: level} }

func okAt(idx uint64) kvOutput           { return kvOutput{OK: true, Index: idx} }
func read(v string, rev uint64) kvOutput { return kvOutput{OK: true, Value: v, Index: rev} }
func notFound() kvOutput                 { return kvOutput{NotFound: true} }
func unknown() kvOutput                  { return kvOutput{Unknown: true} }
func precondition() kvOutput             { return kvOutput{Precondition: true} }

func checkHistory(t *testing.T, name string, hist h, want porcupine.CheckResult) {
	t.Helper()
	res, info := porcupine.CheckOperationsVerbose(kvModel, hist, 10*time.Second)
	if res != want {
		t.Errorf("%s: porcupine says %s, want %s", name, res, want)
		for _, op := range hist {
			t.Logf("  c%d [%d,%d] %s", op.ClientId, op.Call, op.Return, kvModel.DescribeOperation(op.Input, op.Output))
		}
		_ = info
	}
}

// TestModelRejectsAnomalies feeds the model histories no linearizable store
// can produce: each names the anomaly it stands for.
func TestModelRejectsAnomalies(t *testing.T) {
	for _, tc := range []struct {
		name string
		hist h
	}{
		{"stale read: a linearizable read after a later write returns the older value",
			h{}.op(0, 0, 10, put("k", "a"), okAt(5)).op(0, 20, 30, put("k", "b"), okAt(6)).
				op(1, 40, 50, get("k", "linearizable"), read("a", 5))},
		{"stale read: a lease read misses a write that completed before it began",
			h{}.op(0, 0, 10, put("k", "a"), okAt(5)).op(0, 20, 30, put("k", "b"), okAt(6)).
				op(1, 40, 50, get("k", "lease"), read("a", 5))},
		{"stale read: the key is absent after its create completed",
			h{}.op(0, 0, 10, create("k", "a"), okAt(3)).op(1, 20, 30, get("k", "linearizable"), notFound())},
		{"stale read: reads go back in time",
			h{}.op(0, 0, 100, put("k", "b"), okAt(6)).op(0, 200, 300, put("k", "c"), unknown()).
				op(1, 310, 320, get("k", "linearizable"), read("c", 7)).
				op(1, 330, 340, get("k", "linearizable"), read("b", 6))},
		{"lost write: an acknowledged put is never seen",
			h{}.op(0, 0, 10, put("k", "a"), okAt(5)).op(1, 20, 30, get("k", "linearizable"), notFound())},
		{"lost write: the second of two acknowledged appends is missing",
			h{}.op(0, 0, 10, appendOp("k", "x"), okAt(5)).op(0, 20, 30, appendOp("k", "y"), okAt(6)).
				op(1, 40, 50, get("k", "linearizable"), read("x", 5))},
		{"lost write: a deleted key comes back with its old value",
			h{}.op(0, 0, 10, put("k", "a"), okAt(5)).op(0, 20, 30, del("k"), okAt(6)).
				op(1, 40, 50, get("k", "linearizable"), read("a", 5))},
		{"duplicate apply: one append applied twice",
			h{}.op(0, 0, 10, appendOp("k", "x"), okAt(5)).op(1, 20, 30, get("k", "linearizable"), read("xx", 6))},
		{"duplicate apply: an old put applied again after a newer one",
			h{}.op(0, 0, 10, put("k", "a"), okAt(5)).op(0, 20, 30, put("k", "b"), okAt(6)).
				op(1, 40, 50, get("k", "linearizable"), read("a", 7))},
		{"duplicate apply: an unknown-outcome append shows up twice",
			h{}.op(0, 0, 10, put("k", "p"), okAt(2)).op(0, 20, 30, appendOp("k", "x"), unknown()).
				op(1, 40, 50, get("k", "linearizable"), read("pxx", 9))},
		{"wrong revision: the value is right but the ETag is not its write's index",
			h{}.op(0, 0, 10, put("k", "a"), okAt(5)).op(1, 20, 30, get("k", "linearizable"), read("a", 4))},
		{"wrong revision: two reads of one unknown-outcome write disagree on its revision",
			h{}.op(0, 0, 10, put("k", "a"), okAt(5)).op(0, 20, 30, put("k", "b"), unknown()).
				op(1, 40, 50, get("k", "linearizable"), read("b", 8)).
				op(1, 60, 70, get("k", "linearizable"), read("b", 9))},
		{"duplicate apply: one delete acknowledged twice, nothing written between",
			h{}.op(0, 0, 10, put("k", "a"), okAt(5)).op(0, 20, 30, del("k"), okAt(6)).
				op(1, 40, 50, del("k"), okAt(7))},
		{"compare-and-swap succeeds against a stale revision",
			h{}.op(0, 0, 10, put("k", "a"), okAt(5)).op(0, 20, 30, put("k", "b"), okAt(6)).
				op(1, 40, 50, cas("k", "c", 5), okAt(7))},
		{"create succeeds on a key that exists",
			h{}.op(0, 0, 10, put("k", "a"), okAt(5)).op(1, 20, 30, create("k", "b"), okAt(6))},
		{"write and read on another key do not excuse a stale read",
			h{}.op(0, 0, 10, put("k", "a"), okAt(5)).op(2, 0, 10, put("other", "z"), okAt(4)).
				op(0, 20, 30, put("k", "b"), okAt(6)).op(1, 40, 50, get("k", "lease"), read("a", 5)).
				op(2, 40, 50, get("other", "linearizable"), read("z", 4))},
	} {
		checkHistory(t, tc.name, tc.hist, porcupine.Illegal)
	}
}

// TestModelAcceptsCorrectHistories feeds the model histories a correct store
// can produce, with concurrency, unknown outcomes and every operation.
func TestModelAcceptsCorrectHistories(t *testing.T) {
	for _, tc := range []struct {
		name string
		hist h
	}{
		{"sequential put, get, append, cas, delete",
			h{}.op(0, 0, 10, put("k", "a"), okAt(5)).op(0, 20, 30, get("k", "linearizable"), read("a", 5)).
				op(0, 40, 50, appendOp("k", "b"), okAt(7)).op(0, 60, 70, get("k", "lease"), read("ab", 7)).
				op(0, 80, 90, cas("k", "c", 7), okAt(9)).op(0, 100, 110, cas("k", "d", 7), precondition()).
				op(0, 120, 130, del("k"), okAt(10)).op(0, 140, 150, get("k", "linearizable"), notFound()).
				op(0, 160, 170, del("k"), notFound()).op(0, 180, 190, create("k", "e"), okAt(12)).
				op(0, 200, 210, create("k", "f"), precondition())},
		{"a read concurrent with a write may see the old value",
			h{}.op(0, 0, 10, put("k", "a"), okAt(5)).op(0, 20, 60, put("k", "b"), okAt(6)).
				op(1, 30, 40, get("k", "linearizable"), read("a", 5))},
		{"a read concurrent with a write may see the new value",
			h{}.op(0, 0, 10, put("k", "a"), okAt(5)).op(0, 20, 60, put("k", "b"), okAt(6)).
				op(1, 30, 40, get("k", "linearizable"), read("b", 6))},
		{"concurrent writes take effect in either order",
			h{}.op(0, 0, 50, put("k", "a"), okAt(6)).op(1, 0, 50, put("k", "b"), okAt(5)).
				op(2, 60, 70, get("k", "linearizable"), read("a", 6))},
		{"an unknown-outcome write that took effect: a later read tells its revision",
			h{}.op(0, 0, 10, put("k", "a"), okAt(5)).op(0, 20, 30, put("k", "b"), unknown()).
				op(1, 40, 50, get("k", "linearizable"), read("b", 8)).
				op(1, 60, 70, cas("k", "c", 8), okAt(9))},
		{"an unknown-outcome write that never took effect",
			h{}.op(0, 0, 10, put("k", "a"), okAt(5)).op(0, 20, 30, put("k", "b"), unknown()).
				op(1, 40, 50, get("k", "linearizable"), read("a", 5)).
				op(1, 1000, 1010, get("k", "lease"), read("a", 5))},
		{"an unknown-outcome write that took effect late, after a read missed it",
			h{}.op(0, 0, 10, put("k", "a"), okAt(5)).op(0, 20, 30, appendOp("k", "x"), unknown()).
				op(1, 40, 50, get("k", "linearizable"), read("a", 5)).
				op(1, 60, 70, get("k", "linearizable"), read("ax", 11))},
		{"keys are independent",
			h{}.op(0, 0, 10, put("k", "a"), okAt(5)).op(1, 0, 10, put("j", "b"), okAt(6)).
				op(2, 20, 30, get("j", "linearizable"), read("b", 6)).op(2, 40, 50, get("k", "lease"), read("a", 5))},
	} {
		checkHistory(t, tc.name, tc.hist, porcupine.Ok)
	}
}
