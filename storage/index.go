package storage

import (
	"sort"

	pb "github.com/raftkv/raftkv/raftpb"
)

// entryLoc is where an entry's record lives. 12 bytes per entry: a log of
// 4M entries costs 48 MiB of index, and no entry data.
type entryLoc struct {
	seq     uint32
	off     uint32
	dataLen uint32
}

// before reports whether the record at l starts before position (seq, off).
func (l entryLoc) before(seq uint32, off int64) bool {
	return l.seq < seq || (l.seq == seq && int64(l.off) < off)
}

// termRun says entries from first on have term, up to the next run. Terms
// change rarely, so runs are far fewer than entries.
type termRun struct {
	first pb.Index
	term  pb.Term
}

// logIndex maps the live log to its records.
//
// Invariants: entries lo..last() are contiguous, locs[i-lo] is entry i;
// terms covers lo..last() and never decreases. In a live Log lo ==
// snap.Index+1; only during replay may lo be higher (the entries between
// are in segments already deleted, and a later snapshot marker must cover
// them).
type logIndex struct {
	snap  pb.SnapshotMeta
	lo    pb.Index
	locs  []entryLoc
	terms []termRun
}

func (x *logIndex) last() pb.Index { return x.lo + pb.Index(len(x.locs)) - 1 }

func (x *logIndex) loc(i pb.Index) entryLoc { return x.locs[i-x.lo] }

// term returns the term of entry i, lo <= i <= last().
func (x *logIndex) term(i pb.Index) pb.Term {
	k := sort.Search(len(x.terms), func(j int) bool { return x.terms[j].first > i })
	return x.terms[k-1].term
}

// termAt answers for the snapshot index too; ok is false outside the log.
func (x *logIndex) termAt(i pb.Index) (pb.Term, bool) {
	switch {
	case i == x.snap.Index:
		return x.snap.Term, true
	case i < x.lo || i > x.last():
		return 0, false
	}
	return x.term(i), true
}

// truncateFrom drops entries i and after, lo <= i <= last()+1.
func (x *logIndex) truncateFrom(i pb.Index) {
	x.locs = x.locs[:i-x.lo]
	k := sort.Search(len(x.terms), func(j int) bool { return x.terms[j].first >= i })
	x.terms = x.terms[:k]
}

// add appends entry last()+1.
// reserve makes room for n more entries. Recovery adds millions: growing
// by doubling copies far less than append's gentler growth of big slices.
func (x *logIndex) reserve(n int) {
	if len(x.locs)+n > cap(x.locs) {
		locs := make([]entryLoc, len(x.locs), max(2*cap(x.locs), len(x.locs)+n))
		copy(locs, x.locs)
		x.locs = locs
	}
}

func (x *logIndex) add(term pb.Term, l entryLoc) {
	if n := len(x.terms); n == 0 || x.terms[n-1].term != term {
		x.terms = append(x.terms, termRun{first: x.last() + 1, term: term})
	}
	x.locs = append(x.locs, l)
}

// restartAt empties the index so that the next entry added is i.
func (x *logIndex) restartAt(i pb.Index) {
	x.lo = i
	x.locs = x.locs[:0]
	x.terms = x.terms[:0]
}

// reset makes the log start right after an installed snapshot.
func (x *logIndex) reset(m pb.SnapshotMeta) {
	x.snap = m
	x.restartAt(m.Index + 1)
}

// compact records snapshot m and drops the entries it covers. m.Index must
// not be past last().
func (x *logIndex) compact(m pb.SnapshotMeta) {
	x.snap = m
	if m.Index < x.lo {
		return
	}
	drop := int(m.Index - x.lo + 1)
	rest := x.locs[drop:]
	if drop > len(rest) {
		// Copy so the dropped prefix is freed; amortised over the drops.
		rest = append([]entryLoc(nil), rest...)
	}
	x.locs = rest
	x.lo = m.Index + 1
	k := sort.Search(len(x.terms), func(j int) bool { return x.terms[j].first > x.lo }) - 1
	x.terms = x.terms[max(k, 0):]
}

// entryCache holds a contiguous run of the newest entries, so the leader
// reads what it just wrote without touching files. It always holds every
// entry not yet written to a file (the Log evicts only written ones), and
// beyond that up to a byte bound. It is a ring, so steady appends and
// evictions move no memory.
type entryCache struct {
	buf   []pb.Entry // ring storage; entry k of the run is at (head+k) % len(buf)
	head  int
	n     int
	bytes uint64
}

func (c *entryCache) at(k int) *pb.Entry { return &c.buf[(c.head+k)%len(c.buf)] }

func (c *entryCache) first() pb.Index { return c.at(0).Index }

func (c *entryCache) last() pb.Index { return c.at(c.n - 1).Index }

func (c *entryCache) clear() {
	for k := 0; k < c.n; k++ {
		*c.at(k) = pb.Entry{} // release data
	}
	c.head, c.n, c.bytes = 0, 0, 0
}

// truncateFrom drops cached entries i and after.
func (c *entryCache) truncateFrom(i pb.Index) {
	if c.n == 0 || i > c.last() {
		return
	}
	if i <= c.first() {
		c.clear()
		return
	}
	keep := int(i - c.first())
	for k := keep; k < c.n; k++ {
		c.bytes -= c.at(k).Size()
		*c.at(k) = pb.Entry{}
	}
	c.n = keep
}

// add appends e, which must follow the cached run (or starts a new one).
func (c *entryCache) add(e pb.Entry) {
	if c.n > 0 && e.Index != c.last()+1 {
		c.clear()
	}
	if c.n == len(c.buf) {
		grown := make([]pb.Entry, max(64, 2*len(c.buf)))
		for k := 0; k < c.n; k++ {
			grown[k] = *c.at(k)
		}
		c.buf, c.head = grown, 0
	}
	*c.at(c.n) = e
	c.n++
	c.bytes += e.Size()
}

// dropFront evicts the oldest cached entry.
func (c *entryCache) dropFront() {
	e := c.at(0)
	c.bytes -= e.Size()
	*e = pb.Entry{} // release its data
	c.head = (c.head + 1) % len(c.buf)
	c.n--
}

// dropThrough evicts entries up to and including i.
func (c *entryCache) dropThrough(i pb.Index) {
	for c.n > 0 && c.first() <= i {
		c.dropFront()
	}
}

// appendRange appends cached entries [lo, hi) to out.
func (c *entryCache) appendRange(out []pb.Entry, lo, hi pb.Index) []pb.Entry {
	for k := int(lo - c.first()); k < int(hi-c.first()); k++ {
		out = append(out, *c.at(k))
	}
	return out
}
