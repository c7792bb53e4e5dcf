package node

import (
	"fmt"
	"io"
	"sync/atomic"

	"github.com/raftkv/raftkv/driver"
	pb "github.com/raftkv/raftkv/raftpb"
)

type applyTask struct {
	snap *pb.SnapshotMeta
	ents []pb.Entry
}

// proposal is one Propose call waiting for its outcome.
type proposal struct {
	data  []byte
	state atomic.Int32 // proposalWaiting -> Taken or Abandoned
	index pb.Index
	term  pb.Term
	done  chan outcome // buffered 1; written once
	sent  atomic.Bool
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

type appliedWaiter struct {
	index pb.Index
	done  chan struct{}
}

// applyLoop applies committed entries in order. It is the only goroutine
// that calls the FSM.
func (n *Node) applyLoop() {
	defer n.wg.Done()
	defer close(n.snapc)
	for {
		select {
		case t, ok := <-n.applyc:
			if !ok {
				return
			}
			if !n.apply(t) {
				return
			}
		case req := <-n.snapReqc:
			req.index <- n.lastApplied.Index
			if n.lastApplied.Index == n.lastSnap.Index {
				req.done <- nil
				continue
			}
			n.takeSnapshot(n.lastApplied, req.done)
		}
	}
}

type snapRequest struct {
	index chan pb.Index
	done  chan error
}

// apply applies one batch; false means a fatal error stopped the node.
func (n *Node) apply(t applyTask) bool {
	{
		if t.snap != nil {
			if err := n.restoreSnapshot(*t.snap); err != nil {
				n.fatal(err)
				return false
			}
			n.lastSnap = *t.snap
			// The log restarts at it: nothing older is left to compact.
			n.snapsBehind = append(n.snapsBehind[:0], *t.snap)
			n.lastApplied = pb.Entry{Index: t.snap.Index, Term: t.snap.Term}
			n.setApplied(t.snap.Index)
		}
		var last pb.Entry
		for i := range t.ents {
			e := &t.ents[i]
			if e.Index <= pb.Index(n.applied.Load()) {
				continue
			}
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
				n.appliedConf.Store(&cs)
				n.appliedConfI.Store(uint64(e.Index))
			}
			n.resolve(e.Index, e.Term, res)
			n.sinceSnapBytes += uint64(len(e.Data))
			last = *e
			n.applied.Store(uint64(e.Index))
		}
		if last.Index > 0 {
			last.Data = nil
			n.lastApplied = last
			n.setApplied(last.Index)
			n.maybeSnapshot(last)
		}
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
	n.appliedConf.Store(&cs)
	n.appliedConfI.Store(uint64(meta.Index))
	return nil
}

// resolve hands the result to the proposal at index, if this member
// proposed it and the applied entry is the one it appended.
func (n *Node) resolve(index pb.Index, term pb.Term, res any) {
	n.mu.Lock()
	p := n.futures[index]
	delete(n.futures, index)
	n.mu.Unlock()
	if p == nil {
		return
	}
	if p.term != term {
		// Another leader's entry took this index: ours was never committed.
		p.finish(nil, ErrUnknownOutcome)
		return
	}
	p.finish(res, nil)
}

func (n *Node) failFutures(err error) {
	n.mu.Lock()
	fs := n.futures
	n.futures = map[pb.Index]*proposal{}
	n.mu.Unlock()
	for _, p := range fs {
		p.finish(nil, err)
	}
}

func (n *Node) setApplied(i pb.Index) {
	n.applied.Store(uint64(i))
	n.mu.Lock()
	keep := n.waiters[:0]
	var ready []appliedWaiter
	for _, w := range n.waiters {
		if w.index <= i {
			ready = append(ready, w)
		} else {
			keep = append(keep, w)
		}
	}
	n.waiters = keep
	n.mu.Unlock()
	for _, w := range ready {
		close(w.done)
	}
}

// waitApplied returns a channel closed once index is applied.
func (n *Node) waitApplied(index pb.Index) chan struct{} {
	ch := make(chan struct{})
	n.mu.Lock()
	if pb.Index(n.applied.Load()) >= index {
		n.mu.Unlock()
		close(ch)
		return ch
	}
	n.waiters = append(n.waiters, appliedWaiter{index: index, done: ch})
	n.mu.Unlock()
	return ch
}

type snapshotTask struct {
	meta pb.SnapshotMeta
	// compactTo is the previous snapshot: the log is compacted up to it.
	compactTo pb.SnapshotMeta
	image     io.WriterTo
	force     chan error
}

// maybeSnapshot takes an image every SnapshotEntries applied entries (and,
// with SnapshotSizeFactor, once the log since the last image outweighs it
// enough). The image is a cheap clone; writing it happens on the snapshot
// goroutine.
func (n *Node) maybeSnapshot(last pb.Entry) {
	if uint64(last.Index-n.lastSnap.Index) < n.cfg.SnapshotEntries {
		return
	}
	if f := n.cfg.SnapshotSizeFactor; f > 0 && float64(n.sinceSnapBytes) < f*float64(n.lastSnapBytes.Load()) {
		return
	}
	n.takeSnapshot(last, nil)
}

func (n *Node) takeSnapshot(last pb.Entry, force chan error) {
	if !n.snapshotting.CompareAndSwap(false, true) {
		if force != nil {
			force <- fmt.Errorf("node: a snapshot is already being written")
		}
		return
	}
	img, err := n.cfg.FSM.Snapshot()
	if err != nil {
		n.snapshotting.Store(false)
		n.log.Error("state machine snapshot failed", "err", err)
		if force != nil {
			force <- err
		}
		return
	}
	conf := n.appliedConf.Load()
	meta := pb.SnapshotMeta{Index: last.Index, Term: last.Term}
	if conf != nil {
		meta.Conf = *conf
	}
	var compactTo pb.SnapshotMeta
	compactTo, n.snapsBehind = driver.CompactPoint(n.snapsBehind, meta, n.cfg.SnapshotTrailingEntries)
	n.snapc <- snapshotTask{meta: meta, compactTo: compactTo, image: img, force: force}
	n.lastSnap = meta
	n.sinceSnapBytes = 0
	n.snapsBehind = append(n.snapsBehind, meta)
}

// snapshotLoop writes images and then compacts the log up to the point
// driver.CompactPoint chose (by default the previous snapshot), so at least one
// interval of log stays for followers a little behind.
func (n *Node) snapshotLoop() {
	defer n.wg.Done()
	for t := range n.snapc {
		err := n.writeSnapshot(t)
		n.snapshotting.Store(false)
		if t.force != nil {
			t.force <- err
		}
		if err != nil {
			n.log.Error("writing snapshot failed", "index", uint64(t.meta.Index), "err", err)
		}
	}
}

func (n *Node) writeSnapshot(t snapshotTask) error {
	sink, err := n.cfg.Snapshots.Create(t.meta)
	if err != nil {
		return err
	}
	size, err := t.image.WriteTo(sink)
	if err != nil {
		sink.Abort()
		return fmt.Errorf("node: writing snapshot %d: %w", t.meta.Index, err)
	}
	if err := sink.Commit(); err != nil {
		return fmt.Errorf("node: committing snapshot %d: %w", t.meta.Index, err)
	}
	n.lastSnapBytes.Store(uint64(size))
	n.log.Info("snapshot written", "index", uint64(t.meta.Index), "bytes", size)
	compactTo := t.compactTo
	if compactTo.Index == 0 {
		return nil
	}
	n.report(func() {
		if err := n.cfg.Log.Compact(compactTo); err != nil {
			n.fatal(fmt.Errorf("node: compacting log to %d: %w", compactTo.Index, err))
		}
	})
	return nil
}
