package node

import (
	"fmt"
	"io"
	"sync/atomic"

	"github.com/raftkv/raftkv/driver"
	"github.com/raftkv/raftkv/internal/stagetrace"
	pb "github.com/raftkv/raftkv/raftpb"
)

// applyState is owned by the apply goroutine.
type applyState struct {
	// lastApplied is the last entry applied (index and term only).
	lastApplied pb.Entry
	// snap is the snapshot restored at start (New, before the goroutines).
	snap pb.SnapshotMeta
}

// proposal is one Propose call waiting for its outcome.
type proposal struct {
	data  []byte
	state atomic.Int32 // proposalWaiting -> Taken or Abandoned
	index pb.Index
	term  pb.Term
	done  chan outcome // buffered 1; written once
	sent  atomic.Bool
	// throughStepDown: a leader that steps down before the entry commits
	// keeps waiting for the entry at index (ProposeThroughStepDown).
	throughStepDown bool
}

const (
	proposalWaiting int32 = iota
	proposalTaken
	proposalAbandoned
)

type outcome struct {
	val any
	err error
}

func (p *proposal) finish(v any, err error) {
	if p.sent.CompareAndSwap(false, true) {
		p.done <- outcome{val: v, err: err}
	}
}

// appliedWaiter is a read barrier waiting for its index to be applied;
// done is buffered (1) and written once.
type appliedWaiter struct {
	index pb.Index
	done  chan error
}

// applyLoop applies the runtime's apply jobs in order. It is the only
// goroutine that calls the FSM.
func (n *Node) applyLoop() {
	defer n.life.wg.Done()
	defer close(n.q.snapc)
	for job := range n.q.applyc {
		if !n.apply(job) {
			return
		}
		// Never blocks: at most ApplyQueueLen jobs are outstanding.
		n.q.applyDonec <- struct{}{}
	}
}

// apply applies one job; false means a fatal error stopped the node.
func (n *Node) apply(job driver.ApplyJob) bool {
	if job.Snapshot != nil {
		if err := n.restoreSnapshot(*job.Snapshot); err != nil {
			n.fatal(err)
			return false
		}
		n.ap.lastApplied = pb.Entry{Index: job.Snapshot.Index, Term: job.Snapshot.Term}
		n.failFuturesThrough(job.Snapshot.Index)
		n.setApplied(job.Snapshot.Index)
	}
	var last pb.Entry
	for i := range job.Entries {
		e := &job.Entries[i]
		var res any
		switch e.Type {
		case pb.EntryNormal:
			if len(e.Data) > 0 {
				res = n.cfg.FSM.Apply(e.Index, e.Data)
			}
		case pb.EntryConfChange:
			cs, err := pb.DecodeConfState(e.Data)
			if err != nil {
				n.fatal(fmt.Errorf("node: configuration entry %d: %w", e.Index, err))
				return false
			}
			n.pub.appliedConf.Store(&cs)
			n.pub.appliedConfI.Store(uint64(e.Index))
		}
		n.resolve(e.Index, e.Term, res)
		last = *e
		n.ap.lastApplied = pb.Entry{Index: e.Index, Term: e.Term}
		n.pub.applied.Store(uint64(e.Index))
	}
	if last.Index > 0 {
		n.setApplied(last.Index)
		stagetrace.Mark(stagetrace.Applied, uint64(last.Index), 0)
	}
	if job.TakeSnapshot {
		n.takeSnapshot()
	}
	return true
}

func (n *Node) restoreSnapshot(meta pb.SnapshotMeta) error {
	_, rc, err := n.cfg.Snapshots.Open(meta.Index)
	if err != nil {
		return fmt.Errorf("node: open snapshot %d: %w", meta.Index, err)
	}
	defer rc.Close()
	if err := n.cfg.FSM.Restore(rc); err != nil {
		return fmt.Errorf("node: restore snapshot %d: %w", meta.Index, err)
	}
	cs := meta.Conf
	n.pub.appliedConf.Store(&cs)
	n.pub.appliedConfI.Store(uint64(meta.Index))
	return nil
}

// resolve hands the result to the proposal at index, if this member
// proposed it and the applied entry is the one it appended.
func (n *Node) resolve(index pb.Index, term pb.Term, res any) {
	n.shared.mu.Lock()
	p := n.shared.futures[index]
	delete(n.shared.futures, index)
	n.shared.mu.Unlock()
	if p == nil {
		return
	}
	if p.term != term {
		n.displaced(p)
		return
	}
	p.finish(res, nil)
}

// displaced answers a proposal whose entry another leader's took the
// place of: it was never committed.
func (n *Node) displaced(p *proposal) {
	if p.throughStepDown {
		p.finish(nil, &NotLeaderError{Leader: pb.NodeID(n.pub.lead.Load())})
		return
	}
	p.finish(nil, ErrUnknownOutcome)
}

// register records ps as the proposals of the entries at their indexes.
// A proposal still waiting at one (ProposeThroughStepDown's, kept past a
// step-down) had its entry truncated from this member's log, or this
// member could not have appended at that index again. That is no proof
// it will never commit: a member that still holds it may yet lead and
// commit it, so its outcome is unknown.
func (n *Node) register(ps ...*proposal) {
	var old []*proposal
	n.shared.mu.Lock()
	for _, p := range ps {
		if o := n.shared.futures[p.index]; o != nil {
			old = append(old, o)
		}
		n.shared.futures[p.index] = p
	}
	n.shared.mu.Unlock()
	for _, o := range old {
		o.finish(nil, ErrUnknownOutcome)
	}
}

// takeFutures removes and returns the proposals take picks.
func (n *Node) takeFutures(take func(pb.Index, *proposal) bool) []*proposal {
	var out []*proposal
	n.shared.mu.Lock()
	for i, p := range n.shared.futures {
		if take(i, p) {
			out = append(out, p)
			delete(n.shared.futures, i)
		}
	}
	n.shared.mu.Unlock()
	return out
}

// failFuturesThrough fails the proposals at or below index, which a
// snapshot replaced before they applied here: whether their entries are
// in it is not known.
func (n *Node) failFuturesThrough(index pb.Index) {
	for _, p := range n.takeFutures(func(i pb.Index, _ *proposal) bool { return i <= index }) {
		p.finish(nil, ErrUnknownOutcome)
	}
}

func (n *Node) failFutures(err error) {
	n.shared.mu.Lock()
	fs := n.shared.futures
	n.shared.futures = map[pb.Index]*proposal{}
	n.shared.mu.Unlock()
	for _, p := range fs {
		p.finish(nil, err)
	}
}

func (n *Node) setApplied(i pb.Index) {
	n.pub.applied.Store(uint64(i))
	n.shared.mu.Lock()
	keep := n.shared.waiters[:0]
	var ready []appliedWaiter
	for _, w := range n.shared.waiters {
		if w.index <= i {
			ready = append(ready, w)
		} else {
			keep = append(keep, w)
		}
	}
	clear(n.shared.waiters[len(keep):])
	n.shared.waiters = keep
	n.shared.mu.Unlock()
	for _, w := range ready {
		w.done <- nil
	}
}

// whenApplied sends nil on done (buffered) once index is applied.
func (n *Node) whenApplied(index pb.Index, done chan error) {
	n.shared.mu.Lock()
	if pb.Index(n.pub.applied.Load()) >= index {
		n.shared.mu.Unlock()
		done <- nil
		return
	}
	n.shared.waiters = append(n.shared.waiters, appliedWaiter{index: index, done: done})
	n.shared.mu.Unlock()
}

func (n *Node) failWaiters(err error) {
	n.shared.mu.Lock()
	ws := n.shared.waiters
	n.shared.waiters = nil
	n.shared.mu.Unlock()
	for _, w := range ws {
		w.done <- err
	}
}

// snapshotTask is an image on its way to the snapshot store.
type snapshotTask struct {
	meta  pb.SnapshotMeta
	image io.WriterTo
}

// snapshotDone is a snapshot's outcome, for the runtime.
type snapshotDone struct {
	meta pb.SnapshotMeta
	size uint64
	err  error
}

// takeSnapshot takes an image of the applied state (a cheap clone) and
// hands it to the snapshot goroutine, which writes it out while Apply goes
// on. The runtime asks for one at a time, so neither send blocks.
func (n *Node) takeSnapshot() {
	last := n.ap.lastApplied
	if last.Index == 0 {
		n.q.snapDonec <- snapshotDone{err: fmt.Errorf("node: nothing applied to snapshot")}
		return
	}
	img, err := n.cfg.FSM.Snapshot()
	if err != nil {
		n.log.Error("state machine snapshot failed", "err", err)
		n.q.snapDonec <- snapshotDone{err: fmt.Errorf("node: state machine snapshot: %w", err)}
		return
	}
	meta := pb.SnapshotMeta{Index: last.Index, Term: last.Term}
	if conf := n.pub.appliedConf.Load(); conf != nil {
		meta.Conf = *conf
	}
	n.q.snapc <- snapshotTask{meta: meta, image: img}
}

// snapshotLoop writes images; the runtime then has the log compacted to
// the point driver.CompactPoint picks.
func (n *Node) snapshotLoop() {
	defer n.life.wg.Done()
	for t := range n.q.snapc {
		size, err := n.writeSnapshot(t)
		n.q.snapDonec <- snapshotDone{meta: t.meta, size: size, err: err}
	}
}

func (n *Node) writeSnapshot(t snapshotTask) (uint64, error) {
	sink, err := n.cfg.Snapshots.Create(t.meta)
	if err != nil {
		return 0, err
	}
	size, err := t.image.WriteTo(sink)
	if err != nil {
		sink.Abort()
		return 0, fmt.Errorf("node: writing snapshot %d: %w", t.meta.Index, err)
	}
	if err := sink.Commit(); err != nil {
		return 0, fmt.Errorf("node: committing snapshot %d: %w", t.meta.Index, err)
	}
	n.log.Info("snapshot written", "index", uint64(t.meta.Index), "bytes", size)
	return uint64(size), nil
}
