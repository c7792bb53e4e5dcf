package raft

import (
	"errors"
	"fmt"

	pb "github.com/raftkv/raftkv/raftpb"
)

// ErrCompacted is returned by Storage when the requested index is covered by
// a snapshot and its entry is gone.
var ErrCompacted = errors.New("raft: requested index is compacted")

// ErrUnavailable is returned by Storage when the requested index is past the
// end of the log.
var ErrUnavailable = errors.New("raft: requested entry is unavailable")

// Storage is the durable part of the log as the core reads it. The core
// never writes to it: the runtime writes what a Ready asks and then calls
// Advance, after which Storage must reflect those writes.
//
// FirstIndex-1 is the index of the latest snapshot (or 0); Term must answer
// for FirstIndex-1 too. Entries may return fewer entries than asked when
// maxBytes is reached, but always at least one if lo < hi.
type Storage interface {
	// InitialState returns the persisted hard state and the configuration
	// of the latest snapshot (the core replays configuration entries after it).
	InitialState() (pb.HardState, pb.ConfState, error)
	// Entries returns entries [lo, hi).
	Entries(lo, hi pb.Index, maxBytes uint64) ([]pb.Entry, error)
	// Term returns the term of the entry at i.
	Term(i pb.Index) (pb.Term, error)
	FirstIndex() pb.Index
	LastIndex() pb.Index
	// Snapshot returns the metadata of the latest durable snapshot.
	Snapshot() (pb.SnapshotMeta, error)
}

// MemoryStorage is a Storage held in memory, for tests and the simulator.
// It is not safe for concurrent use.
type MemoryStorage struct {
	hard pb.HardState
	snap pb.SnapshotMeta
	// ents[0] is a dummy entry at snap.Index with snap.Term.
	ents []pb.Entry
}

// NewMemoryStorage returns an empty MemoryStorage.
func NewMemoryStorage() *MemoryStorage {
	return &MemoryStorage{ents: make([]pb.Entry, 1)}
}

func (s *MemoryStorage) InitialState() (pb.HardState, pb.ConfState, error) {
	return s.hard, s.snap.Conf, nil
}

// SetHardState records the hard state.
func (s *MemoryStorage) SetHardState(h pb.HardState) { s.hard = h }

// HardState returns the recorded hard state.
func (s *MemoryStorage) HardState() pb.HardState { return s.hard }

func (s *MemoryStorage) offset() pb.Index { return s.ents[0].Index }

func (s *MemoryStorage) FirstIndex() pb.Index { return s.offset() + 1 }

func (s *MemoryStorage) LastIndex() pb.Index { return s.offset() + pb.Index(len(s.ents)) - 1 }

func (s *MemoryStorage) Term(i pb.Index) (pb.Term, error) {
	off := s.offset()
	if i < off {
		return 0, ErrCompacted
	}
	if i > s.LastIndex() {
		return 0, ErrUnavailable
	}
	return s.ents[i-off].Term, nil
}

func (s *MemoryStorage) Entries(lo, hi pb.Index, maxBytes uint64) ([]pb.Entry, error) {
	off := s.offset()
	if lo <= off {
		return nil, ErrCompacted
	}
	if hi > s.LastIndex()+1 {
		return nil, fmt.Errorf("%w: entries [%d,%d) past last index %d", ErrUnavailable, lo, hi, s.LastIndex())
	}
	// Capped, so that a caller appending to the result cannot write into
	// the storage's spare capacity.
	ents := s.ents[lo-off : hi-off : hi-off]
	return limitSize(ents, maxBytes), nil
}

func (s *MemoryStorage) Snapshot() (pb.SnapshotMeta, error) { return s.snap, nil }

// Append writes entries, replacing any suffix of the log from ents[0].Index.
// Entries before FirstIndex are ignored. It returns an error if the entries
// would leave a gap.
func (s *MemoryStorage) Append(ents []pb.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	first := s.FirstIndex()
	if last := ents[len(ents)-1].Index; last < first {
		return nil
	}
	if ents[0].Index < first {
		ents = ents[first-ents[0].Index:]
	}
	off := s.offset()
	at := ents[0].Index - off
	if at > pb.Index(len(s.ents)) {
		return fmt.Errorf("raft: append at %d leaves a gap after last index %d", ents[0].Index, s.LastIndex())
	}
	if at == pb.Index(len(s.ents)) {
		// The common case, a plain append: amortised growth. Slices
		// handed out by Entries end at or before len, so they never see it.
		s.ents = append(s.ents, ents...)
		return nil
	}
	// Replacing a suffix: build a new array so that slices already handed
	// out keep the entries they were given.
	s.ents = append(s.ents[:at:at], ents...)
	return nil
}

// ApplySnapshot replaces the log with the snapshot's state.
func (s *MemoryStorage) ApplySnapshot(meta pb.SnapshotMeta) error {
	if meta.Index < s.snap.Index {
		return fmt.Errorf("raft: snapshot %d older than current %d", meta.Index, s.snap.Index)
	}
	s.snap = meta
	s.ents = []pb.Entry{{Index: meta.Index, Term: meta.Term}}
	return nil
}

// CreateSnapshot records a snapshot at i (which must be in the log) with
// configuration conf, and drops entries up to i.
func (s *MemoryStorage) CreateSnapshot(i pb.Index, conf pb.ConfState) error {
	if i <= s.snap.Index {
		return nil
	}
	if i > s.LastIndex() {
		return fmt.Errorf("raft: snapshot at %d past last index %d", i, s.LastIndex())
	}
	t, _ := s.Term(i)
	s.snap = pb.SnapshotMeta{Index: i, Term: t, Conf: conf}
	return s.Compact(i)
}

// Compact drops entries up to and including i, keeping i's term.
func (s *MemoryStorage) Compact(i pb.Index) error {
	off := s.offset()
	if i <= off {
		return nil
	}
	if i > s.LastIndex() {
		return fmt.Errorf("raft: compact %d past last index %d", i, s.LastIndex())
	}
	rest := make([]pb.Entry, 1, 1+len(s.ents)-int(i-off))
	rest[0] = pb.Entry{Index: i, Term: s.ents[i-off].Term}
	s.ents = append(rest, s.ents[i-off+1:]...)
	return nil
}

// limitSize returns the longest prefix of ents within maxBytes, but at least
// one entry.
func limitSize(ents []pb.Entry, maxBytes uint64) []pb.Entry {
	if len(ents) == 0 || maxBytes == 0 {
		return ents
	}
	size := ents[0].Size()
	for i := 1; i < len(ents); i++ {
		size += ents[i].Size()
		if size > maxBytes {
			return ents[:i]
		}
	}
	return ents
}
