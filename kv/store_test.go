package kv

import (
	"fmt"
	"strings"
	"testing"
)

func TestPutSetsValueAndModRevision(t *testing.T) {
	// A put writes the value at the next store revision (the first write
	// of an empty store makes revision 2, as in etcd); the key's rev is
	// that revision, and Prev tells the rev it replaced.
	r := newReplica(Config{})
	res := r.do(put("a", "1"))
	mustCode(t, res, CodeOK)
	if *res != (Result{Index: 1, Revision: 2, Rev: 2, Prev: 0}) {
		t.Fatalf("first put: %+v", *res)
	}
	mustGet(t, r.Store, "a", "1", 2)
	r.do(put("b", "x"))
	res = r.do(put("a", "2"))
	if *res != (Result{Index: 3, Revision: 4, Rev: 4, Prev: 2}) {
		t.Fatalf("overwrite: %+v", *res)
	}
	mustGet(t, r.Store, "a", "2", 4)
	mustGet(t, r.Store, "b", "x", 3)
	if r.AppliedIndex() != 3 || r.Len() != 2 {
		t.Fatalf("applied %d len %d, want 3 and 2", r.AppliedIndex(), r.Len())
	}
}

func TestPutIfRevMatch(t *testing.T) {
	// If-Match holds only when the key exists at exactly that rev; a failed
	// precondition changes nothing and reports the current rev.
	r := newReplica(Config{})
	cas := func(key, value string, rev uint64) Command {
		c := put(key, value)
		c.Cond, c.Rev = CondRevMatch, int64(rev)
		return c
	}
	mustCode(t, r.do(cas("a", "v", 0)), CodePreconditionFailed) // absent
	mustAbsent(t, r.Store, "a")
	r.do(put("a", "1")) // index 2, revision 2
	res := r.do(cas("a", "2", 1))
	mustCode(t, res, CodePreconditionFailed)
	if res.Rev != 2 || res.Index != 3 {
		t.Fatalf("failed CAS result %+v, want Rev 2 Index 3", *res)
	}
	mustGet(t, r.Store, "a", "1", 2)
	res = r.do(cas("a", "2", 2))
	mustCode(t, res, CodeOK)
	if res.Rev != 3 || res.Prev != 2 {
		t.Fatalf("CAS result %+v, want Rev 3 Prev 2", *res)
	}
	mustGet(t, r.Store, "a", "2", 3)
}

func TestPutIfAbsent(t *testing.T) {
	// If-None-Match: * creates only.
	r := newReplica(Config{})
	c := put("a", "1")
	c.Cond = CondAbsent
	mustCode(t, r.do(c), CodeOK)
	c.Value = []byte("2")
	res := r.do(c)
	mustCode(t, res, CodePreconditionFailed)
	if res.Rev != 2 {
		t.Fatalf("result %+v, want current Rev 2", *res)
	}
	mustGet(t, r.Store, "a", "1", 2)
	r.do(del("a"))
	mustCode(t, r.do(c), CodeOK)
	mustGet(t, r.Store, "a", "2", 4)
}

func TestAppendCreatesThenExtends(t *testing.T) {
	// Append creates an absent key and extends an existing one; each append
	// is a change, so it moves the rev.
	r := newReplica(Config{})
	mustCode(t, r.do(appendCmd("log", "a")), CodeOK)
	mustGet(t, r.Store, "log", "a", 2)
	res := r.do(appendCmd("log", "bc"))
	if *res != (Result{Index: 2, Revision: 3, Rev: 3, Prev: 2}) {
		t.Fatalf("append: %+v", *res)
	}
	mustGet(t, r.Store, "log", "abc", 3)
	c := appendCmd("log", "d")
	c.Cond, c.Rev = CondRevMatch, 1
	mustCode(t, r.do(c), CodePreconditionFailed)
	mustGet(t, r.Store, "log", "abc", 3)
}

func TestAppendDoesNotChangeSharedValue(t *testing.T) {
	// A value handed out by Get must stay as it was after later appends.
	r := newReplica(Config{})
	r.do(put("k", "ab"))
	before, _, _ := r.Get("k")
	r.do(appendCmd("k", "cd"))
	if string(before) != "ab" {
		t.Fatalf("value read before the append is now %q", before)
	}
	mustGet(t, r.Store, "k", "abcd", 3)
}

func TestDelete(t *testing.T) {
	// Delete removes the key; delete of an absent key is not_found (and is
	// still a position in the log); a conditional delete needs the rev.
	r := newReplica(Config{})
	res := r.do(del("a"))
	mustCode(t, res, CodeNotFound)
	if res.Index != 1 || r.AppliedIndex() != 1 {
		t.Fatalf("delete of absent key: %+v, applied %d", *res, r.AppliedIndex())
	}
	r.do(put("a", "1")) // 2
	c := del("a")
	c.Cond, c.Rev = CondRevMatch, 1
	mustCode(t, r.do(c), CodePreconditionFailed)
	mustGet(t, r.Store, "a", "1", 2)
	c.Rev = 2
	res = r.do(c)
	if *res != (Result{Index: 4, Revision: 3, Rev: 0, Prev: 2}) {
		t.Fatalf("delete: %+v", *res)
	}
	mustAbsent(t, r.Store, "a")
	c.Rev = 2
	mustCode(t, r.do(c), CodePreconditionFailed) // If-Match on an absent key
	if r.Len() != 0 {
		t.Fatalf("Len %d after delete", r.Len())
	}
}

func TestLimits(t *testing.T) {
	// Keys must be 1..MaxKeyBytes, values (also grown by append) at most
	// MaxValueBytes; a refused command changes nothing but the index.
	r := newReplica(Config{MaxKeyBytes: 8, MaxValueBytes: 4})
	mustCode(t, r.do(put("", "v")), CodeBadKey)
	mustCode(t, r.do(put("123456789", "v")), CodeBadKey)
	mustCode(t, r.do(put("12345678", "v")), CodeOK)
	mustCode(t, r.do(put("k", "12345")), CodeTooLarge)
	mustCode(t, r.do(put("k", "1234")), CodeOK)
	mustCode(t, r.do(appendCmd("k", "5")), CodeTooLarge)
	mustGet(t, r.Store, "k", "1234", 3)
	if r.AppliedIndex() != 6 {
		t.Fatalf("applied %d, want 6", r.AppliedIndex())
	}

	// The defaults of the zero Config.
	d := newReplica(Config{})
	mustCode(t, d.do(put(strings.Repeat("k", DefaultMaxKeyBytes), "")), CodeOK)
	mustCode(t, d.do(put(strings.Repeat("k", DefaultMaxKeyBytes+1), "")), CodeBadKey)
	mustCode(t, d.do(Command{Op: OpPut, Key: "v", Value: make([]byte, DefaultMaxValueBytes)}), CodeOK)
	mustCode(t, d.do(Command{Op: OpPut, Key: "v", Value: make([]byte, DefaultMaxValueBytes+1)}), CodeTooLarge)
	mustCode(t, d.do(appendCmd("v", "x")), CodeTooLarge)
}

func TestValidateMatchesApply(t *testing.T) {
	// Config.Validate, which the server calls before proposing, gives the
	// code Apply would give.
	cfg := Config{MaxKeyBytes: 4, MaxValueBytes: 4}
	cases := []Command{
		put("k", "v"),
		put("", "v"),
		put("kkkkk", "v"),
		put("k", "vvvvv"),
		{Op: 9, Key: "k"},
		{Op: OpPut, Key: "k", Cond: 7},
		{Op: OpDelete, Key: "k", Cond: CondAbsent},
		{Op: OpPut, Key: "k", IdempotencyKey: strings.Repeat("t", MaxIdempotencyKeyBytes+1)},
	}
	for _, c := range cases {
		err := cfg.Validate(&c)
		r := New(cfg)
		res := r.Apply(1, EncodeCommand(c)).(*Result)
		var code string
		if e, ok := err.(*Error); ok {
			code = e.Code
		} else if err != nil {
			t.Fatalf("Validate(%+v) returned %T", c, err)
		}
		if code != res.Code {
			t.Errorf("command %+v: Validate code %q, Apply code %q (%s)", c, code, res.Code, res.Message)
		}
	}
}

func TestMalformedCommandIsBadRequest(t *testing.T) {
	// Bytes that do not decode are a bad_request, change nothing and do not
	// panic; an empty command is the leader's no-op and succeeds.
	r := newReplica(Config{})
	r.do(put("a", "1"))
	before := r.Hash()
	for _, cmd := range [][]byte{{0}, {9, 1, 0}, {CommandVersion, 1, 0, 200}, append(EncodeCommand(put("a", "2")), 0)} {
		res := r.raw(cmd)
		mustCode(t, res, CodeBadRequest)
		if res.Message == "" {
			t.Fatalf("bad_request for %x has no message", cmd)
		}
	}
	mustCode(t, r.raw(nil), CodeOK)
	mustGet(t, r.Store, "a", "1", 2)
	after := New(Config{})
	after.Apply(1, EncodeCommand(put("a", "1")))
	after.Apply(6, nil)
	if r.AppliedIndex() != 6 || r.Hash() == before || r.Hash() != after.Hash() {
		t.Fatalf("malformed commands changed more than the applied index")
	}
}

func TestApplyOutOfOrderPanics(t *testing.T) {
	// Applying an index twice is a broken caller: the store refuses loudly.
	s := New(Config{})
	s.Apply(5, EncodeCommand(put("a", "1")))
	defer func() {
		if recover() == nil {
			t.Fatal("Apply at an old index did not panic")
		}
	}()
	s.Apply(5, EncodeCommand(put("a", "1")))
}

func TestList(t *testing.T) {
	// List returns keys with the prefix in order, at most limit, and says
	// whether more follow.
	r := newReplica(Config{MaxListItems: 3})
	for _, k := range []string{"b/2", "a", "b/1", "b/3", "b/4", "c", "b"} {
		r.do(put(k, "v"+k))
	}
	keys := func(items []Item) string {
		var ks []string
		for _, it := range items {
			ks = append(ks, it.Key)
		}
		return strings.Join(ks, ",")
	}
	cases := []struct {
		prefix string
		limit  int
		want   string
		more   bool
	}{
		{"b/", 10, "b/1,b/2,b/3", true}, // clamped to MaxListItems
		{"b/", 2, "b/1,b/2", true},
		{"b/", 3, "b/1,b/2,b/3", true},
		{"b", 3, "b,b/1,b/2", true},
		{"", 0, "a,b,b/1", true},
		{"c", 5, "c", false},
		{"b/4", 1, "b/4", false},
		{"z", 5, "", false},
	}
	for _, tc := range cases {
		items, more := r.List(tc.prefix, tc.limit)
		if got := keys(items); got != tc.want || more != tc.more {
			t.Errorf("List(%q, %d) = %s more=%v, want %s more=%v", tc.prefix, tc.limit, got, more, tc.want, tc.more)
		}
	}
	items, _ := r.List("b/1", 1)
	if len(items) != 1 || string(items[0].Value) != "vb/1" || items[0].Rev != 4 {
		t.Fatalf("List item %+v, want value vb/1 rev 4", items)
	}
	big := newReplica(Config{})
	for i := range 50 {
		big.do(put(fmt.Sprintf("k%03d", i), ""))
	}
	if items, more := big.List("k", 50); len(items) != 50 || more {
		t.Fatalf("List of exactly limit keys: %d more=%v", len(items), more)
	}
}
