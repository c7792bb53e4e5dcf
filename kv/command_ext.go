package kv

import (
	"encoding/binary"
	"fmt"
)

// Encoding of the ops after OpDelete (signed integers are zig-zag varints,
// counts and lengths unsigned varints):
//
//	version(1) op(1) body idempotency-key
//	txn:        compares ops(success) ops(failure)
//	            compares = count × ( target(1) op(1) key end (value | number) )
//	            ops      = count × ( kind(1) flags(1) key end [put: value lease]
//	                                 [range: rev limit sort(1) order(1) min-mod max-mod min-create max-create] )
//	compact:    rev
//	grant:      lease ttl
//	revoke:     lease
//	checkpoint: count × ( lease remaining )

// Op flags in a transaction operation's encoding.
const (
	flagPrevKV = 1 << iota
	flagIgnoreValue
	flagIgnoreLease
	flagCountOnly
	flagKeysOnly
)

func appendVarint(b []byte, v int64) []byte { return binary.AppendVarint(b, v) }

func appendBody(b []byte, c *Command) []byte {
	switch c.Op {
	case OpTxn:
		t := c.Txn
		if t == nil {
			t = &Txn{}
		}
		b = binary.AppendUvarint(b, uint64(len(t.Compares)))
		for i := range t.Compares {
			cmp := &t.Compares[i]
			b = append(b, byte(cmp.Target), byte(cmp.Op))
			b = appendString(b, cmp.Key)
			b = appendString(b, cmp.End)
			if cmp.Target == CompareValue {
				b = binary.AppendUvarint(b, uint64(len(cmp.Value)))
				b = append(b, cmp.Value...)
			} else {
				b = appendVarint(b, cmp.Number)
			}
		}
		b = appendOps(b, t.Success)
		b = appendOps(b, t.Failure)
	case OpCompact:
		b = appendVarint(b, c.Rev)
	case OpLeaseGrant:
		b = appendVarint(b, c.Lease)
		b = appendVarint(b, c.TTL)
	case OpLeaseRevoke:
		b = appendVarint(b, c.Lease)
	case OpLeaseCheckpoint:
		b = binary.AppendUvarint(b, uint64(len(c.Checkpoints)))
		for _, cp := range c.Checkpoints {
			b = appendVarint(b, cp.ID)
			b = appendVarint(b, cp.Remaining)
		}
	}
	return b
}

func flag(on bool, f byte) byte {
	if on {
		return f
	}
	return 0
}

func appendOps(b []byte, ops []TxnOp) []byte {
	b = binary.AppendUvarint(b, uint64(len(ops)))
	for i := range ops {
		op := &ops[i]
		flags := flag(op.PrevKV, flagPrevKV) | flag(op.IgnoreValue, flagIgnoreValue) | flag(op.IgnoreLease, flagIgnoreLease) |
			flag(op.Range.CountOnly, flagCountOnly) | flag(op.Range.KeysOnly, flagKeysOnly)
		b = append(b, byte(op.Kind), flags)
		b = appendString(b, op.Key)
		b = appendString(b, op.End)
		switch op.Kind {
		case OpKindPut:
			b = binary.AppendUvarint(b, uint64(len(op.Value)))
			b = append(b, op.Value...)
			b = appendVarint(b, op.Lease)
		case OpKindRange:
			o := &op.Range
			b = appendVarint(b, o.Revision)
			b = appendVarint(b, o.Limit)
			b = append(b, byte(o.SortBy), byte(o.Order))
			for _, v := range [...]int64{o.MinMod, o.MaxMod, o.MinCreate, o.MaxCreate} {
				b = appendVarint(b, v)
			}
		}
	}
	return b
}

func (d *cmdDecoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad " + what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count of at most limit items.
func (d *cmdDecoder) count(what string, limit int) int {
	n := d.uvarint(what)
	if d.err == nil && n > uint64(limit) {
		d.fail(fmt.Sprintf("%s %d, over %d", what, n, limit))
		return 0
	}
	return int(n)
}

// value reads a length-prefixed value into a fresh slice of clipped
// capacity (see DecodeCommand).
func (d *cmdDecoder) value(what string) []byte {
	v := d.bytes(what, len(d.b))
	if len(v) == 0 {
		return nil
	}
	return append([]byte(nil), v...)[:len(v):len(v)]
}

func (d *cmdDecoder) body(c *Command) {
	switch c.Op {
	case OpTxn:
		// The transaction and one success operation (every etcd put and
		// delete) in one allocation.
		one := &txn1{}
		t := &one.t
		// Counts are bounded by the bytes left (each item takes some), not
		// by MaxTxnOps, so that Apply reports an oversized transaction as
		// too_many_ops like Validate does rather than as undecodable.
		n := d.count("compare count", len(d.b))
		for i := 0; i < n && d.err == nil; i++ {
			cmp := Compare{Target: CompareTarget(d.byte1("compare target")), Op: CompareOp(d.byte1("compare op"))}
			cmp.Key = string(d.bytes("compare key", len(d.b)))
			cmp.End = string(d.bytes("compare end", len(d.b)))
			if cmp.Target == CompareValue {
				cmp.Value = d.value("compare value")
			} else {
				cmp.Number = d.varint("compare number")
			}
			t.Compares = append(t.Compares, cmp)
		}
		t.Success = d.ops(one.op[:0])
		t.Failure = d.ops(nil)
		c.Txn = t
	case OpCompact:
		c.Rev = d.varint("revision")
	case OpLeaseGrant:
		c.Lease = d.varint("lease")
		c.TTL = d.varint("ttl")
	case OpLeaseRevoke:
		c.Lease = d.varint("lease")
	case OpLeaseCheckpoint:
		n := d.count("checkpoint count", MaxCheckpoints)
		for i := 0; i < n && d.err == nil; i++ {
			c.Checkpoints = append(c.Checkpoints, LeaseCheckpoint{ID: d.varint("lease"), Remaining: d.varint("remaining")})
		}
	}
}

// txn1 is a decoded transaction with room for one operation.
type txn1 struct {
	t  Txn
	op [1]TxnOp
}

// ops reads a list of operations, appended to ops (empty, maybe with
// room).
func (d *cmdDecoder) ops(ops []TxnOp) []TxnOp {
	n := d.count("operation count", len(d.b))
	if n == 0 {
		return nil
	}
	for i := 0; i < n && d.err == nil; i++ {
		op := TxnOp{Kind: OpKind(d.byte1("operation kind"))}
		flags := d.byte1("operation flags")
		op.PrevKV, op.IgnoreValue, op.IgnoreLease = flags&flagPrevKV != 0, flags&flagIgnoreValue != 0, flags&flagIgnoreLease != 0
		op.Range.CountOnly, op.Range.KeysOnly = flags&flagCountOnly != 0, flags&flagKeysOnly != 0
		op.Key = string(d.bytes("operation key", len(d.b)))
		op.End = string(d.bytes("operation end", len(d.b)))
		switch op.Kind {
		case OpKindPut:
			op.Value = d.value("operation value")
			op.Lease = d.varint("operation lease")
		case OpKindRange:
			o := &op.Range
			o.Revision = d.varint("range revision")
			o.Limit = d.varint("range limit")
			o.SortBy, o.Order = SortTarget(d.byte1("sort target")), SortOrder(d.byte1("sort order"))
			for _, p := range [...]*int64{&o.MinMod, &o.MaxMod, &o.MinCreate, &o.MaxCreate} {
				*p = d.varint("range bound")
			}
		case OpKindDelete:
		default:
			d.fail(fmt.Sprintf("unknown operation kind %d", uint8(op.Kind)))
		}
		ops = append(ops, op)
	}
	return ops
}
