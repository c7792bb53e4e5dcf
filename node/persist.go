package node

import (
	"fmt"

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

// persistLoop is the persister: it makes the Readys the runtime hands out
// durable, in order, and reports each durable prefix. It runs apart from
// the run goroutine so that a follower keeps answering heartbeats while an
// fsync is pending. Readys that queued up while the previous fsync ran are
// written together and covered by one fsync (group commit across Readys);
// driver.PersistBatch sends their MessagesAfterPersist only after it.
func (n *Node) persistLoop() {
	defer n.life.wg.Done()
	batch := make([]raft.Ready, 0, n.cfg.MaxOutstandingReadys)
	for rd := range n.q.persistc {
		batch = append(batch[:0], rd)
	drain:
		for len(batch) < cap(batch) {
			select {
			case more, ok := <-n.q.persistc:
				if !ok {
					break drain
				}
				batch = append(batch, more)
			default:
				break drain
			}
		}
		if err := driver.PersistBatch(n.cfg.Log, batch, n.send); err != nil {
			n.fatal(fmt.Errorf("node: %w", err))
			return
		}
		for i := range batch {
			n.space.saved(&batch[i])
		}
		// Never blocks: at most MaxOutstandingReadys are outstanding.
		n.q.persistDonec <- batch[len(batch)-1].ID
		clear(batch) // drop references to entries
	}
}
