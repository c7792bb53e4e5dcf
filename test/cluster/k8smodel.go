package cluster

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// The checks of the Kubernetes-pattern clients (k8sclients.go), which use
// the etcd API as the Kubernetes API server's etcd3 storage does:
//
//   - objects k8s/pods/0..5 are created by a transaction comparing their
//     mod revision to 0, updated and deleted by transactions comparing it
//     to the revision last read (reading the key in the failure branch),
//     and listed in pages at the revision of the first page. These go to
//     porcupine as one register of k8sObjects cells (k8sStep): a list is
//     a read of every cell at its first page's linearization point, since
//     the later pages read that same revision;
//   - the pages of each list are checked on their own (listPageProblems);
//   - watchers of k8s/ record segments: a list at a revision, then every
//     event after it, progress notifications included, across reconnects,
//     until a compacted revision makes them list again. watchProblems
//     holds each segment to its list (prev_kv chain), to every other
//     segment (no gap, no duplicate, the same events) and to every
//     acknowledged write.

const (
	k8sPrefix      = "k8s/"        // the watched range
	k8sObjPrefix   = "k8s/pods/"   // the objects, and their porcupine partition key
	k8sEventPrefix = "k8s/events/" // keys on short leases
	k8sObjects     = 6

	opK8sCreate = "k8s-create" // Txn(If mod(key)=0).Then(Put).Else(Get)
	opK8sUpdate = "k8s-update" // Txn(If mod(key)=Rev).Then(Put).Else(Get)
	opK8sDelete = "k8s-delete" // Txn(If mod(key)=Rev).Then(Delete).Else(Get)
	opK8sGet    = "k8s-get"    // linearizable Get(key)
	opK8sList   = "k8s-list"   // paginated list of k8s/pods/ at the first page's revision
)

// objSet is the objects' state in the model, and what a list read.
type objSet [k8sObjects]txnCell

func k8sObjKey(i int) string { return fmt.Sprintf("%s%d", k8sObjPrefix, i) }

// k8sObjIndex is the index of an object key, -1 for any other key.
func k8sObjIndex(key string) int {
	for i := range k8sObjects {
		if key == k8sObjKey(i) {
			return i
		}
	}
	return -1
}

// cellRead holds a read of one cell to the state and learns an unknown
// revision.
func cellRead(c, r txnCell) (bool, txnCell) {
	if c.Exists != r.Exists || (c.Exists && (c.Value != r.Value || !revMatches(c.Rev, r.Rev))) {
		return false, c
	}
	if c.Exists {
		c.Rev = r.Rev
	}
	return true, c
}

// k8sStep is the sequential specification of the objects.
func k8sStep(state any, in kvInput, out kvOutput) (bool, any) {
	s, ok := state.(objSet)
	if !ok {
		s = objSet{} // the partition starts from the model's Init
	}
	switch in.Op {
	case opK8sList:
		for i := range s {
			ok, c := cellRead(s[i], out.Objects[i])
			if !ok {
				return false, s
			}
			s[i] = c
		}
		return true, s
	case opK8sGet:
		ok, c := cellRead(s[in.Object], out.Objects[in.Object])
		s[in.Object] = c
		return ok, s
	case opK8sCreate, opK8sUpdate, opK8sDelete:
		c := s[in.Object]
		want := in.Rev // 0 for a create: the key is absent
		can, sure := cellHolds(c, want), cellSurely(c, want)
		var after txnCell // a delete leaves the key absent
		if in.Op != opK8sDelete {
			after = txnCell{Exists: true, Value: in.Value, Rev: out.Index}
		}
		switch {
		case out.Unknown:
			if !can {
				return true, s
			}
			after.Rev = 0
			s[in.Object] = after
			return true, s
		case out.OK:
			if !can {
				return false, s
			}
			s[in.Object] = after
			return true, s
		default: // the compare failed; the failure branch read the key
			r := out.Objects[in.Object]
			if sure || (want == 0 && !r.Exists) || (want != 0 && r.Exists && r.Rev == want) {
				return false, s
			}
			ok, c := cellRead(c, r)
			s[in.Object] = c
			return ok, s
		}
	}
	panic("unknown k8s op " + in.Op)
}

func describeK8s(in kvInput, out kvOutput) string {
	cell := func(c txnCell) string {
		if !c.Exists {
			return "absent"
		}
		return fmt.Sprintf("%q@%d", short(c.Value), c.Rev)
	}
	switch in.Op {
	case opK8sList:
		var parts []string
		for _, c := range out.Objects {
			parts = append(parts, cell(c))
		}
		return fmt.Sprintf("list(%s) -> %v", k8sObjPrefix, parts)
	case opK8sGet:
		return fmt.Sprintf("get(%s) -> %s", k8sObjKey(in.Object), cell(out.Objects[in.Object]))
	}
	res := fmt.Sprintf("ok@%d", out.Index)
	switch {
	case out.Unknown:
		res = "unknown"
	case !out.OK:
		res = "failed, read " + cell(out.Objects[in.Object])
	}
	return fmt.Sprintf("%s(%s, if mod=%d, %q) -> %s", in.Op, k8sObjKey(in.Object), in.Rev, short(in.Value), res)
}

// wkv is a key-value as a watcher or a list saw it.
type wkv struct {
	Key, Value           string
	Create, Mod, Version int64
}

// listPage is one page of a paginated list.
type listPage struct {
	KVs   []wkv
	More  bool
	Count int64
}

// listPageProblems checks the pages of one list read at revision rev over
// [from, end) with the given limit: each page within its limit and the
// range, keys ascending across pages, nothing newer than rev, More on every
// page but the last, and as many keys as the first page counted.
func listPageProblems(rev int64, from, end string, limit int64, pages []listPage) []string {
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("list of [%q,%q) at revision %d: ", from, end, rev)+fmt.Sprintf(format, args...))
	}
	if len(pages) == 0 {
		return []string{fmt.Sprintf("list of [%q,%q) at revision %d: no page", from, end, rev)}
	}
	last := ""
	n := 0
	for i, p := range pages {
		if int64(len(p.KVs)) > limit {
			bad("page %d holds %d keys, above the limit %d", i, len(p.KVs), limit)
		}
		if p.More != (i < len(pages)-1) {
			bad("page %d says more=%v as page %d of %d", i, p.More, i+1, len(pages))
		}
		if p.More && int64(len(p.KVs)) < limit {
			bad("page %d holds %d keys below the limit %d yet says more", i, len(p.KVs), limit)
		}
		for _, kv := range p.KVs {
			switch {
			case kv.Key < from || kv.Key >= end:
				bad("page %d holds %q, outside the range", i, kv.Key)
			case n > 0 && kv.Key <= last:
				bad("page %d holds %q after %q: not ascending, or repeated", i, kv.Key, last)
			case kv.Mod > rev || kv.Create > kv.Mod:
				bad("page %d holds %q at mod revision %d (created %d): not the state at revision %d", i, kv.Key, kv.Mod, kv.Create, rev)
			}
			last = kv.Key
			n++
		}
	}
	if pages[0].Count != int64(n) {
		bad("the first page counted %d keys, the pages hold %d", pages[0].Count, n)
	}
	return problems
}

// listObjects is what a list of k8s/ tells of the objects, for porcupine.
func listObjects(items map[string]wkv) objSet {
	var s objSet
	for k, kv := range items {
		if i := k8sObjIndex(k); i >= 0 {
			s[i] = txnCell{Exists: true, Value: kv.Value, Rev: uint64(kv.Mod)}
		}
	}
	return s
}

// wEntry is one thing a watch delivered: an event, or a progress
// notification (Progress > 0: every change up to it has been delivered).
type wEntry struct {
	Progress int64
	Delete   bool
	KV       wkv // a delete's: the key and the delete's revision (Mod)
	HasPrev  bool
	Prev     wkv
}

func (e wEntry) String() string {
	if e.Progress > 0 {
		return fmt.Sprintf("progress@%d", e.Progress)
	}
	typ := "put"
	if e.Delete {
		typ = "delete"
	}
	prev := "no prev"
	if e.HasPrev {
		prev = fmt.Sprintf("prev %q@%d", short(e.Prev.Value), e.Prev.Mod)
	}
	return fmt.Sprintf("%s %s@%d %q (%s)", typ, e.KV.Key, e.KV.Mod, short(e.KV.Value), prev)
}

// wSegment is a watcher's continuous view: a list at ListRev, then what
// the watches from ListRev+1 on delivered, resumed after every error until
// a compacted revision ended it. End: every change up to it was delivered.
type wSegment struct {
	ListRev int64
	List    map[string]wkv
	Entries []wEntry
	End     int64
}

// deliver notes what a watch delivered.
func (s *wSegment) deliver(e wEntry) {
	s.Entries = append(s.Entries, e)
	s.End = max(s.End, e.Progress, e.KV.Mod)
}

// stateAt replays the segment up to revision rev (ListRev <= rev <= End).
func (s *wSegment) stateAt(rev int64) map[string]wkv {
	st := maps.Clone(s.List)
	for _, e := range s.Entries {
		if e.Progress > 0 || e.KV.Mod > rev {
			continue
		}
		if e.Delete {
			delete(st, e.KV.Key)
		} else {
			st[e.KV.Key] = e.KV
		}
	}
	return st
}

// ackedWrite is a write to k8s/ whose answer named its revision.
type ackedWrite struct {
	Key, Value string
	Rev        int64
	Delete     bool
}

type eventID struct {
	rev int64
	key string
}

// watchProblems checks every watcher's segments: see the comment at the
// top of the file. notApplied holds the values of writes known not to have
// been applied; final and finalList are a last list's revision and items,
// which every watcher must have reached.
func watchProblems(watchers [][]*wSegment, acked []ackedWrite, notApplied map[string]bool, final int64, finalList map[string]wkv) []string {
	var problems []string
	report := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	union := map[eventID]wEntry{}
	byValue := map[string]eventID{}
	for wi, segs := range watchers {
		for si, s := range segs {
			where := fmt.Sprintf("watcher %d segment %d (listed at %d)", wi, si, s.ListRev)
			st := maps.Clone(s.List)
			var prevID eventID
			atRev := map[string]bool{} // keys changed at prevID.rev
			var progress int64
			for _, e := range s.Entries {
				if e.Progress > 0 {
					progress = max(progress, e.Progress)
					continue
				}
				id := eventID{e.KV.Mod, e.KV.Key}
				switch {
				case id.rev <= s.ListRev:
					report("%s: event %v at or below the list's revision", where, e)
				case id.rev <= progress:
					report("%s: event %v delivered after a progress notification at %d", where, e, progress)
				case id.rev < prevID.rev || (id.rev == prevID.rev && atRev[id.key]):
					report("%s: event %v repeated or out of order after %d %s", where, e, prevID.rev, prevID.key)
				}
				if id.rev != prevID.rev {
					clear(atRev)
				}
				atRev[id.key] = true // one revision may change several keys, in any order
				prevID = id
				cur, present := st[e.KV.Key]
				switch {
				case e.HasPrev != present || (present && e.Prev != cur):
					report("%s: event %v has the wrong prev_kv: the key held %s", where, e, describeWKV(cur, present))
				case !e.Delete && !present && (e.KV.Create != e.KV.Mod || e.KV.Version != 1):
					report("%s: event %v creates the key but has create revision %d, version %d", where, e, e.KV.Create, e.KV.Version)
				case !e.Delete && present && (e.KV.Create != cur.Create || e.KV.Version != cur.Version+1):
					report("%s: event %v has create revision %d, version %d after %s", where, e, e.KV.Create, e.KV.Version, describeWKV(cur, true))
				}
				if e.Delete {
					delete(st, e.KV.Key)
				} else {
					st[e.KV.Key] = e.KV
					if notApplied[e.KV.Value] {
						report("%s: event %v shows a write that was refused", where, e)
					}
					if other, dup := byValue[e.KV.Value]; dup && other != id {
						report("%s: value %q written at revisions %d and %d: one write applied twice", where, short(e.KV.Value), other.rev, id.rev)
					}
					byValue[e.KV.Value] = id
				}
				if u, seen := union[id]; seen && u != e {
					report("%s: event %v, another watcher saw %v", where, e, u)
				}
				union[id] = e
			}
		}
	}
	ids := slices.SortedFunc(maps.Keys(union), func(a, b eventID) int {
		if a.rev != b.rev {
			return int(a.rev - b.rev)
		}
		return strings.Compare(a.key, b.key)
	})
	for wi, segs := range watchers {
		for si, s := range segs {
			where := fmt.Sprintf("watcher %d segment %d (listed at %d, up to %d)", wi, si, s.ListRev, s.End)
			have := map[eventID]wEntry{}
			for _, e := range s.Entries {
				if e.Progress == 0 {
					have[eventID{e.KV.Mod, e.KV.Key}] = e
				}
			}
			gaps := 0
			for _, id := range ids {
				if id.rev > s.ListRev && id.rev <= s.End {
					if _, ok := have[id]; !ok {
						if gaps++; gaps <= 3 {
							report("%s: lacks %v, which another watcher saw", where, union[id])
						}
					}
				}
			}
			missing := 0
			for _, a := range acked {
				if a.Rev <= s.ListRev || a.Rev > s.End {
					continue
				}
				e, ok := have[eventID{a.Rev, a.Key}]
				if !ok || e.Delete != a.Delete || (!a.Delete && e.KV.Value != a.Value) {
					if missing++; missing <= 3 {
						report("%s: lacks the acknowledged write of %s (%q, delete %v) at revision %d", where, a.Key, short(a.Value), a.Delete, a.Rev)
					}
				}
			}
			// Its list must be the state every other view had at that revision.
			for wj, others := range watchers {
				for sj, o := range others {
					if (wj == wi && sj == si) || s.ListRev < o.ListRev || s.ListRev > o.End {
						continue
					}
					if d := stateDiff(o.stateAt(s.ListRev), s.List); d != "" {
						report("%s: its list differs from watcher %d segment %d's state at revision %d: %s", where, wj, sj, s.ListRev, d)
					}
				}
			}
		}
		if len(segs) == 0 {
			report("watcher %d never listed", wi)
			continue
		}
		last := segs[len(segs)-1]
		if last.End < final {
			report("watcher %d reached revision %d, the run ended at %d", wi, last.End, final)
			continue
		}
		if d := stateDiff(last.stateAt(final), finalList); d != "" {
			report("watcher %d: its state at revision %d differs from a list there: %s", wi, final, d)
		}
	}
	return problems
}

func describeWKV(kv wkv, present bool) string {
	if !present {
		return "nothing"
	}
	return fmt.Sprintf("%q@%d (created %d, version %d)", short(kv.Value), kv.Mod, kv.Create, kv.Version)
}

// stateDiff describes the first few differences between two states.
func stateDiff(a, b map[string]wkv) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if bv, ok := b[k]; !ok || bv != a[k] {
			out = append(out, fmt.Sprintf("%s: %s vs %s", k, describeWKV(a[k], true), describeWKV(bv, ok)))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if _, ok := a[k]; !ok {
			out = append(out, fmt.Sprintf("%s: nothing vs %s", k, describeWKV(b[k], true)))
		}
	}
	if len(out) > 3 {
		out = append(out[:3], fmt.Sprintf("and %d more", len(out)-3))
	}
	if len(out) == 0 {
		return ""
	}
	return fmt.Sprint(out)
}
