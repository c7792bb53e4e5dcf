package cluster

import (
	"fmt"
	"sort"

	"github.com/anishathalye/porcupine"
)

// The porcupine model of one key of the store. Operations on different
// keys commute, so the history is checked per key (Partition).
//
// A write answers with the key's new mod revision (docs/api.md), so the
// model tracks revisions too: a CAS
// succeeds only against the revision it names, and a read's ETag must be
// the revision of the write it sees. A write with an unknown outcome
// (timeout, reset, 504) gets an infinite return time and, when the model
// takes it, a revision nobody knows yet (0); the next read that sees it
// tells the revision.

// Operation kinds.
const (
	opPut    = "put"    // PUT
	opCAS    = "cas"    // PUT with If-Match
	opCreate = "create" // PUT with If-None-Match: *
	opAppend = "append" // POST ?op=append
	opDelete = "delete" // DELETE
	opGet    = "get"    // GET, linearizable or lease
)

type kvInput struct {
	Op          string
	Key         string
	Value       string // put, cas, create: the value; append: the suffix
	Rev         uint64 // cas: the If-Match revision; txn: txn/0's expected mod revision
	Consistency string // get
	Rev2        uint64 // txn: txn/1's expected mod revision
	Value2      string // txn: txn/1's new value
	Object      int    // k8s ops: the object's index (k8smodel.go)
}

// kvOutput is what came back. Exactly one of the flags is set for a
// write; a read is Found or not.
type kvOutput struct {
	Unknown      bool     // a write whose outcome nobody knows
	OK           bool     // write applied; read found the key
	Precondition bool     // 412: If-Match / If-None-Match did not hold
	NotFound     bool     // DELETE of an absent key; read of an absent key
	Index        uint64   // write: the key's new revision; read: the ETag revision
	Value        string   // read: the value
	Pair         pairRead // range, and a failed txn: both keys as read
	Objects      objSet   // k8s ops: what a list, a get or a failed compare read
}

type kvState struct {
	Exists bool
	Value  string
	Rev    uint64 // 0: unknown (set by a write whose answer was lost)
}

func revMatches(known, got uint64) bool { return known == 0 || known == got }

// kvStep is the sequential specification of one key.
func kvStep(state, input, output any) (bool, any) {
	in, out := input.(kvInput), output.(kvOutput)
	switch in.Key {
	case txnKeys:
		return txnStep(state, in, out)
	case k8sObjPrefix:
		return k8sStep(state, in, out)
	}
	s := state.(kvState)
	written := func(v string) kvState {
		if out.Unknown {
			return kvState{true, v, 0}
		}
		return kvState{true, v, out.Index}
	}
	switch in.Op {
	case opGet:
		if !out.OK {
			return !s.Exists, s
		}
		if !s.Exists || s.Value != out.Value || !revMatches(s.Rev, out.Index) {
			return false, s
		}
		s.Rev = out.Index
		return true, s
	case opPut:
		return out.OK || out.Unknown, written(in.Value)
	case opAppend:
		v := in.Value
		if s.Exists {
			v = s.Value + in.Value
		}
		return out.OK || out.Unknown, written(v)
	case opCreate:
		if out.Precondition {
			return s.Exists, s
		}
		if s.Exists { // an unknown outcome may be this refusal
			return out.Unknown, s
		}
		return out.OK || out.Unknown, written(in.Value)
	case opCAS:
		holds := s.Exists && revMatches(s.Rev, in.Rev)
		if out.Precondition {
			// With the revision unknown the model cannot tell; a read
			// after it pins it down.
			return !s.Exists || s.Rev != in.Rev, s
		}
		if !holds { // an unknown outcome may be this refusal
			return out.Unknown, s
		}
		return out.OK || out.Unknown, written(in.Value)
	case opDelete:
		if out.NotFound {
			return !s.Exists, s
		}
		if out.Unknown {
			return true, kvState{}
		}
		return out.OK && s.Exists, kvState{}
	}
	panic("unknown op " + in.Op)
}

var kvModel = porcupine.Model{
	Init: func() any { return kvState{} },
	Step: kvStep,
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(kvInput).Key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		switch in.Key {
		case txnKeys:
			return describeTxn(in, out)
		case k8sObjPrefix:
			return describeK8s(in, out)
		}
		var res string
		switch {
		case out.Unknown:
			res = "unknown"
		case out.Precondition:
			res = "412"
		case out.NotFound:
			res = "404"
		case in.Op == opGet:
			res = fmt.Sprintf("%q@%d", short(out.Value), out.Index)
		default:
			res = fmt.Sprintf("ok@%d", out.Index)
		}
		switch in.Op {
		case opGet:
			return fmt.Sprintf("get(%s,%s) -> %s", in.Key, in.Consistency, res)
		case opCAS:
			return fmt.Sprintf("cas(%s,%q,if=%d) -> %s", in.Key, short(in.Value), in.Rev, res)
		case opDelete:
			return fmt.Sprintf("delete(%s) -> %s", in.Key, res)
		}
		return fmt.Sprintf("%s(%s,%q) -> %s", in.Op, in.Key, short(in.Value), res)
	},
	DescribeState: func(state any) string {
		switch st := state.(type) {
		case txnState, objSet:
			return fmt.Sprintf("%+v", st)
		}
		s := state.(kvState)
		if !s.Exists {
			return "absent"
		}
		return fmt.Sprintf("%q@%d", short(s.Value), s.Rev)
	},
}

// short keeps the end of long values (appends grow them; the end is news).
func short(v string) string {
	if len(v) > 48 {
		return "…" + v[len(v)-47:]
	}
	return v
}
