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
// heartbeats while an fsync is pending. Readys that queued up while the
// previous fsync ran are written together and covered by one fsync (group
// commit across Readys).
func (n *Node) persistLoop() {
	defer n.wg.Done()
	defer close(n.applyc)
	batch := make([]raft.Ready, 0, n.cfg.MaxOutstandingReadys)
	for rd := range n.persistc {
		batch = append(batch[:0], rd)
	drain:
		for len(batch) < cap(batch) {
			select {
			case more, ok := <-n.persistc:
				if !ok {
					break drain
				}
				batch = append(batch, more)
			default:
				break drain
			}
		}
		if err := n.persistBatch(batch); err != nil {
			n.fatal(fmt.Errorf("node: %w", err))
			return
		}
		for i := range batch {
			if !n.afterPersist(&batch[i]) {
				return
			}
		}
	}
}

func (n *Node) persistBatch(batch []raft.Ready) error {
	n.persistAt.Store(time.Now().UnixNano())
	defer n.persistAt.Store(0)
	sync := false
	for i := range batch {
		if err := driver.Write(n.cfg.Log, &batch[i]); err != nil {
			return err
		}
		n.space.saved(&batch[i])
		sync = sync || batch[i].MustSync
	}
	if !sync {
		return nil
	}
	if err := n.cfg.Log.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

// afterPersist does the steps of the persistence contract that follow
// durability for one Ready; false means the node is stopping.
func (n *Node) afterPersist(rd *raft.Ready) bool {
	n.send(rd.MessagesAfterPersist)
	if rd.Snapshot != nil || len(rd.CommittedEntries) > 0 {
		select {
		case n.applyc <- applyTask{snap: rd.Snapshot, ents: rd.CommittedEntries}:
		case <-n.stopc:
			return false
		}
	}
	select {
	case n.advc <- rd.ID:
	case <-n.stopc:
		return false
	}
	return true
}
