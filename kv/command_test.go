package kv

import (
	"errors"
	"reflect"
	"testing"
)

func TestCommandRoundTrip(t *testing.T) {
	// Every op and precondition survives encoding; fields the op or
	// precondition does not use are left out of the encoding.
	cases := []Command{
		put("k", "v"),
		{Op: OpPut, Key: "k", Value: []byte("v"), Cond: CondRevMatch, Rev: 1 << 40, IdempotencyKey: "tok"},
		{Op: OpPut, Key: "k", Cond: CondAbsent},
		appendCmd("k", "suffix"),
		del("k"),
		{Op: OpDelete, Key: "k/with/slashes", Cond: CondRevMatch, Rev: 7, IdempotencyKey: "t"},
	}
	for _, c := range cases {
		got, err := DecodeCommand(EncodeCommand(c))
		if err != nil {
			t.Fatalf("decode %+v: %v", c, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip: got %+v, want %+v", got, c)
		}
	}
	// Rev without CondRevMatch is not carried.
	got, _ := DecodeCommand(EncodeCommand(Command{Op: OpPut, Key: "k", Rev: 5}))
	if got.Rev != 0 {
		t.Fatalf("Rev carried without CondRevMatch: %+v", got)
	}
}

func TestDecodeCommandRejects(t *testing.T) {
	// Malformed bytes give an error wrapping ErrCorrupt, never a panic.
	good := EncodeCommand(Command{Op: OpPut, Key: "key", Value: []byte("value"), IdempotencyKey: "t"})
	cases := map[string][]byte{
		"empty":          {},
		"version":        append([]byte{2}, good[1:]...),
		"op zero":        {CommandVersion, 0, 0, 1, 'k', 0, 0},
		"op unknown":     {CommandVersion, 4, 0, 1, 'k', 0, 0},
		"cond unknown":   {CommandVersion, 1, 3, 1, 'k', 0, 0},
		"long key len":   {CommandVersion, 1, 0, 100, 'k'},
		"bad varint":     {CommandVersion, 1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"trailing":       append(append([]byte(nil), good...), 0),
		"long token":     append([]byte{CommandVersion, 3, 0, 1, 'k', 129}, make([]byte, 129)...),
		"truncated":      good[:len(good)-1],
		"missing fields": good[:3],
	}
	for name, b := range cases {
		if _, err := DecodeCommand(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorrupt", name, err)
		}
	}
}

func TestDecodeCommandDoesNotAlias(t *testing.T) {
	// The runtime may reuse an entry's buffer after Apply returns, so a
	// decoded command must not point into it.
	b := EncodeCommand(put("k", "value"))
	c, err := DecodeCommand(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0
	}
	if c.Key != "k" || string(c.Value) != "value" || cap(c.Value) != len(c.Value) {
		t.Fatalf("decoded command changed with its input: %+v", c)
	}
}
