package node

import (
	"fmt"
	"time"

	"github.com/raftkv/raftkv/driver"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// storageView is the core's read view: the WAL for entries, the snapshot
// store for the newest snapshot (which may be newer than the point the log
// was compacted to: a margin of log is kept behind it for slow followers).
type storageView struct{ n *Node }

func (s storageView) InitialState() (pb.HardState, pb.ConfState, error) {
	return s.n.cfg.Log.InitialState()
}
func (s storageView) Entries(lo, hi pb.Index, maxBytes uint64) ([]pb.Entry, error) {
	return s.n.cfg.Log.Entries(lo, hi, maxBytes)
}
func (s storageView) Term(i pb.Index) (pb.Term, error) { return s.n.cfg.Log.Term(i) }
func (s storageView) FirstIndex() pb.Index             { return s.n.cfg.Log.FirstIndex() }
func (s storageView) LastIndex() pb.Index              { return s.n.cfg.Log.LastIndex() }
func (s storageView) Snapshot() (pb.SnapshotMeta, error) {
	m, ok := s.n.cfg.Snapshots.Latest()
	if !ok {
		return pb.SnapshotMeta{}, raft.ErrUnavailable
	}
	return m, nil
}

// persistLoop persists Readys in order, then releases the messages that
// waited for durability and hands committed entries to the applier. It
// runs apart from the run goroutine so that a follower keeps answering
// heartbeats while an fsync is pending.
func (n *Node) persistLoop() {
	defer n.wg.Done()
	defer close(n.applyc)
	for rd := range n.persistc {
		n.persistAt.Store(time.Now().UnixNano())
		err := driver.Persist(n.cfg.Log, &rd)
		n.persistAt.Store(0)
		if err != nil {
			n.fatal(fmt.Errorf("node: %w", err))
			return
		}
		n.send(rd.MessagesAfterPersist)
		if rd.Snapshot != nil || len(rd.CommittedEntries) > 0 {
			select {
			case n.applyc <- applyTask{snap: rd.Snapshot, ents: rd.CommittedEntries}:
			case <-n.stopc:
				return
			}
		}
		select {
		case n.advc <- rd.ID:
		case <-n.stopc:
			return
		}
	}
}
