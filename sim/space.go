package sim

import (
	"errors"
	"fmt"

	pb "github.com/raftkv/raftkv/raftpb"
)

// A full disk, as the node meets it (node/space.go): the WAL store's file
// system gets a capacity a little above what it uses, so the next segment
// cannot be prepared; the log then takes entries only into the rest of its
// current segment. A replica whose log is short of room drops
// AppendEntries it cannot store (the leader retries) and refuses
// proposals that do not fit; an entry the gate let through that still
// does not fit (a new leader's empty entry, a configuration change) fails
// its Save, which crashes the replica like any disk fault. A write that
// fails with ENOSPC (FailNextWrite) is fatal to the replica too. The
// capacity is lifted again at random and when the run heals.

// errNoSpace: a proposal refused because the replica's disk is full.
var errNoSpace = errors.New("sim: no disk space for the proposal")

// spaceMarginBytes is kept free of gated entries, for those that are not.
const spaceMarginBytes = 64

// spaceStore is a store whose disk can fill (the WAL store).
type spaceStore interface {
	FillDisk(slack int64)
	FreeDisk()
	DiskFull() bool
	// EntryRoom is storage.Log.EntryRoom: the bytes of entries that still
	// fit, or a very large number while there is space.
	EntryRoom() int64
	RetrySpace()
}

// toggleDiskFull fills the disk of a random replica, or frees it if full.
func (s *Sim) toggleDiskFull() {
	r := s.randomUp()
	if r == nil {
		return
	}
	d, ok := r.store.(spaceStore)
	if !ok {
		return
	}
	if d.DiskFull() {
		d.FreeDisk()
		s.trace.add(event{kind: evNote, node: r.id, text: "disk space freed"})
		return
	}
	slack := int64(s.rng.IntN(4096))
	d.FillDisk(slack)
	s.trace.add(event{kind: evSyncFail, node: r.id, text: fmt.Sprintf("segment preparation (disk full, %d bytes left)", slack)})
}

// freeDisks lifts every capacity (the liveness phase).
func (s *Sim) freeDisks() {
	for _, r := range s.reps {
		if d, ok := r.store.(spaceStore); ok && d.DiskFull() {
			d.FreeDisk()
		}
	}
}

// recoverFailedForSpace handles a restart that failed because the disk is
// full (a snapshot file newer than the log must be installed in it, and
// there is no room): the replica stays down and tries again later, as an
// operator would restart it after freeing space. False: not that case.
func (s *Sim) recoverFailedForSpace(r *replica, err error) bool {
	d, ok := r.store.(spaceStore)
	if !ok || !d.DiskFull() || !isDiskFault(err) {
		return false
	}
	s.trace.add(event{kind: evNote, node: r.id, text: "cannot restart, disk full: " + err.Error()})
	if err := r.store.Crash(); err != nil {
		s.failf("replica %d: crash: %v", r.id, err)
		return true
	}
	r.downUntil = s.now + 1 + uint64(s.rng.IntN(s.p.downTicksMax))
	return true
}

// entryBytes bounds the log bytes of entries of these sizes.
func entryBytes(sizes ...int) int64 {
	var n int64
	for _, sz := range sizes {
		n += int64(sz) + 48
	}
	return n
}

// roomFor reports whether r's log takes entries of n bytes now. Like the
// node's periodic retry, a log short of room on a disk no longer full is
// asked to prepare its next segment again (a retry may have failed for
// another fault).
func roomFor(r *replica, n int64) bool {
	d, ok := r.store.(spaceStore)
	if !ok {
		return true
	}
	if n+spaceMarginBytes <= d.EntryRoom() {
		return true
	}
	if !d.DiskFull() {
		d.RetrySpace()
	}
	return n+spaceMarginBytes <= d.EntryRoom()
}

// admitMessage drops an AppendEntries whose entries r cannot store.
func (s *Sim) admitMessage(r *replica, m pb.Message) bool {
	if m.Type != pb.MsgAppendEntries || len(m.Entries) == 0 {
		return true
	}
	// As the node: entries the log holds already cost nothing to ack.
	var sizes []int
	last := r.store.LastIndex()
	for i := range m.Entries {
		e := &m.Entries[i]
		if t, err := r.store.Term(e.Index); e.Index <= last && err == nil && t == e.Term {
			continue
		}
		sizes = append(sizes, len(e.Data))
	}
	if len(sizes) == 0 || roomFor(r, entryBytes(sizes...)) {
		return true
	}
	s.trace.add(event{kind: evDrop, msg: m, text: "no disk space"})
	return false
}

// admitProposal refuses a proposal r's log has no room for.
func (s *Sim) admitProposal(r *replica, data [][]byte) bool {
	sizes := make([]int, len(data))
	for i := range data {
		sizes[i] = len(data[i])
	}
	if roomFor(r, entryBytes(sizes...)) {
		return true
	}
	s.trace.add(event{kind: evNote, node: r.id, text: "proposal refused: no disk space"})
	return false
}
