package kv

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func FuzzDecodeCommand(f *testing.F) {
	// Any bytes: decoding never panics; what decodes re-encodes to a
	// command that decodes the same; Apply answers bad_request exactly
	// when decoding fails.
	for _, c := range []Command{
		put("k", "v"),
		{Op: OpPut, Key: "k", Value: []byte("v"), Cond: CondRevMatch, Rev: 300, IdempotencyKey: "tok"},
		{Op: OpAppend, Key: "a/b", Value: []byte("suffix"), Cond: CondAbsent},
		{Op: OpDelete, Key: "k", Cond: CondRevMatch, Rev: 1},
		{Op: OpTxn, Txn: &Txn{Compares: []Compare{{Key: "k", Target: CompareMod, Op: CompareLess, Number: 3}},
			Success: []TxnOp{{Kind: OpKindPut, Key: "k", Value: []byte("v"), Lease: 1}, {Kind: OpKindRange, Key: "a", End: "\x00"}},
			Failure: []TxnOp{{Kind: OpKindDelete, Key: "a", End: "b", PrevKV: true}}}},
		{Op: OpCompact, Rev: 2},
		{Op: OpLeaseGrant, TTL: 5},
		{Op: OpLeaseCheckpoint, Checkpoints: []LeaseCheckpoint{{ID: 1, Remaining: 2}}},
	} {
		f.Add(EncodeCommand(c))
	}
	f.Add([]byte{})
	f.Add([]byte{CommandVersion, 1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		s := New(Config{})
		res := s.Apply(1, b).(*Result)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			if len(b) > 0 && res.Code != CodeBadRequest {
				t.Fatalf("undecodable command applied with code %q", res.Code)
			}
			if s.Len() != 0 || s.Sessions() != 0 {
				t.Fatal("undecodable command changed the state")
			}
			return
		}
		// The store's decoding, which takes key strings from its records,
		// decodes alike, over a store holding the key and one without.
		for _, keys := range []map[string]*record{s.byKey, {c.Key: {key: c.Key}}} {
			if own, err := decodeCommand(b, keys); err != nil || !reflect.DeepEqual(own, c) {
				t.Fatalf("the store decodes %x as %+v (%v), DecodeCommand as %+v", b, own, err, c)
			}
		}
		again, err := DecodeCommand(EncodeCommand(c))
		if err != nil {
			t.Fatalf("re-encoding of %+v does not decode: %v", c, err)
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("re-encoding changed %+v into %+v", c, again)
		}
	})
}

func FuzzRestore(f *testing.F) {
	// Any bytes: Restore never panics; a failure wraps ErrCorrupt and leaves
	// the state untouched; a success is a state that snapshots and restores
	// to itself. A version 1 stream, which Restore refuses untouched, is
	// held to the same through ConvertSnapshot. With fixCRC the input is taken as a body and given a valid
	// checksum, so that mutations reach the checks behind the CRC.
	for _, b := range [][]byte{snapshotBytes(f, New(Config{})), snapshotBytes(f, populated(f, 3).Store)} {
		f.Add(b, false)
		f.Add(b[:len(b)-4], true)
	}
	f.Add([]byte("RKVS\x01"), true)
	f.Add([]byte("RKVS\x01\x05\x01\x01a\x01v\x05\x01\x01t\x02\x02\x00\x00\x00\x00"), true)
	f.Fuzz(func(t *testing.T, b []byte, fixCRC bool) {
		if fixCRC {
			b = withCRC(b)
		}
		s := New(Config{})
		s.Apply(1, EncodeCommand(withToken(put("k", "v"), "t")))
		before := s.Hash()
		err := s.Restore(bytes.NewReader(b))
		if errors.Is(err, ErrOldSnapshotFormat) {
			// Refused before any change; the conversion must hold the
			// same properties.
			if s.Hash() != before {
				t.Fatal("refused version 1 restore changed the state")
			}
			var converted bytes.Buffer
			if _, cerr := ConvertSnapshot(&converted, bytes.NewReader(b), Config{}); cerr != nil {
				err = cerr
			} else {
				err = s.Restore(&converted)
			}
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			if s.Hash() != before {
				t.Fatal("failed restore changed the state")
			}
			return
		}
		again := New(Config{})
		if err := again.Restore(bytes.NewReader(snapshotBytes(t, s))); err != nil {
			t.Fatalf("snapshot of a restored state does not restore: %v", err)
		}
		if again.Hash() != s.Hash() {
			t.Fatal("restored state does not round-trip")
		}
		// The restored state must take further commands without panicking.
		s.Apply(s.AppliedIndex()+1, EncodeCommand(withToken(appendCmd("k", "v"), "t")))
	})
}
