package raft

import (
	"errors"
	"fmt"

	pb "github.com/raftkv/raftkv/raftpb"
)

// raftLog is the log as the core sees it: a durable prefix in Storage and an
// unstable suffix held in memory until a Ready carrying it is advanced.
//
// Invariants: applied <= applying <= committed <= lastIndex();
// unstable.offset <= storage.LastIndex()+1 (the unstable part may replace a
// stale durable suffix); committed entries are never truncated.
type raftLog struct {
	storage  Storage
	unstable unstable

	committed pb.Index
	// applying is the last committed index handed out in a Ready; applied
	// the last one acknowledged by Advance.
	applying pb.Index
	applied  pb.Index

	maxApplyBytes uint64

	// err is the first failed storage read (other than of a compacted
	// entry). Once set the core has stopped: see Raft.Err.
	err error
}

func newLog(s Storage, maxApplyBytes uint64) (*raftLog, error) {
	first, last := s.FirstIndex(), s.LastIndex()
	if first == 0 || last+1 < first {
		return nil, fmt.Errorf("raft: storage has first index %d and last index %d", first, last)
	}
	l := &raftLog{storage: s, maxApplyBytes: maxApplyBytes}
	l.unstable.offset = last + 1
	l.unstable.offsetInProgress = last + 1
	l.committed = first - 1
	l.applying = first - 1
	l.applied = first - 1
	return l, nil
}

func (l *raftLog) firstIndex() pb.Index {
	if l.unstable.snapshot != nil {
		return l.unstable.snapshot.Index + 1
	}
	return l.storage.FirstIndex()
}

func (l *raftLog) lastIndex() pb.Index {
	if n := len(l.unstable.entries); n > 0 {
		return l.unstable.offset + pb.Index(n) - 1
	}
	if l.unstable.snapshot != nil {
		return l.unstable.snapshot.Index
	}
	return l.storage.LastIndex()
}

// term returns the term of entry i, or ErrCompacted/ErrUnavailable.
func (l *raftLog) term(i pb.Index) (pb.Term, error) {
	if t, ok := l.unstable.term(i); ok {
		return t, nil
	}
	if i+1 < l.firstIndex() {
		return 0, ErrCompacted
	}
	if i > l.lastIndex() {
		return 0, ErrUnavailable
	}
	if i >= l.unstable.offset {
		return 0, ErrUnavailable
	}
	t, err := l.storage.Term(i)
	if err != nil && !errors.Is(err, ErrCompacted) {
		// In range, the storage must answer: it cannot, so nothing the
		// core would decide from here can be trusted.
		return 0, l.fail(fmt.Errorf("term of %d: %w", i, err))
	}
	return t, err
}

// fail records a failed storage read and returns the core's failure.
func (l *raftLog) fail(err error) error {
	if l.err == nil {
		l.err = fmt.Errorf("%w: %w", ErrStorageFailed, err)
	}
	return l.err
}

// termOrZero is for places where a missing term simply does not match.
func (l *raftLog) termOrZero(i pb.Index) pb.Term {
	t, err := l.term(i)
	if err != nil {
		return 0
	}
	return t
}

func (l *raftLog) lastTerm() pb.Term {
	t, err := l.term(l.lastIndex())
	if err != nil {
		if l.err != nil {
			return 0 // the core has failed; nothing it computes now leaves it
		}
		panic(fmt.Sprintf("raft: term of last index %d: %v", l.lastIndex(), err))
	}
	return t
}

func (l *raftLog) matchTerm(i pb.Index, t pb.Term) bool {
	lt, err := l.term(i)
	return err == nil && lt == t
}

// isUpToDate is the election restriction (§5.4.1): a log ending in
// (lastIndex, lastTerm) is at least as up to date as ours.
func (l *raftLog) isUpToDate(lastIndex pb.Index, lastTerm pb.Term) bool {
	lt := l.lastTerm()
	return lastTerm > lt || (lastTerm == lt && lastIndex >= l.lastIndex())
}

// append adds entries after lastIndex (or replaces a suffix) and returns the
// new last index. Committed entries are never replaced.
func (l *raftLog) append(ents ...pb.Entry) pb.Index {
	if len(ents) == 0 {
		return l.lastIndex()
	}
	if after := ents[0].Index - 1; after < l.committed {
		panic(fmt.Sprintf("raft: append after %d would overwrite committed %d", after, l.committed))
	}
	l.unstable.truncateAndAppend(ents)
	return l.lastIndex()
}

// findConflict returns the index of the first entry of ents that is not in
// the log (differs in term, or is past the end), or 0 when all are present.
// Entries that match are never truncated (Figure 2, receiver rule 3).
func (l *raftLog) findConflict(ents []pb.Entry) pb.Index {
	for i := range ents {
		if !l.matchTerm(ents[i].Index, ents[i].Term) {
			return ents[i].Index
		}
	}
	return 0
}

// findConflictByTerm returns the largest index <= i whose term is <= t, and
// that term. Both sides use it to skip a whole term per round trip when
// logs diverge.
func (l *raftLog) findConflictByTerm(i pb.Index, t pb.Term) (pb.Index, pb.Term) {
	for ; i > 0; i-- {
		ti, err := l.term(i)
		if err != nil {
			return i, 0 // compacted: the caller probes at the snapshot
		}
		if ti <= t {
			return i, ti
		}
	}
	return 0, 0
}

// commitTo raises the commit index; it never lowers it.
func (l *raftLog) commitTo(i pb.Index) bool {
	if i <= l.committed {
		return false
	}
	if i > l.lastIndex() {
		panic(fmt.Sprintf("raft: commit %d past last index %d", i, l.lastIndex()))
	}
	l.committed = i
	return true
}

// slice returns entries [lo, hi) up to maxBytes (at least one entry).
func (l *raftLog) slice(lo, hi pb.Index, maxBytes uint64) ([]pb.Entry, error) {
	if lo >= hi {
		return nil, nil
	}
	if lo < l.firstIndex() {
		return nil, ErrCompacted
	}
	if hi > l.lastIndex()+1 {
		return nil, fmt.Errorf("raft: slice [%d,%d) past last index %d", lo, hi, l.lastIndex())
	}
	var out []pb.Entry
	if lo < l.unstable.offset {
		stHi := min(hi, l.unstable.offset)
		ents, err := l.storage.Entries(lo, stHi, maxBytes)
		if errors.Is(err, ErrCompacted) {
			return nil, err
		} else if err != nil {
			return nil, l.fail(fmt.Errorf("entries [%d,%d): %w", lo, stHi, err))
		}
		if pb.Index(len(ents)) < stHi-lo || hi <= l.unstable.offset {
			return ents, nil // size limit reached, or nothing unstable wanted
		}
		out = ents
		lo = l.unstable.offset
	}
	uns := l.unstable.slice(lo, hi)
	if len(out) == 0 {
		return limitSize(uns, maxBytes), nil
	}
	size := uint64(0)
	for i := range out {
		size += out[i].Size()
	}
	for i := range uns {
		size += uns[i].Size()
		if maxBytes > 0 && size > maxBytes {
			uns = uns[:i]
			break
		}
	}
	// Copy: appending to a storage slice must not write into storage.
	res := make([]pb.Entry, 0, len(out)+len(uns))
	return append(append(res, out...), uns...), nil
}

// nextUnstable returns the entries not yet handed out for persistence.
func (l *raftLog) nextUnstable() []pb.Entry {
	u := &l.unstable
	n := len(u.entries)
	return u.entries[u.offsetInProgress-u.offset : n : n] // capped: a caller's append must copy
}

// nextCommitted returns committed entries not yet handed out, limited to
// those already handed out for persistence (so the runtime persists an
// entry before it applies it) and to maxApplyBytes.
func (l *raftLog) nextCommitted() []pb.Entry {
	hi := min(l.committed, l.unstable.offsetInProgress-1)
	if l.unstable.snapshotInProgress || l.unstable.snapshot != nil {
		return nil // the snapshot must be installed first
	}
	if l.applying >= hi {
		return nil
	}
	lo := l.applying + 1
	if mutated(MutationApplyTwice) && lo > l.firstIndex() {
		lo--
	}
	ents, err := l.slice(lo, hi+1, l.maxApplyBytes)
	if err != nil {
		if l.err != nil {
			return nil // the core has failed (Raft.Err)
		}
		panic(fmt.Sprintf("raft: committed entries [%d,%d]: %v", lo, hi, err))
	}
	return ents
}

func (l *raftLog) hasNextCommitted() bool {
	if l.unstable.snapshot != nil {
		return false
	}
	return l.applying < min(l.committed, l.unstable.offsetInProgress-1)
}

// restore resets the log to a snapshot (§7, InstallSnapshot receiver rule 7).
func (l *raftLog) restore(s pb.SnapshotMeta) {
	l.committed = s.Index
	l.unstable.restore(s)
}

// stableTo records that entries up to i (with term t) are durable.
func (l *raftLog) stableTo(i pb.Index, t pb.Term) { l.unstable.stableTo(i, t) }

// stableSnapTo records that the snapshot at i is durable.
func (l *raftLog) stableSnapTo(i pb.Index) {
	l.unstable.stableSnapTo(i)
	if l.applying < i {
		l.applying, l.applied = i, i
	}
}
