package kv

import (
	"fmt"
	"math"

	"github.com/google/btree"
)

// KeyValue is one version of a key as readers see it. A delete event's
// KeyValue has the delete's ModRevision, Version 0 and no value.
type KeyValue struct {
	Key string
	// CreateRevision is the revision that created the key (its first
	// version since it last did not exist).
	CreateRevision int64
	// ModRevision is the revision of the write that made this version.
	ModRevision int64
	// Version counts the writes since creation: 1 after the creating put.
	Version int64
	// Lease is the lease the key is attached to, 0 for none.
	Lease int64
	Value []byte
}

// version is one stored version of a key. Versions are values, never
// changed once stored; a record's slice of them is only ever appended to
// past every length a clone has seen, or replaced by a new slice.
type version struct {
	value  []byte
	mod    int64
	create int64
	ver    int64 // 0: a tombstone, the key deleted at mod
	lease  int64
	sub    uint32 // position among the keys changed at revision mod
}

func (v *version) tombstone() bool { return v.ver == 0 }

// record is a key and its retained history, oldest first. The last version
// is the key's present state (a tombstone if the key does not exist now).
//
// The live store reaches a record through its tree and through byKey, and
// changes it in place when no snapshot view can see it. Snapshot starts a
// new store generation; own is twice the generation the record was made
// in, plus one if its version array was also allocated in it. A record of
// an older generation may be in a view and is replaced by a copy before it
// changes (Store.mutable); an array of an older generation may be too,
// and is only ever appended to past every length a view has seen,
// resliced, or replaced by a new array, so a copy may share it. An array
// of the present generation no view has seen: compaction moves its kept
// versions down in place instead of reslicing, so a key's steady stream
// of writes and compactions reuses one array.
type record struct {
	key  string
	vers []version
	own  uint64
}

func recordLess(a, b *record) bool { return a.key < b.key }

func newRecordTree() *btree.BTreeG[*record] { return btree.NewG(btreeDegree, recordLess) }

// view names a point in the history: every version written before
// revision rev, and those written at rev with sub below sub. A read at a
// revision r is view{r + 1, 0}... written as atRevision(r).
type view struct {
	rev int64
	sub uint32
}

// atRevision is the view of the store as it was once revision r committed.
func atRevision(r int64) view { return view{rev: r, sub: math.MaxUint32} }

func (w view) sees(v *version) bool { return v.mod < w.rev || (v.mod == w.rev && v.sub < w.sub) }

// visible returns the version of rec that w sees, nil if none or a
// tombstone.
func (rec *record) visible(w view) *version {
	for i := len(rec.vers) - 1; i >= 0; i-- {
		if v := &rec.vers[i]; w.sees(v) {
			if v.tombstone() {
				return nil
			}
			return v
		}
	}
	return nil
}

// current returns the key's present version, nil if it does not exist
// (rec nil: no record).
func (rec *record) current() *version {
	if rec == nil {
		return nil
	}
	if n := len(rec.vers); n > 0 && !rec.vers[n-1].tombstone() {
		return &rec.vers[n-1]
	}
	return nil
}

func (v *version) keyValue(key string) KeyValue {
	return KeyValue{Key: key, CreateRevision: v.create, ModRevision: v.mod, Version: v.ver, Lease: v.lease, Value: v.value}
}

// histEvent is one entry of the store's revision-ordered change log: the
// key that changed at rev. Its version is found in the key's record.
type histEvent struct {
	key string
	rev int64
	sub uint32
}

// changeLog is the revision-ordered list of changes still in the history,
// oldest first. It is not in snapshots: Restore rebuilds it from the
// records' versions, which carry (mod, sub). It is a ring whose length is
// a power of two (or zero), so that a steady stream of pushes at the new
// end and pops at the old one moves nothing; it grows by doubling and
// shrinks by half once a quarter full.
type changeLog struct {
	ring []histEvent
	head int // the oldest event's slot
	n    int // events held
}

// minChangeRing is the smallest ring kept once one is needed.
const minChangeRing = 1024

func newChangeLog(events []histEvent) changeLog {
	size := minChangeRing
	for size < len(events) {
		size *= 2
	}
	l := changeLog{ring: make([]histEvent, size), n: len(events)}
	copy(l.ring, events)
	return l
}

func (l *changeLog) len() int { return l.n }

// at returns the i-th oldest event.
func (l *changeLog) at(i int) *histEvent { return &l.ring[(l.head+i)&(len(l.ring)-1)] }

func (l *changeLog) push(e histEvent) {
	if l.n == len(l.ring) {
		l.resize(max(2*len(l.ring), minChangeRing))
	}
	*l.at(l.n) = e
	l.n++
}

// pop removes and returns the oldest event.
func (l *changeLog) pop() histEvent {
	p := l.at(0)
	e := *p
	*p = histEvent{} // the key may be a deleted record's: let it go
	l.head = (l.head + 1) & (len(l.ring) - 1)
	l.n--
	if len(l.ring) > minChangeRing && l.n < len(l.ring)/4 {
		l.resize(len(l.ring) / 2)
	}
	return e
}

func (l *changeLog) resize(size int) {
	ring := make([]histEvent, size)
	for i := range l.n {
		ring[i] = *l.at(i)
	}
	l.ring, l.head = ring, 0
}

// from returns the position (for at) of the first event at or after rev.
func (l *changeLog) from(rev int64) int {
	lo, hi := 0, l.n
	for lo < hi {
		m := (lo + hi) / 2
		if l.at(m).rev < rev {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// writeLocked appends v as key's newest version at the pending revision,
// records the change, and returns the version it superseded (nil if the
// key did not exist). The caller has checked everything.
func (s *Store) writeLocked(key string, value []byte, lease int64) (prev *version) {
	return s.writeRecordLocked(s.byKey[key], key, value, lease)
}

// writeRecordLocked is writeLocked with key's record already looked up
// (nil if absent).
func (s *Store) writeRecordLocked(rec *record, key string, value []byte, lease int64) (prev *version) {
	if rec == nil {
		rec = s.newRecordLocked(key)
	} else {
		rec = s.mutable(rec)
	}
	nv := version{value: value, mod: s.pendingRev(), ver: 1, lease: lease, sub: s.sub}
	nv.create = nv.mod
	if cur := rec.current(); cur != nil {
		nv.create, nv.ver = cur.create, cur.ver+1
		c := *cur
		prev = &c
	}
	if prev != nil && prev.lease != 0 {
		s.leaseKeys.Delete(leaseKey{lease: prev.lease, key: rec.key})
	}
	if lease != 0 {
		s.leaseKeys.ReplaceOrInsert(leaseKey{lease: lease, key: rec.key})
	}
	s.appendVersion(rec, nv)
	s.noteChange(rec.key, &nv, prev)
	return prev
}

// deleteLocked writes a tombstone for key if it exists now, returning the
// version deleted.
func (s *Store) deleteLocked(key string) (prev *version) {
	rec := s.byKey[key]
	cur := rec.current()
	if cur == nil {
		return nil
	}
	c := *cur
	prev = &c
	rec = s.mutable(rec)
	if prev.lease != 0 {
		s.leaseKeys.Delete(leaseKey{lease: prev.lease, key: rec.key})
	}
	nv := version{mod: s.pendingRev(), create: 0, ver: 0, sub: s.sub}
	s.appendVersion(rec, nv)
	s.noteChange(rec.key, &nv, prev)
	return prev
}

// newRecordLocked adds an empty record for key, which has none.
func (s *Store) newRecordLocked(key string) *record {
	rec := &record{key: key, own: s.gen << 1}
	s.records.ReplaceOrInsert(rec)
	s.byKey[key] = rec
	s.keyBytes += recordBytes(key)
	return rec
}

// mutable returns rec, the live store's record of its key, ready to be
// changed in place: rec itself if it was made in the present generation,
// otherwise a copy that takes its place in the tree and in byKey, leaving
// rec as the snapshot views that may hold it saw it.
func (s *Store) mutable(rec *record) *record {
	if rec.own>>1 == s.gen {
		return rec
	}
	c := &record{key: rec.key, vers: rec.vers, own: s.gen << 1}
	s.records.ReplaceOrInsert(c)
	s.byKey[c.key] = c
	return c
}

// appendVersion appends v to rec, which mutable returned.
func (s *Store) appendVersion(rec *record, v version) {
	if len(rec.vers) == cap(rec.vers) {
		rec.own = s.gen<<1 | 1 // append allocates an array no view has seen
	}
	rec.vers = append(rec.vers, v)
}

// pendingRev is the revision the command being applied writes at: the
// store revision plus one. It becomes the store revision when the command
// ends having changed something (finishLocked).
func (s *Store) pendingRev() int64 { return s.rev + 1 }

// noteChange records one change of the command being applied: in the
// change log, and in the batch the watch hub will be given.
func (s *Store) noteChange(key string, nv, prev *version) {
	s.changes.push(histEvent{key: key, rev: nv.mod, sub: nv.sub})
	s.keyBytes += versionBytes(nv)
	s.sub++
	switch {
	case prev == nil && !nv.tombstone():
		s.keys++
	case prev != nil && nv.tombstone():
		s.keys--
	}
	if !s.publishing {
		return
	}
	ev := Event{Type: EventPut, KV: nv.keyValue(key)}
	if nv.tombstone() {
		ev.Type = EventDelete
		ev.KV = KeyValue{Key: key, ModRevision: nv.mod}
	}
	if prev != nil {
		kv := prev.keyValue(key)
		ev.Prev = &kv
	}
	s.pending = append(s.pending, ev)
}

// finishLocked ends the command being applied: if it changed anything, the
// store revision rises by one, the watchers hear of it, and history beyond
// the retention is compacted.
func (s *Store) finishLocked() {
	if s.sub == 0 {
		return
	}
	s.rev++
	s.sub = 0
	if s.publishing {
		s.hub.publish(s.rev, s.pending)
		s.pending = nil
	}
	if keep := s.cfg.historyRevisions(); s.rev-s.compacted > keep {
		s.compactLocked(s.rev - keep)
	}
}

// compactLocked discards the history before revision r: afterwards a read
// at a revision below r fails, and for each key only the newest version at
// or before r, unless it is a tombstone older than r, remains of the past.
func (s *Store) compactLocked(r int64) {
	if r <= s.compacted {
		return
	}
	s.compacted = r
	for s.changes.len() > 0 && s.changes.at(0).rev < r {
		e := s.changes.pop()
		rec := s.byKey[e.key]
		if rec == nil {
			continue // compacted away by an earlier event of the key
		}
		first := compactFrom(rec.vers, r)
		if first == 0 {
			continue
		}
		for i := range rec.vers[:first] {
			s.keyBytes -= versionBytes(&rec.vers[i])
		}
		if first == len(rec.vers) {
			s.keyBytes -= recordBytes(rec.key)
			s.records.Delete(rec)
			delete(s.byKey, rec.key)
			continue
		}
		rec = s.mutable(rec)
		switch {
		case rec.own == s.gen<<1|1:
			n := copy(rec.vers, rec.vers[first:])
			clear(rec.vers[n:]) // let the dropped values go
			rec.vers = rec.vers[:n]
		case first >= len(rec.vers)-first:
			rec.vers = append([]version(nil), rec.vers[first:]...)
			rec.own |= 1
		default:
			rec.vers = rec.vers[first:]
		}
	}
}

// compactFrom returns the index of the oldest version of a key to keep
// when compacting at r: the versions before it are dropped, all of them
// if it is len(vers). The caller drops them by moving the kept ones down
// in an array no view has seen; otherwise by reslicing rather than
// copying (appends past the end stay invisible to a view that shares the
// array, and the dropped front is never written), and by copying only
// when it drops at least half, so a compaction costs O(1) amortized per
// version dropped. A dropped front left in an array is freed when the
// key's next append outgrows the array, so a key's array holds at most
// about twice its most versions retained.
func compactFrom(vers []version, r int64) int {
	// first is the oldest version to keep: the newest with mod <= r.
	first := 0
	for i := 1; i < len(vers) && vers[i].mod <= r; i++ {
		first = i // mods ascend: the scan stops at the first after r
	}
	if v := &vers[first]; v.mod < r && v.tombstone() {
		first++ // a delete before r: nothing of the key is readable at r
	}
	return first
}

// checkRevision says why a read at revision rev (0: the present) cannot be
// served, as a *Error, or returns the revision to read at.
func (s *Store) checkRevision(rev int64) (int64, error) {
	switch {
	case rev <= 0:
		return s.rev, nil
	case rev > s.rev:
		return 0, &Error{Code: CodeFutureRevision, Message: fmt.Sprintf("revision %d is after the store's revision %d", rev, s.rev)}
	case rev < s.compacted:
		return 0, &CompactedError{Revision: rev, Compacted: s.compacted}
	}
	return rev, nil
}

// CompactedError is a read or watch at a revision the history no longer
// holds. Compacted is the oldest revision still readable.
type CompactedError struct {
	Revision  int64
	Compacted int64
}

func (e *CompactedError) Error() string { return fmt.Sprintf("kv: %s: %s", CodeCompacted, e.Message()) }

// Message is the error without its prefix, for an API answer.
func (e *CompactedError) Message() string {
	return fmt.Sprintf("revision %d is compacted (history starts at revision %d)", e.Revision, e.Compacted)
}
