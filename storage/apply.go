package storage

import (
	"errors"
	"fmt"

	pb "github.com/raftkv/raftkv/raftpb"
)

// apply replays one record that decoded with a good checksum. An error
// here means the record is impossible where it stands (a bug or a lost
// segment), which recovery reports as corruption wherever it is.
func (r *replayer) apply(s *segment, rec *scanned, payload []byte) error {
	off, typ := int64(rec.off), rec.typ
	switch {
	case r.sealed:
		return fmt.Errorf("record of type %d after the segment's seal", typ)
	case off == 0 && typ != recSegmentHeader:
		return fmt.Errorf("segment starts with a record of type %d, not a header", typ)
	case off != 0 && typ == recSegmentHeader:
		return errors.New("segment header inside the segment")
	}
	switch typ {
	case recSegmentHeader:
		return r.applyHeader(s, off, payload)
	case recEntry:
		return r.applyEntry(s, off, rec.index, rec.term, rec.size)
	case recHardState:
		hs, err := pb.DecodeHardState(payload)
		r.hard = hs
		return err
	case recSnapshot:
		m, err := pb.DecodeSnapshotMeta(payload)
		if err == nil && m.Index < r.idx.snap.Index {
			err = fmt.Errorf("installed snapshot %d older than snapshot %d", m.Index, r.idx.snap.Index)
		}
		r.idx.reset(m)
		return err
	case recCompact:
		m, err := pb.DecodeSnapshotMeta(payload)
		if err != nil {
			return err
		}
		return r.applyCompact(m)
	case recSeal:
		next, err := decodeSeal(payload)
		if err == nil && next != s.seq+1 {
			err = fmt.Errorf("seal names successor %d, not %d", next, s.seq+1)
		}
		r.sealed = true
		return err
	}
	return fmt.Errorf("unknown record type %d", typ)
}

// applyHeader checks a segment header against the file's name. The first
// segment's header sets the starting state; every later one must agree with
// the state its predecessors replayed to, since it was written from it.
func (r *replayer) applyHeader(s *segment, off int64, payload []byte) error {
	h, err := decodeSegmentHeader(payload)
	switch {
	case err != nil:
		return err
	case h.seq != s.seq || h.first != s.first:
		return fmt.Errorf("header names segment %d from %d, the file name says %d from %d", h.seq, h.first, s.seq, s.first)
	case h.first <= h.snap.Index:
		return fmt.Errorf("segment starts at %d, inside snapshot %d", h.first, h.snap.Index)
	}
	r.headerEnd = off + recordHeaderBytes + int64(len(payload))
	if !r.started {
		r.started = true
		r.hard = h.hard
		r.idx.snap = h.snap
		r.idx.restartAt(h.first) // entries below first may be gone; finish checks a snapshot covers them
		return nil
	}
	switch {
	case h.hard != r.hard:
		return fmt.Errorf("header hard state %+v, the log before says %+v", h.hard, r.hard)
	case h.snap.Index != r.idx.snap.Index || h.snap.Term != r.idx.snap.Term:
		return fmt.Errorf("header snapshot %d/%d, the log before says %d/%d",
			h.snap.Index, h.snap.Term, r.idx.snap.Index, r.idx.snap.Term)
	case h.first > r.idx.last()+1:
		return fmt.Errorf("segment starts at %d, past the last entry %d", h.first, r.idx.last())
	}
	return nil
}

// applyEntry mirrors Save: an entry at or below the last index replaces the
// suffix from it, so an overwritten entry never comes back.
func (r *replayer) applyEntry(s *segment, off int64, i pb.Index, term pb.Term, dataLen uint32) error {
	switch {
	case i <= r.idx.snap.Index:
		return fmt.Errorf("entry %d at or below snapshot %d", i, r.idx.snap.Index)
	case i < r.idx.lo:
		// Only while the entries below lo are in deleted segments: a
		// replacement reaching below what is loaded.
		r.idx.restartAt(i)
	case i > r.idx.last()+1:
		return fmt.Errorf("entry %d leaves a gap after entry %d", i, r.idx.last())
	case i <= r.idx.last():
		r.idx.truncateFrom(i)
	}
	if prev, ok := r.idx.termAt(i - 1); ok && term < prev {
		return fmt.Errorf("entry %d has term %d below the previous entry's %d", i, term, prev)
	}
	r.idx.add(term, entryLoc{seq: s.seq, off: uint32(off), dataLen: dataLen})
	return nil
}

// applyCompact mirrors Compact. A marker not newer than the snapshot is a
// repeat and changes nothing.
func (r *replayer) applyCompact(m pb.SnapshotMeta) error {
	if m.Index <= r.idx.snap.Index {
		return nil
	}
	if m.Index > r.idx.last() {
		return fmt.Errorf("snapshot marker %d past the last entry %d", m.Index, r.idx.last())
	}
	if m.Index >= r.idx.lo {
		if t := r.idx.term(m.Index); t != m.Term {
			return fmt.Errorf("snapshot marker %d has term %d, the entry %d", m.Index, m.Term, t)
		}
	}
	r.idx.compact(m)
	return nil
}
