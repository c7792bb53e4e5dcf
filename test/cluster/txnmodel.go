package cluster

import (
	"fmt"
	"strconv"
	"strings"
)

// The porcupine model of the transaction clients: two keys, txn/0 and
// txn/1, written together by transactions that compare both keys' mod
// revisions (optimistic concurrency), and read together by linearizable
// range reads. Their operations share the partition key txnKeys, so they
// are checked as one register of two cells.

const (
	opTxn   = "txn"   // POST /v1/txn: if mod(txn/0)=Rev and mod(txn/1)=Rev2, put both, else range both
	opRange = "range" // GET /v1/range?prefix=txn/
	txnKeys = "txn/"
)

// txnCell is one key of the pair.
type txnCell struct {
	Exists bool
	Value  string
	Rev    uint64 // 0: unknown (written by a transaction whose answer was lost)
}

type txnState struct{ A, B txnCell }

// pairRead is what a range (or a failed transaction's range) saw.
type pairRead struct {
	Exists [2]bool
	Values [2]string
	Revs   [2]uint64
}

// cellHolds reports whether a compare of the cell's mod revision with want
// (0: absent) can hold; with the revision unknown it may.
func cellHolds(c txnCell, want uint64) bool {
	if !c.Exists {
		return want == 0
	}
	return want != 0 && revMatches(c.Rev, want)
}

// cellSurely reports whether the compare certainly holds.
func cellSurely(c txnCell, want uint64) bool {
	if !c.Exists {
		return want == 0
	}
	return c.Rev != 0 && c.Rev == want
}

// readMatches holds a read to the state and learns unknown revisions.
func readMatches(s txnState, r pairRead) (bool, txnState) {
	cells := [2]*txnCell{&s.A, &s.B}
	for i, c := range cells {
		if c.Exists != r.Exists[i] || (c.Exists && (c.Value != r.Values[i] || !revMatches(c.Rev, r.Revs[i]))) {
			return false, s
		}
		if c.Exists {
			c.Rev = r.Revs[i]
		}
	}
	return true, s
}

// txnStep is the sequential specification of the pair.
func txnStep(state any, in kvInput, out kvOutput) (bool, any) {
	s, ok := state.(txnState)
	if !ok {
		s = txnState{} // the partition starts from the model's Init
	}
	switch in.Op {
	case opRange:
		return readMatches(s, out.Pair)
	case opTxn:
		can := cellHolds(s.A, in.Rev) && cellHolds(s.B, in.Rev2)
		sure := cellSurely(s.A, in.Rev) && cellSurely(s.B, in.Rev2)
		written := txnState{A: txnCell{true, in.Value, out.Index}, B: txnCell{true, in.Value2, out.Index}}
		switch {
		case out.Unknown:
			if !can {
				return true, s
			}
			written.A.Rev, written.B.Rev = 0, 0
			return true, written
		case out.OK:
			return can, written
		default: // the compare failed: the failure branch read both keys
			if sure {
				return false, s
			}
			return readMatches(s, out.Pair)
		}
	}
	panic("unknown transaction op " + in.Op)
}

func describeTxn(in kvInput, out kvOutput) string {
	switch {
	case in.Op == opRange:
		return fmt.Sprintf("range(txn/) -> %v", out.Pair)
	case out.Unknown:
		return fmt.Sprintf("txn(if %d,%d put %q,%q) -> unknown", in.Rev, in.Rev2, short(in.Value), short(in.Value2))
	case out.OK:
		return fmt.Sprintf("txn(if %d,%d put %q,%q) -> ok@%d", in.Rev, in.Rev2, short(in.Value), short(in.Value2), out.Index)
	}
	return fmt.Sprintf("txn(if %d,%d) -> failed, read %v", in.Rev, in.Rev2, out.Pair)
}

// lockLogProblems checks the lock clients' log, "token:client:n;" per
// fenced write: tokens never go down (a lower token written after a
// higher one means an older hold wrote after a newer one began), and the
// writes of one hold are never interleaved with another's.
func lockLogProblems(log string) []string {
	var problems []string
	var prev int64
	done := map[int64]bool{}
	for _, entry := range strings.Split(strings.TrimSuffix(log, ";"), ";") {
		if entry == "" {
			continue
		}
		tok, err := strconv.ParseInt(strings.SplitN(entry, ":", 2)[0], 10, 64)
		if err != nil {
			problems = append(problems, fmt.Sprintf("lock log entry %q", entry))
			continue
		}
		switch {
		case tok < prev:
			problems = append(problems, fmt.Sprintf("lock log: token %d written after token %d: two holds overlapped", tok, prev))
		case tok != prev && done[tok]:
			problems = append(problems, fmt.Sprintf("lock log: hold %d resumed after another hold", tok))
		}
		if tok != prev {
			done[prev] = true
		}
		prev = max(prev, tok)
	}
	return problems
}
