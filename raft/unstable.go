package raft

import pb "github.com/raftkv/raftkv/raftpb"

// unstable is the suffix of the log (and possibly a snapshot) not yet known
// to be durable. entries[i] has index offset+i. Entries before
// offsetInProgress have been handed out in a Ready and are being persisted.
type unstable struct {
	snapshot           *pb.SnapshotMeta
	snapshotInProgress bool
	entries            []pb.Entry
	offset             pb.Index
	offsetInProgress   pb.Index
}

func (u *unstable) term(i pb.Index) (pb.Term, bool) {
	if i < u.offset {
		if u.snapshot != nil && u.snapshot.Index == i {
			return u.snapshot.Term, true
		}
		return 0, false
	}
	last := u.offset + pb.Index(len(u.entries)) - 1
	if len(u.entries) == 0 || i > last {
		return 0, false
	}
	return u.entries[i-u.offset].Term, true
}

func (u *unstable) slice(lo, hi pb.Index) []pb.Entry {
	return u.entries[lo-u.offset : hi-u.offset : hi-u.offset]
}

func (u *unstable) truncateAndAppend(ents []pb.Entry) {
	from := ents[0].Index
	switch {
	case from == u.offset+pb.Index(len(u.entries)):
		u.entries = append(u.entries, ents...)
	case from <= u.offset:
		// Replaces everything unstable, and possibly a durable suffix.
		u.entries = append([]pb.Entry(nil), ents...)
		u.offset = from
		u.offsetInProgress = from
	default:
		// Keep [offset, from), then the new entries. Copy so that slices
		// already handed out in a Ready are not overwritten.
		kept := u.entries[:from-u.offset]
		u.entries = append(append(make([]pb.Entry, 0, len(kept)+len(ents)), kept...), ents...)
		u.offsetInProgress = min(u.offsetInProgress, from)
	}
}

// acceptInProgress marks everything currently unstable as handed out.
func (u *unstable) acceptInProgress() {
	u.offsetInProgress = u.offset + pb.Index(len(u.entries))
	if u.snapshot != nil {
		u.snapshotInProgress = true
	}
}

func (u *unstable) stableTo(i pb.Index, t pb.Term) {
	gt, ok := u.term(i)
	if !ok || gt != t || i < u.offset {
		// Replaced since it was handed out, or already stable.
		return
	}
	n := int(i + 1 - u.offset)
	// Keep the rest of the backing array: appends go past everything ever
	// handed out, so Readys still being applied are never overwritten, and
	// the array goes once an append outgrows it.
	u.entries = u.entries[n:]
	u.offset = i + 1
	u.offsetInProgress = max(u.offsetInProgress, u.offset)
}

func (u *unstable) stableSnapTo(i pb.Index) {
	if u.snapshot != nil && u.snapshot.Index == i {
		u.snapshot = nil
		u.snapshotInProgress = false
	}
}

func (u *unstable) restore(s pb.SnapshotMeta) {
	u.offset = s.Index + 1
	u.offsetInProgress = u.offset
	u.entries = nil
	u.snapshot = &s
	u.snapshotInProgress = false
}
