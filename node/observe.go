package node

import (
	"sync/atomic"

	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/transport"
)

// Read-only views for operators: metrics and the live view of the cluster
// (package server). Nothing here changes the node's behaviour; the
// counters are bumped where the events happen and read with atomics, so a
// scrape never waits for the run goroutine.

// Counters counts events since the node started.
type Counters struct {
	// LeaderChanges counts changes of the known leader to a new, known
	// leader (a member that loses its leader and finds the same one again
	// counts once more: the cluster was leaderless in between).
	LeaderChanges uint64
	// SnapshotsSent and SnapshotsSendFailed count InstallSnapshot
	// transfers this member (as leader) finished, by outcome.
	SnapshotsSent       uint64
	SnapshotsSendFailed uint64
	// SnapshotsReceived counts snapshots received from a leader and
	// stored durably.
	SnapshotsReceived uint64
	// MessagesDropped counts inbound Raft messages dropped because the
	// receive queue (DefaultRecvQueueLen) was full; Raft retransmits them.
	MessagesDropped uint64
	// CommitNoticesAtOnce counts the times this member, leading, sent a
	// new commit index on its own at once because writes were sparse;
	// CommitNoticesHeld the times it held one back for the next
	// AppendEntries, and CommitNoticesAfterDelay those of these that none
	// came for within the delay, so it went on its own (see commitnotice.go).
	CommitNoticesAtOnce, CommitNoticesHeld, CommitNoticesAfterDelay uint64
}

type counters struct {
	leaderChanges, snapsSent, snapsFailed, snapsReceived, dropped atomic.Uint64
	commitAtOnce, commitHeld, commitAfterDelay                    atomic.Uint64
}

// Counters returns the event counters.
func (n *Node) Counters() Counters {
	c := &n.counters
	return Counters{
		LeaderChanges:       c.leaderChanges.Load(),
		SnapshotsSent:       c.snapsSent.Load(),
		SnapshotsSendFailed: c.snapsFailed.Load(),
		SnapshotsReceived:   c.snapsReceived.Load(),
		MessagesDropped:     c.dropped.Load(),

		CommitNoticesAtOnce:     c.commitAtOnce.Load(),
		CommitNoticesHeld:       c.commitHeld.Load(),
		CommitNoticesAfterDelay: c.commitAfterDelay.Load(),
	}
}

// TransportStats returns the peer transport's counters; ok is false when
// the node runs without the TCP transport or has not started.
func (n *Node) TransportStats() (st transport.Stats, ok bool) {
	tr, isTCP := n.tr.(interface{ Stats() transport.Stats })
	if !isTCP {
		return transport.Stats{}, false
	}
	return tr.Stats(), true
}

// MaxLogTerms bounds one LogTerms call, so that a debugging request
// cannot make a member walk its whole log.
const MaxLogTerms = 1024

// LogWindow is a window of this member's durable log: the term of each
// entry in [From, From+len(Terms)).
type LogWindow struct {
	// FirstIndex and LastIndex bound the log on disk: entries before
	// FirstIndex were compacted into a snapshot.
	FirstIndex, LastIndex pb.Index
	From                  pb.Index
	Terms                 []pb.Term
}

// LogTerms returns the terms of up to max entries (at most MaxLogTerms)
// starting at from, clipped to the entries the log holds. from 0 means the
// last max entries. It reads the log store directly, which is safe for
// concurrent use (the persist goroutine writes it while the core reads).
func (n *Node) LogTerms(from pb.Index, max int) LogWindow {
	max = min(max, MaxLogTerms)
	w := LogWindow{FirstIndex: n.cfg.Log.FirstIndex(), LastIndex: n.cfg.Log.LastIndex()}
	if max <= 0 || w.LastIndex < w.FirstIndex {
		w.From = w.FirstIndex
		return w
	}
	if from == 0 && w.LastIndex >= pb.Index(max) {
		from = w.LastIndex - pb.Index(max) + 1
	}
	from = maxIndex(from, w.FirstIndex)
	w.From = from
	for i := from; i <= w.LastIndex && len(w.Terms) < max; i++ {
		t, err := n.cfg.Log.Term(i)
		if err != nil {
			break // compacted or truncated under us: return what we have
		}
		w.Terms = append(w.Terms, t)
	}
	return w
}

func maxIndex(a, b pb.Index) pb.Index {
	if a > b {
		return a
	}
	return b
}

// LatestSnapshot returns the meta of the newest durable snapshot.
func (n *Node) LatestSnapshot() (pb.SnapshotMeta, bool) { return n.cfg.Snapshots.Latest() }
