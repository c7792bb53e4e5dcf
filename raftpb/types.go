package raftpb

import "fmt"

// NodeID names a member of a cluster. Zero means "none".
type NodeID uint64

// Term is a Raft term (§5.1). Terms only ever increase on a server.
type Term uint64

// Index is a position in the replicated log, starting at 1. Zero means
// "before the first entry".
type Index uint64

// None is the NodeID that names nobody.
const None NodeID = 0

// EntryType says how an entry's Data is to be read.
type EntryType uint8

const (
	// EntryNormal carries an application command (or nothing: the no-op a
	// new leader appends, §5.4.2 and §8).
	EntryNormal EntryType = iota
	// EntryConfChange carries an encoded ConfState: the configuration that
	// takes effect as soon as the entry is appended (§6).
	EntryConfChange
)

func (t EntryType) String() string {
	switch t {
	case EntryNormal:
		return "normal"
	case EntryConfChange:
		return "conf"
	}
	return fmt.Sprintf("EntryType(%d)", uint8(t))
}

// Entry is one record of the replicated log.
type Entry struct {
	Term  Term
	Index Index
	Type  EntryType
	Data  []byte
}

// Size is the number of bytes the entry counts for in message and memory
// limits: its payload plus a fixed overhead for the header.
func (e *Entry) Size() uint64 { return uint64(len(e.Data)) + entryOverhead }

// entryOverhead approximates the encoded header of an entry.
const entryOverhead = 24

func (e Entry) String() string {
	return fmt.Sprintf("%d/%d %s %dB", e.Index, e.Term, e.Type, len(e.Data))
}

// HardState is the state a server must persist before answering any
// message of its term (Figure 2, "persistent state on all servers"); Commit
// is persisted too so that a restarted server can apply without waiting.
type HardState struct {
	Term   Term
	Vote   NodeID
	Commit Index
}

// IsEmpty reports whether the hard state is the zero value.
func (h HardState) IsEmpty() bool { return h == HardState{} }

// ConfState is a cluster configuration. When VotersOutgoing is not empty the
// configuration is joint (C_old,new in §6): decisions need a majority of
// Voters and, separately, a majority of VotersOutgoing.
//
// Invariants: the lists are sorted and free of duplicates; Learners and
// Voters are disjoint; a learner may still be in VotersOutgoing while it is
// being demoted.
type ConfState struct {
	Voters         []NodeID
	VotersOutgoing []NodeID
	Learners       []NodeID
	// Context is opaque to the core and travels with the configuration, in
	// the log and in snapshots: the runtime keeps members' addresses there.
	Context []byte
}

// Joint reports whether the configuration is C_old,new.
func (c ConfState) Joint() bool { return len(c.VotersOutgoing) > 0 }

// Equal reports whether the two configurations name the same sets.
func (c ConfState) Equal(o ConfState) bool {
	return idsEqual(c.Voters, o.Voters) && idsEqual(c.VotersOutgoing, o.VotersOutgoing) &&
		idsEqual(c.Learners, o.Learners)
}

// Contains reports whether id is a voter (in either half) or a learner.
func (c ConfState) Contains(id NodeID) bool {
	return hasID(c.Voters, id) || hasID(c.VotersOutgoing, id) || hasID(c.Learners, id)
}

// IsVoter reports whether id votes in either half of the configuration.
func (c ConfState) IsVoter(id NodeID) bool {
	return hasID(c.Voters, id) || hasID(c.VotersOutgoing, id)
}

func (c ConfState) String() string {
	if c.Joint() {
		return fmt.Sprintf("voters=%v&&%v learners=%v", c.Voters, c.VotersOutgoing, c.Learners)
	}
	return fmt.Sprintf("voters=%v learners=%v", c.Voters, c.Learners)
}

func idsEqual(a, b []NodeID) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func hasID(ids []NodeID, id NodeID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// SnapshotMeta describes a snapshot: the last entry it includes and the
// configuration as of that entry (§7, Figure 12). The snapshot's bytes
// travel and are stored apart from this description.
type SnapshotMeta struct {
	Index Index
	Term  Term
	Conf  ConfState
}

// IsEmpty reports whether the snapshot covers nothing.
func (s SnapshotMeta) IsEmpty() bool { return s.Index == 0 }
