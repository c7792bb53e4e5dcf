package kv

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
)

// MaxTxnOps bounds the compares of a transaction and the operations of
// each of its two branches. It is part of the format (every replica must
// accept the same transactions), and etcd's default.
const MaxTxnOps = 128

// CompareTarget is what a compare looks at.
type CompareTarget uint8

const (
	CompareValue CompareTarget = iota
	CompareVersion
	CompareCreate
	CompareMod
	CompareLease
)

var compareTargetNames = [...]string{"value", "version", "create", "mod", "lease"}

func (t CompareTarget) String() string {
	if int(t) < len(compareTargetNames) {
		return compareTargetNames[t]
	}
	return fmt.Sprintf("CompareTarget(%d)", uint8(t))
}

// ParseCompareTarget reads a target name: value, version, create, mod, lease.
func ParseCompareTarget(s string) (CompareTarget, bool) {
	i := slices.Index(compareTargetNames[:], s)
	return CompareTarget(i), i >= 0
}

// CompareOp is how a compare relates the key's field to its operand.
type CompareOp uint8

const (
	CompareEqual CompareOp = iota
	CompareNotEqual
	CompareLess
	CompareGreater
)

var compareOpNames = [...]string{"=", "!=", "<", ">"}

func (o CompareOp) String() string {
	if int(o) < len(compareOpNames) {
		return compareOpNames[o]
	}
	return fmt.Sprintf("CompareOp(%d)", uint8(o))
}

// ParseCompareOp reads =, !=, < or >.
func ParseCompareOp(s string) (CompareOp, bool) {
	i := slices.Index(compareOpNames[:], s)
	return CompareOp(i), i >= 0
}

// Compare is one condition of a transaction. It holds when it holds for
// every key of [Key, End) that exists (End "" for Key alone). A key that
// does not exist has version, create, mod and lease 0, and no value: a
// value compare on it does not hold.
type Compare struct {
	Key, End string
	Target   CompareTarget
	Op       CompareOp
	Value    []byte // for CompareValue
	Number   int64  // for the other targets
}

// OpKind is what a transaction operation does.
type OpKind uint8

const (
	OpKindRange OpKind = iota
	OpKindPut
	OpKindDelete
)

var opKindNames = [...]string{"range", "put", "delete"}

func (k OpKind) String() string {
	if int(k) < len(opKindNames) {
		return opKindNames[k]
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// SortTarget and SortOrder order a range's answer (before its limit
// applies); the default is key order.
type SortTarget uint8

const (
	SortByKey SortTarget = iota
	SortByVersion
	SortByCreate
	SortByMod
	SortByValue
)

type SortOrder uint8

const (
	SortNone SortOrder = iota
	SortAscend
	SortDescend
)

// RangeOptions shape a range read.
type RangeOptions struct {
	// Revision reads the store as it was at that revision; 0 is the present.
	Revision int64
	// Limit bounds the keys returned (0: Config.MaxListItems, which also
	// caps any larger limit).
	Limit     int64
	CountOnly bool
	KeysOnly  bool
	SortBy    SortTarget
	Order     SortOrder
	// Keys whose mod or create revision falls outside these bounds (0: no
	// bound) are left out.
	MinMod, MaxMod, MinCreate, MaxCreate int64
}

// TxnOp is one operation of a transaction.
type TxnOp struct {
	Kind     OpKind
	Key, End string // End only for range and delete; "" for Key alone
	Value    []byte
	Lease    int64 // put: attach the key to this lease (0: none)
	// PrevKV asks a put or delete for the versions it replaced.
	PrevKV bool
	// IgnoreValue and IgnoreLease make a put keep the key's current value
	// or lease; the key must exist.
	IgnoreValue, IgnoreLease bool
	Range                    RangeOptions
}

// Txn is a transaction: if every compare holds, the Success operations run,
// otherwise the Failure ones, in order, as one atomic step at one revision.
type Txn struct {
	Compares         []Compare
	Success, Failure []TxnOp
}

// RangeResult is a range read's answer.
type RangeResult struct {
	KVs []KeyValue
	// Count is the number of keys in the range (before the revision
	// filters and the limit); More says keys were left out by the limit.
	Count int64
	More  bool
	// Revision is the store revision the read was served at.
	Revision int64
}

// OpResult is one transaction operation's answer.
type OpResult struct {
	Kind    OpKind
	Range   *RangeResult // range
	PrevKV  *KeyValue    // put with PrevKV, if the key existed
	Deleted int64        // delete
	PrevKVs []KeyValue   // delete with PrevKV
	// at is where in the history the operation ran, so that a retry
	// answered from the session table can read its range again.
	at view
}

// TxnResult is a transaction's answer.
type TxnResult struct {
	Succeeded bool
	Results   []OpResult
}

// Prefix returns the End that makes [prefix, End) every key with prefix:
// "\x00" (to the end of the key space) for an empty or all-0xff prefix.
func PrefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\x00"
}

// inRange reports whether k is in [key, end) in the etcd sense: end "" is
// key alone, end "\x00" everything from key on.
func inRange(k, key, end string) bool {
	switch end {
	case "":
		return k == key
	case "\x00":
		return k >= key
	}
	return k >= key && k < end
}

// checkRange says why [key, end) is malformed, "" if it is not.
func checkRange(key, end string) string {
	switch {
	case key == "":
		return "empty key"
	case end != "" && end != "\x00" && end <= key:
		return fmt.Sprintf("range end %q is not after its start %q", end, key)
	}
	return ""
}

func (cfg Config) checkTxn(t *Txn) (code, message string) {
	switch {
	case t == nil:
		return CodeBadRequest, "transaction missing"
	case len(t.Compares) > MaxTxnOps || len(t.Success) > MaxTxnOps || len(t.Failure) > MaxTxnOps:
		return CodeTooManyOps, fmt.Sprintf("transaction has %d compares, %d success and %d failure operations; at most %d each",
			len(t.Compares), len(t.Success), len(t.Failure), MaxTxnOps)
	}
	for i := range t.Compares {
		if code, msg := cfg.checkCompare(&t.Compares[i]); code != CodeOK {
			return code, fmt.Sprintf("compare %d: %s", i, msg)
		}
	}
	if code, msg := cfg.checkOps("success", t.Success); code != CodeOK {
		return code, msg
	}
	return cfg.checkOps("failure", t.Failure)
}

func (cfg Config) checkCompare(c *Compare) (code, message string) {
	switch {
	case c.Target > CompareLease:
		return CodeBadRequest, fmt.Sprintf("unknown target %d", uint8(c.Target))
	case c.Op > CompareGreater:
		return CodeBadRequest, fmt.Sprintf("unknown operator %d", uint8(c.Op))
	case c.Target == CompareValue && c.Number != 0:
		return CodeBadRequest, "a value compare takes a value, not a number"
	case c.Target != CompareValue && len(c.Value) != 0:
		return CodeBadRequest, fmt.Sprintf("a %s compare takes a number, not a value", c.Target)
	case len(c.Value) > cfg.maxValueBytes():
		return CodeTooLarge, fmt.Sprintf("value is %d bytes, over %d", len(c.Value), cfg.maxValueBytes())
	}
	return cfg.checkKeyRange(c.Key, c.End)
}

func (cfg Config) checkKeyRange(key, end string) (code, message string) {
	if msg := checkRange(key, end); msg != "" {
		return CodeBadKey, msg
	}
	if len(key) > cfg.maxKeyBytes() || len(end) > cfg.maxKeyBytes() {
		return CodeBadKey, fmt.Sprintf("key is %d bytes, over %d", max(len(key), len(end)), cfg.maxKeyBytes())
	}
	return CodeOK, ""
}

// checkOps checks one branch: each operation, then that no key is written
// twice (two puts, or a put inside a delete), which would make the
// branch's outcome depend on the order of its writes (etcd refuses it too).
func (cfg Config) checkOps(branch string, ops []TxnOp) (code, message string) {
	puts := map[string]bool{}
	for i := range ops {
		op := &ops[i]
		if code, msg := cfg.checkOp(op); code != CodeOK {
			return code, fmt.Sprintf("%s operation %d (%s): %s", branch, i, op.Kind, msg)
		}
		if op.Kind == OpKindPut {
			if puts[op.Key] {
				return CodeBadRequest, fmt.Sprintf("%s operations put key %q twice", branch, op.Key)
			}
			puts[op.Key] = true
		}
	}
	for i := range ops {
		if del := &ops[i]; del.Kind == OpKindDelete {
			for j := range ops {
				if put := &ops[j]; put.Kind == OpKindPut && inRange(put.Key, del.Key, del.End) {
					return CodeBadRequest, fmt.Sprintf("%s operation %d puts key %q that operation %d deletes", branch, j, put.Key, i)
				}
			}
		}
	}
	return CodeOK, ""
}

func (cfg Config) checkOp(op *TxnOp) (code, message string) {
	if code, msg := cfg.checkKeyRange(op.Key, op.End); code != CodeOK {
		return code, msg
	}
	switch op.Kind {
	case OpKindPut:
		switch {
		case op.End != "":
			return CodeBadRequest, "a put takes one key, not a range"
		case len(op.Value) > cfg.maxValueBytes():
			return CodeTooLarge, fmt.Sprintf("value is %d bytes, over %d", len(op.Value), cfg.maxValueBytes())
		case op.Lease < 0:
			return CodeBadRequest, fmt.Sprintf("lease %d is negative", op.Lease)
		case op.IgnoreValue && len(op.Value) != 0:
			return CodeBadRequest, "ignore_value with a value"
		case op.IgnoreLease && op.Lease != 0:
			return CodeBadRequest, "ignore_lease with a lease"
		}
	case OpKindDelete:
		if len(op.Value) != 0 || op.Lease != 0 {
			return CodeBadRequest, "a delete carries no value or lease"
		}
	case OpKindRange:
		return checkRangeOptions(&op.Range)
	default:
		return CodeBadRequest, fmt.Sprintf("unknown operation %d", uint8(op.Kind))
	}
	return CodeOK, ""
}

func checkRangeOptions(o *RangeOptions) (code, message string) {
	switch {
	case o.Revision < 0:
		return CodeBadRequest, fmt.Sprintf("revision %d is negative", o.Revision)
	case o.Limit < 0:
		return CodeBadRequest, fmt.Sprintf("limit %d is negative", o.Limit)
	case o.SortBy > SortByValue:
		return CodeBadRequest, fmt.Sprintf("unknown sort target %d", uint8(o.SortBy))
	case o.Order > SortDescend:
		return CodeBadRequest, fmt.Sprintf("unknown sort order %d", uint8(o.Order))
	case o.MinMod < 0 || o.MaxMod < 0 || o.MinCreate < 0 || o.MaxCreate < 0:
		return CodeBadRequest, "negative revision bound"
	}
	return CodeOK, ""
}

// compareHolds evaluates c against the present state.
func (s *Store) compareHolds(c *Compare) bool {
	holds, any := true, false
	s.ascendPresent(c.Key, c.End, func(key string, v *version) bool {
		any = true
		holds = compareVersion(c, v)
		return holds
	})
	if !any {
		return c.Target != CompareValue && compareVersion(c, &version{})
	}
	return holds
}

func compareVersion(c *Compare, v *version) bool {
	var r int
	switch c.Target {
	case CompareValue:
		r = bytes.Compare(v.value, c.Value)
	case CompareVersion:
		r = cmp.Compare(v.ver, c.Number)
	case CompareCreate:
		r = cmp.Compare(v.create, c.Number)
	case CompareMod:
		r = cmp.Compare(v.mod, c.Number)
	case CompareLease:
		r = cmp.Compare(v.lease, c.Number)
	}
	switch c.Op {
	case CompareEqual:
		return r == 0
	case CompareNotEqual:
		return r != 0
	case CompareLess:
		return r < 0
	}
	return r > 0
}

// ascendPresent calls f on each key of [key, end) that exists now, in key
// order, until f returns false.
func (s *Store) ascendPresent(key, end string, f func(string, *version) bool) {
	s.ascendRecords(key, end, func(rec *record) bool {
		if v := rec.current(); v != nil {
			return f(rec.key, v)
		}
		return true
	})
}

func (s *Store) ascendRecords(key, end string, f func(*record) bool) {
	if end == "" {
		if rec := s.byKey[key]; rec != nil {
			f(rec)
		}
		return
	}
	s.records.AscendGreaterOrEqual(&record{key: key}, func(rec *record) bool {
		if end != "\x00" && rec.key >= end {
			return false
		}
		return f(rec)
	})
}

// rangeLocked reads [key, end) as view w sees it.
func (s *Store) rangeLocked(key, end string, w view, o *RangeOptions, rev int64) *RangeResult {
	limit := int(o.Limit)
	if limit <= 0 || limit > s.cfg.maxListItems() {
		limit = s.cfg.maxListItems()
	}
	res := &RangeResult{Revision: rev}
	sorted := o.Order != SortNone && !(o.SortBy == SortByKey && o.Order == SortAscend)
	s.ascendRecords(key, end, func(rec *record) bool {
		v := rec.visible(w)
		if v == nil {
			return true
		}
		res.Count++
		if o.CountOnly || !o.passes(v) {
			return true
		}
		if !sorted && len(res.KVs) == limit {
			res.More = true
			return true
		}
		kv := v.keyValue(rec.key)
		if o.KeysOnly {
			kv.Value = nil
		}
		res.KVs = append(res.KVs, kv)
		return true
	})
	if sorted {
		sortKVs(res.KVs, o)
		if len(res.KVs) > limit {
			res.KVs, res.More = res.KVs[:limit:limit], true
		}
	}
	return res
}

func (o *RangeOptions) passes(v *version) bool {
	return (o.MinMod == 0 || v.mod >= o.MinMod) && (o.MaxMod == 0 || v.mod <= o.MaxMod) &&
		(o.MinCreate == 0 || v.create >= o.MinCreate) && (o.MaxCreate == 0 || v.create <= o.MaxCreate)
}

func sortKVs(kvs []KeyValue, o *RangeOptions) {
	cmp := func(a, b *KeyValue) int {
		switch o.SortBy {
		case SortByVersion:
			return cmp.Compare(a.Version, b.Version)
		case SortByCreate:
			return cmp.Compare(a.CreateRevision, b.CreateRevision)
		case SortByMod:
			return cmp.Compare(a.ModRevision, b.ModRevision)
		case SortByValue:
			return bytes.Compare(a.Value, b.Value)
		}
		return strings.Compare(a.Key, b.Key)
	}
	slices.SortStableFunc(kvs, func(a, b KeyValue) int {
		if o.Order == SortDescend {
			return cmp(&b, &a)
		}
		return cmp(&a, &b)
	})
}

// executeTxnLocked runs a validated transaction.
func (s *Store) executeTxnLocked(t *Txn) *Result {
	ok := true
	for i := range t.Compares {
		if !s.compareHolds(&t.Compares[i]) {
			ok = false
			break
		}
	}
	ops := t.Success
	if !ok {
		ops = t.Failure
	}
	if code, msg := s.precheckOps(ops); code != CodeOK {
		return s.rejected(code, msg)
	}
	var grow int64
	for i := range ops {
		if op := &ops[i]; op.Kind == OpKindPut {
			value := op.Value
			if op.IgnoreValue {
				value = s.byKey[op.Key].current().value
			}
			grow += s.putBytes(op.Key, value)
		}
	}
	if r := s.quotaCheckLocked(grow); r != nil {
		return r
	}
	var r *Result
	var tr *TxnResult
	if len(ops) == 1 {
		// A one-operation transaction (every etcd put, delete and most
		// txns) takes its three parts in one allocation.
		one := &txnResult1{}
		one.tr.Results = one.op[:]
		r, tr = &one.r, &one.tr
	} else {
		r, tr = &Result{}, &TxnResult{Results: make([]OpResult, len(ops))}
	}
	tr.Succeeded = ok
	r.Txn = tr
	for i := range ops {
		tr.Results[i] = s.executeOpLocked(&ops[i])
	}
	return r
}

// txnResult1 is the result of a transaction of one operation.
type txnResult1 struct {
	r  Result
	tr TxnResult
	op [1]OpResult
}

// precheckOps finds what would make a branch fail partway, before any of
// it runs, so that a transaction is all or nothing.
func (s *Store) precheckOps(ops []TxnOp) (code, message string) {
	for i := range ops {
		op := &ops[i]
		switch op.Kind {
		case OpKindPut:
			if op.Lease != 0 {
				if _, ok := s.leases.Get(lease{id: op.Lease}); !ok {
					return CodeLeaseNotFound, fmt.Sprintf("operation %d: lease %d not found", i, op.Lease)
				}
			}
			if op.IgnoreValue || op.IgnoreLease {
				if s.byKey[op.Key].current() == nil {
					return CodeNotFound, fmt.Sprintf("operation %d: key %q does not exist; ignore_value and ignore_lease need it", i, op.Key)
				}
			}
		case OpKindRange:
			if op.Range.Revision != 0 {
				if _, err := s.checkRevision(op.Range.Revision); err != nil {
					return errorCode(err), fmt.Sprintf("operation %d: %v", i, err)
				}
			}
		}
	}
	return CodeOK, ""
}

func (s *Store) executeOpLocked(op *TxnOp) OpResult {
	r := OpResult{Kind: op.Kind, at: view{rev: s.pendingRev(), sub: s.sub}}
	switch op.Kind {
	case OpKindRange:
		r.Range = s.opRange(op, r.at)
	case OpKindPut:
		value, lease := op.Value, op.Lease
		if op.IgnoreValue || op.IgnoreLease {
			cur := s.byKey[op.Key].current()
			if op.IgnoreValue {
				value = cur.value
			}
			if op.IgnoreLease {
				lease = cur.lease
			}
		}
		if prev := s.writeLocked(op.Key, value, lease); prev != nil && op.PrevKV {
			kv := prev.keyValue(op.Key)
			r.PrevKV = &kv
		}
	case OpKindDelete:
		var keys []string
		s.ascendPresent(op.Key, op.End, func(key string, v *version) bool {
			keys = append(keys, key)
			return true
		})
		for _, k := range keys {
			prev := s.deleteLocked(k)
			r.Deleted++
			if op.PrevKV {
				r.PrevKVs = append(r.PrevKVs, prev.keyValue(k))
			}
		}
	}
	return r
}

// opRange runs a range operation of a transaction seen from at.
func (s *Store) opRange(op *TxnOp, at view) *RangeResult {
	if op.Range.Revision != 0 {
		return s.rangeLocked(op.Key, op.End, atRevision(op.Range.Revision), &op.Range, at.rev)
	}
	return s.rangeLocked(op.Key, op.End, at, &op.Range, at.rev)
}

// forSession strips what a session entry need not keep: range answers
// and previous versions, which a retry reads again from history.
func (t *TxnResult) forSession() *TxnResult {
	out := &TxnResult{Succeeded: t.Succeeded, Results: make([]OpResult, len(t.Results))}
	for i, r := range t.Results {
		out.Results[i] = OpResult{Kind: r.Kind, Deleted: r.Deleted, at: r.at}
	}
	return out
}

// replayTxnLocked rebuilds, for a retried transaction, the answers the
// first attempt gave, reading ranges and previous versions from history.
// Those the history no longer holds come back empty, with the range's
// Revision set to -1 to say so.
func (s *Store) replayTxnLocked(first *TxnResult, t *Txn) *TxnResult {
	ops := t.Success
	if !first.Succeeded {
		ops = t.Failure
	}
	out := &TxnResult{Succeeded: first.Succeeded, Results: slices.Clone(first.Results)}
	if len(ops) != len(out.Results) {
		return out // not the same transaction; the stored outline is all there is
	}
	for i := range out.Results {
		r, op := &out.Results[i], &ops[i]
		if r.at.rev <= s.compacted && r.at.sub != math.MaxUint32 {
			if op.Kind == OpKindRange {
				r.Range = &RangeResult{Revision: -1}
			}
			continue
		}
		switch op.Kind {
		case OpKindRange:
			r.Range = s.opRange(op, r.at)
		case OpKindPut:
			if rec := s.byKey[op.Key]; rec != nil && op.PrevKV {
				if v := rec.visible(r.at); v != nil {
					kv := v.keyValue(op.Key)
					r.PrevKV = &kv
				}
			}
		case OpKindDelete:
			if op.PrevKV {
				o := RangeOptions{Limit: math.MaxInt64}
				r.PrevKVs = s.rangeLocked(op.Key, op.End, r.at, &o, r.at.rev).KVs
			}
		}
	}
	return out
}
