package storage

import (
	"fmt"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// The raft.Storage side of the Log. Reads reflect every Save, synced or
// not (the runtime Syncs before it Advances the core). They hold mu, also
// while reading a file: reads from files are the rare case (a follower far
// behind), and it keeps segment removal simple.

// InitialState returns the hard state and the configuration of the latest
// snapshot marker.
func (l *Log) InitialState() (pb.HardState, pb.ConfState, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usableLocked(); err != nil {
		return pb.HardState{}, pb.ConfState{}, err
	}
	return l.hard, l.idx.snap.Conf, nil
}

// FirstIndex is the snapshot index + 1.
func (l *Log) FirstIndex() pb.Index {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.idx.snap.Index + 1
}

func (l *Log) LastIndex() pb.Index {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.idx.last()
}

// Snapshot returns the latest snapshot marker (from Save or Compact).
func (l *Log) Snapshot() (pb.SnapshotMeta, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usableLocked(); err != nil {
		return pb.SnapshotMeta{}, err
	}
	return l.idx.snap, nil
}

// Term answers for FirstIndex-1 too.
func (l *Log) Term(i pb.Index) (pb.Term, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usableLocked(); err != nil {
		return 0, err
	}
	if i < l.idx.snap.Index {
		return 0, raft.ErrCompacted
	}
	t, ok := l.idx.termAt(i)
	if !ok {
		return 0, raft.ErrUnavailable
	}
	return t, nil
}

// entryOverhead is what raftpb counts for an entry beside its data.
var entryOverhead = (&pb.Entry{}).Size()

// Entries returns entries [lo, hi), at most maxBytes of them by
// Entry.Size (0: no limit), but at least one when lo < hi. Data of the
// returned entries must not be modified.
func (l *Log) Entries(lo, hi pb.Index, maxBytes uint64) ([]pb.Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usableLocked(); err != nil {
		return nil, err
	}
	switch {
	case lo <= l.idx.snap.Index:
		return nil, raft.ErrCompacted
	case hi > l.idx.last()+1:
		return nil, fmt.Errorf("%w: entries [%d,%d) past last index %d", raft.ErrUnavailable, lo, hi, l.idx.last())
	case lo > hi:
		return nil, fmt.Errorf("wal: entries [%d,%d): lo > hi", lo, hi)
	}
	hi = l.limitLocked(lo, hi, maxBytes)
	out := make([]pb.Entry, 0, hi-lo)
	fileHi := hi
	if l.cache.n > 0 {
		fileHi = min(hi, max(lo, l.cache.first()))
	}
	out, err := l.readEntriesLocked(out, lo, fileHi)
	if err != nil {
		return nil, err
	}
	if fileHi < hi {
		out = l.cache.appendRange(out, fileHi, hi)
	}
	return out, nil
}

// limitLocked returns the end of the longest run from lo within maxBytes
// (at least one entry), computed from the index alone: the same answer as
// raft's limitSize on the entries themselves.
func (l *Log) limitLocked(lo, hi pb.Index, maxBytes uint64) pb.Index {
	if maxBytes == 0 || lo == hi {
		return hi
	}
	size := uint64(l.idx.loc(lo).dataLen) + entryOverhead
	for i := lo + 1; i < hi; i++ {
		size += uint64(l.idx.loc(i).dataLen) + entryOverhead
		if size > maxBytes {
			return i
		}
	}
	return hi
}

// readEntriesLocked appends entries [lo, hi) read from segment files, one
// read per run of entries in the same segment. Every record is checked again
// on the way in: data is verified both when recovered and when served.
func (l *Log) readEntriesLocked(out []pb.Entry, lo, hi pb.Index) ([]pb.Entry, error) {
	for lo < hi {
		seq := l.idx.loc(lo).seq
		end := lo + 1
		for end < hi && l.idx.loc(end).seq == seq {
			end++
		}
		var err error
		if out, err = l.readRunLocked(out, lo, end); err != nil {
			return nil, err
		}
		lo = end
	}
	return out, nil
}

func (l *Log) readRunLocked(out []pb.Entry, lo, hi pb.Index) ([]pb.Entry, error) {
	first, last := l.idx.loc(lo), l.idx.loc(hi-1)
	s, err := l.segmentLocked(first.seq)
	if err != nil {
		return nil, err
	}
	start := int64(first.off)
	end := int64(last.off) + int64(entryRecordBytes(l.idx.term(hi-1), hi-1, int(last.dataLen)))
	buf := make([]byte, end-start)
	if _, err := s.f.ReadAt(buf, start); err != nil {
		l.failLocked(fmt.Errorf("read %s at %d: %w", s.path, start, err))
		return nil, l.err
	}
	for i := lo; i < hi; i++ {
		loc := l.idx.loc(i)
		rel := int64(loc.off) - start
		_, payload, _, err := decodeRecord(buf[rel:], recordPos(loc.seq, int64(loc.off)))
		var e pb.Entry
		if err == nil {
			e, err = pb.DecodeEntry(payload)
		}
		if err == nil && (e.Index != i || e.Term != l.idx.term(i)) {
			err = fmt.Errorf("record holds entry %d/%d, the index says %d/%d", e.Index, e.Term, i, l.idx.term(i))
		}
		if err != nil {
			// Synced data changed under us: stop everything.
			l.failLocked(corruptf(s.path, int64(loc.off), "reading entry %d: %v", i, err))
			return nil, l.err
		}
		out = append(out, e)
	}
	return out, nil
}

// segmentLocked returns segment seq with a handle open for reading.
func (l *Log) segmentLocked(seq uint32) (*segment, error) {
	k := int(seq) - int(l.segs[0].seq)
	if k < 0 || k >= len(l.segs) || !l.segs[k].onDisk {
		return nil, fmt.Errorf("wal: segment %d is not available (bug: index points at it)", seq)
	}
	s := l.segs[k]
	if s.f == nil {
		f, err := l.fs.Open(s.path)
		if err != nil {
			return nil, fmt.Errorf("wal: open %s: %w", s.path, err)
		}
		s.f = f
	}
	return s, nil
}
