package cluster

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"
)

func k8sCreate(obj int, v string) kvInput {
	return kvInput{Op: opK8sCreate, Key: k8sObjPrefix, Object: obj, Value: v}
}

func k8sUpdate(obj int, v string, rev uint64) kvInput {
	return kvInput{Op: opK8sUpdate, Key: k8sObjPrefix, Object: obj, Value: v, Rev: rev}
}

func k8sDelete(obj int, rev uint64) kvInput {
	return kvInput{Op: opK8sDelete, Key: k8sObjPrefix, Object: obj, Rev: rev}
}

func k8sList() kvInput       { return kvInput{Op: opK8sList, Key: k8sObjPrefix} }
func k8sGet(obj int) kvInput { return kvInput{Op: opK8sGet, Key: k8sObjPrefix, Object: obj} }

// objs is what a list read: value@rev per object, "" for absent.
func objs(cells ...txnCell) kvOutput {
	out := kvOutput{OK: true}
	copy(out.Objects[:], cells)
	return out
}

func at(v string, rev uint64) txnCell { return txnCell{Exists: true, Value: v, Rev: rev} }

// conflict is a failed compare whose failure branch read cell c of obj.
func conflict(obj int, c txnCell) kvOutput {
	out := kvOutput{Precondition: true}
	out.Objects[obj] = c
	return out
}

func readObj(obj int, c txnCell) kvOutput {
	out := kvOutput{OK: true}
	out.Objects[obj] = c
	return out
}

// TestK8sModel shows the objects' model convicts a lost update through a
// stale mod revision, a list whose pages come from different revisions, a
// create over an existing object and a conflict reported where the compare
// held, and acquits what a correct store gives, unknown outcomes included.
func TestK8sModel(t *testing.T) {
	bad := map[string]h{
		"lost update: two updates succeed on the same mod revision": h{}.
			op(0, 0, 10, k8sCreate(0, "a"), okAt(3)).
			op(1, 20, 30, k8sUpdate(0, "b", 3), okAt(5)).
			op(2, 40, 50, k8sUpdate(0, "c", 3), okAt(7)),
		"lost update: an update on a stale revision succeeds after an unknown one was seen": h{}.
			op(0, 0, 10, k8sCreate(0, "a"), okAt(3)).
			op(1, 20, 30, k8sUpdate(0, "b", 3), unknown()).
			op(2, 40, 50, k8sGet(0), readObj(0, at("b", 6))).
			op(2, 60, 70, k8sUpdate(0, "c", 3), okAt(8)),
		"a list whose pages come from different revisions": h{}.
			op(0, 0, 10, k8sCreate(0, "a"), okAt(3)).
			op(1, 0, 10, k8sCreate(1, "b"), okAt(4)).
			op(0, 20, 30, k8sUpdate(0, "a2", 3), okAt(7)).
			op(1, 40, 50, k8sUpdate(1, "b2", 4), okAt(8)).
			op(2, 60, 70, k8sList(), objs(at("a", 3), at("b2", 8))),
		"a create over an existing object": h{}.
			op(0, 0, 10, k8sCreate(0, "a"), okAt(3)).
			op(1, 20, 30, k8sCreate(0, "b"), okAt(4)),
		"a conflict reported where the compare held": h{}.
			op(0, 0, 10, k8sCreate(0, "a"), okAt(3)).
			op(1, 20, 30, k8sUpdate(0, "b", 3), conflict(0, at("a", 3))),
		"a deleted object listed": h{}.
			op(0, 0, 10, k8sCreate(2, "a"), okAt(3)).
			op(0, 20, 30, k8sDelete(2, 3), okAt(4)).
			op(1, 40, 50, k8sList(), objs(txnCell{}, txnCell{}, at("a", 3))),
	}
	for name, hist := range bad {
		checkHistory(t, name, hist, porcupine.Illegal)
	}
	good := map[string]h{
		"concurrent updates on one revision, one wins": h{}.
			op(0, 0, 10, k8sCreate(0, "a"), okAt(3)).
			op(1, 20, 40, k8sUpdate(0, "b", 3), okAt(5)).
			op(2, 20, 40, k8sUpdate(0, "c", 3), conflict(0, at("b", 5))).
			op(2, 50, 60, k8sUpdate(0, "c", 5), okAt(6)).
			op(3, 70, 80, k8sList(), objs(at("c", 6))),
		"a list concurrent with an update sees it or not": h{}.
			op(0, 0, 10, k8sCreate(0, "a"), okAt(3)).
			op(0, 20, 60, k8sUpdate(0, "b", 3), okAt(5)).
			op(1, 30, 40, k8sList(), objs(at("a", 3))).
			op(2, 30, 50, k8sList(), objs(at("b", 5))),
		"an unknown update seen by a later list, then updated on": h{}.
			op(0, 0, 10, k8sCreate(1, "a"), okAt(3)).
			op(0, 20, 30, k8sUpdate(1, "b", 3), unknown()).
			op(1, 40, 50, k8sList(), objs(txnCell{}, at("b", 9))).
			op(1, 60, 70, k8sUpdate(1, "c", 9), okAt(11)),
		"an unknown create never applied": h{}.
			op(0, 0, 10, k8sCreate(0, "a"), unknown()).
			op(1, 20, 30, k8sList(), objs()).
			op(1, 40, 50, k8sCreate(0, "b"), okAt(4)),
		"delete, then create again": h{}.
			op(0, 0, 10, k8sCreate(0, "a"), okAt(3)).
			op(0, 20, 30, k8sDelete(0, 3), okAt(4)).
			op(1, 40, 50, k8sDelete(0, 3), conflict(0, txnCell{})).
			op(1, 60, 70, k8sCreate(0, "b"), okAt(6)).
			op(2, 80, 90, k8sGet(0), readObj(0, at("b", 6))),
	}
	for name, hist := range good {
		checkHistory(t, name, hist, porcupine.Ok)
	}
}

func kv(key, value string, create, mod, version int64) wkv {
	return wkv{Key: key, Value: value, Create: create, Mod: mod, Version: version}
}

// TestListPageCheck shows the page check acquits a list that fits and
// convicts a page read at another revision, a repeated key, a count that
// does not match and a last page that says there is more.
func TestListPageCheck(t *testing.T) {
	const from, end = "k8s/", "k8s0"
	good := []listPage{
		{KVs: []wkv{kv("k8s/a", "1", 3, 3, 1), kv("k8s/b", "2", 4, 9, 2)}, More: true, Count: 3},
		{KVs: []wkv{kv("k8s/c", "3", 5, 5, 1)}, Count: 1},
	}
	if p := listPageProblems(10, from, end, 2, good); len(p) != 0 {
		t.Fatalf("a list that fits convicted: %v", p)
	}
	mutate := func(f func(p []listPage)) []listPage {
		out := make([]listPage, len(good))
		for i, p := range good {
			out[i] = p
			out[i].KVs = slices.Clone(p.KVs)
		}
		f(out)
		return out
	}
	for name, pages := range map[string][]listPage{
		"a page from a later revision": mutate(func(p []listPage) { p[1].KVs[0] = kv("k8s/c", "3b", 5, 12, 2) }),
		"a key repeated across pages":  mutate(func(p []listPage) { p[1].KVs[0] = kv("k8s/b", "2", 4, 9, 2) }),
		"a count that does not match":  mutate(func(p []listPage) { p[0].Count = 4 }),
		"more on the last page":        mutate(func(p []listPage) { p[1].More = true }),
		"a page over its limit":        mutate(func(p []listPage) { p[1].KVs = append(p[1].KVs, kv("k8s/d", "4", 6, 6, 1), kv("k8s/e", "5", 7, 7, 1)) }),
		"a key outside the range":      mutate(func(p []listPage) { p[1].KVs[0] = kv("k8t", "3", 5, 5, 1) }),
	} {
		if p := listPageProblems(10, from, end, 2, pages); len(p) == 0 {
			t.Errorf("%s acquitted", name)
		}
	}
}

// fakeStore is a correct store's history of k8s/, from which the watch
// tests build what correct watchers see.
type fakeStore struct {
	rev    int64
	state  map[string]wkv
	events []wEntry
	acked  []ackedWrite
	at     map[int64]map[string]wkv
}

func newFakeStore() *fakeStore {
	return &fakeStore{rev: 1, state: map[string]wkv{}, at: map[int64]map[string]wkv{1: {}}}
}

func (f *fakeStore) put(key, value string) {
	f.rev++
	cur, ok := f.state[key]
	n := wkv{Key: key, Value: value, Create: f.rev, Mod: f.rev, Version: 1}
	if ok {
		n.Create, n.Version = cur.Create, cur.Version+1
	}
	f.events = append(f.events, wEntry{KV: n, HasPrev: ok, Prev: cur})
	f.state[key] = n
	f.acked = append(f.acked, ackedWrite{Key: key, Value: value, Rev: f.rev})
	f.at[f.rev] = maps.Clone(f.state)
}

func (f *fakeStore) del(key string) {
	f.rev++
	cur := f.state[key]
	f.events = append(f.events, wEntry{Delete: true, KV: wkv{Key: key, Mod: f.rev}, HasPrev: true, Prev: cur})
	delete(f.state, key)
	f.acked = append(f.acked, ackedWrite{Key: key, Rev: f.rev, Delete: true})
	f.at[f.rev] = maps.Clone(f.state)
}

// revoke deletes keys in one revision, in the order given, as a lease's
// expiry does.
func (f *fakeStore) revoke(keys ...string) {
	f.rev++
	for _, key := range keys {
		cur := f.state[key]
		f.events = append(f.events, wEntry{Delete: true, KV: wkv{Key: key, Mod: f.rev}, HasPrev: true, Prev: cur})
		delete(f.state, key)
	}
	f.at[f.rev] = maps.Clone(f.state)
}

// segment is what a correct watcher sees listing at from and watching up
// to to, with a progress notification at progress (0: none).
func (f *fakeStore) segment(from, to, progress int64) *wSegment {
	s := &wSegment{ListRev: from, List: maps.Clone(f.at[from]), End: from}
	for _, e := range f.events {
		if e.KV.Mod > from && e.KV.Mod <= to {
			if progress > 0 && e.KV.Mod > progress && s.End <= progress {
				s.deliver(wEntry{Progress: progress})
			}
			s.deliver(e)
		}
	}
	if progress > s.End {
		s.deliver(wEntry{Progress: progress})
	}
	return s
}

// TestWatchCheck shows the watch checker acquits watchers that saw the
// store's history, across relists, and convicts a gap, a duplicate, a
// wrong prev_kv, an event delivered after a progress notification that
// covered it, an acknowledged write nobody saw, a relist from another
// revision, a refused write that shows up, and a watcher that stopped short.
func TestWatchCheck(t *testing.T) {
	f := newFakeStore()
	f.put("k8s/pods/0", "a")                 // 2
	f.put("k8s/pods/1", "b")                 // 3
	f.put("k8s/events/0", "e0")              // 4
	f.put("k8s/pods/0", "a2")                // 5
	f.del("k8s/pods/1")                      // 6
	f.del("k8s/events/0")                    // 7: the lease expired
	f.put("k8s/pods/1", "b2")                // 8
	f.put("k8s/pods/0", "a3")                // 9
	f.put("k8s/events/1", "e1")              // 10
	f.put("k8s/events/2", "e2")              // 11
	f.revoke("k8s/events/2", "k8s/events/1") // 12: one lease, two keys
	final, finalList := f.rev, maps.Clone(f.state)
	watchers := func() [][]*wSegment {
		return [][]*wSegment{
			{f.segment(1, final, 5)},
			{f.segment(2, 6, 0), f.segment(7, final, 8)}, // compacted at 6: listed again at 7
		}
	}
	if p := watchProblems(watchers(), f.acked, map[string]bool{"refused": true}, final, finalList); len(p) != 0 {
		t.Fatalf("watchers of a correct store convicted: %v", p)
	}
	for name, tc := range map[string]struct {
		mutate     func(ws [][]*wSegment)
		notApplied string
		wantInMsg  string
	}{
		"a gap: one event missing": {mutate: func(ws [][]*wSegment) {
			s := ws[0][0]
			s.Entries = slices.DeleteFunc(s.Entries, func(e wEntry) bool { return e.KV.Mod == 3 })
		}, wantInMsg: "prev_kv"},
		"a gap every watcher shares, on a key not written again": {mutate: func(ws [][]*wSegment) {
			for _, segs := range ws {
				for _, s := range segs {
					s.Entries = slices.DeleteFunc(s.Entries, func(e wEntry) bool { return e.KV.Mod == 9 })
				}
			}
		}, wantInMsg: "acknowledged"},
		"a duplicate event": {mutate: func(ws [][]*wSegment) {
			s := ws[0][0]
			s.Entries = append(s.Entries[:3:3], s.Entries[2:]...)
		}, wantInMsg: "repeated"},
		"a wrong prev_kv": {mutate: func(ws [][]*wSegment) {
			s := ws[0][0]
			for i, e := range s.Entries {
				if e.KV.Mod == 5 {
					s.Entries[i].Prev.Value = "stale"
				}
			}
		}, wantInMsg: "prev_kv"},
		"an event after a progress notification that covered it": {mutate: func(ws [][]*wSegment) {
			s := ws[0][0]
			i := slices.IndexFunc(s.Entries, func(e wEntry) bool { return e.Progress > 0 })
			s.Entries[i].Progress = 7
		}, wantInMsg: "progress"},
		"a relist at another revision than it claims": {mutate: func(ws [][]*wSegment) {
			ws[1][1].List = maps.Clone(f.at[5])
		}, wantInMsg: "differs"},
		"a refused write shows up": {notApplied: "b2", wantInMsg: "refused"},
		"a watcher that stopped short": {mutate: func(ws [][]*wSegment) {
			s := ws[1][1]
			s.Entries = s.Entries[:len(s.Entries)-1]
			s.End = 8
		}, wantInMsg: "reached"},
	} {
		ws := watchers()
		if tc.mutate != nil {
			tc.mutate(ws)
		}
		p := watchProblems(ws, f.acked, map[string]bool{tc.notApplied: true}, final, finalList)
		if !slices.ContainsFunc(p, func(s string) bool { return strings.Contains(s, tc.wantInMsg) }) {
			t.Errorf("%s: want a problem naming %q, got %v", name, tc.wantInMsg, p)
		}
	}
}
