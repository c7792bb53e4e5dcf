package node_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/node"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// load proposes cmd(1) at a steady rate through whichever of its members
// leads, from several goroutines, and counts the outcomes.
type load struct {
	nodes   []*node.Node // fixed at start: the harness's member table is not safe to share
	stopc   chan struct{}
	wg      sync.WaitGroup
	acked   atomic.Uint64 // applied
	unknown atomic.Uint64 // ErrUnknownOutcome: may or may not be applied
	failed  atomic.Pointer[error]
}

// startLoad offers one proposal every interval to workers goroutines; an
// offer that finds them all busy is dropped, so the rate never exceeds
// 1/interval and a slow cluster is not buried under a backlog.
func startLoad(nodes []*node.Node, interval time.Duration, workers int) *load {
	l := &load{nodes: nodes, stopc: make(chan struct{})}
	offers := make(chan struct{}, workers)
	l.wg.Add(1 + workers)
	go func() {
		defer l.wg.Done()
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			select {
			case <-l.stopc:
				return
			case <-tk.C:
				select {
				case offers <- struct{}{}:
				default:
				}
			}
		}
	}()
	for range workers {
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stopc:
					return
				case <-offers:
				}
				l.proposeOne()
			}
		}()
	}
	return l
}

func (l *load) proposeOne() {
	var lead *node.Node
	for _, n := range l.nodes {
		if _, _, role := n.Leader(); role == raft.Leader {
			lead = n
		}
	}
	if lead == nil {
		time.Sleep(5 * time.Millisecond)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := lead.Propose(ctx, cmd(1))
	var nl *node.NotLeaderError
	switch {
	case err == nil:
		l.acked.Add(1)
	case errors.Is(err, node.ErrUnknownOutcome):
		l.unknown.Add(1)
	case errors.As(err, &nl), errors.Is(err, node.ErrBusy), errors.Is(err, node.ErrTransferring):
		// Definitely not applied.
	default:
		l.failed.CompareAndSwap(nil, &err)
	}
}

func (l *load) stop(t *testing.T) {
	close(l.stopc)
	l.wg.Wait()
	if p := l.failed.Load(); p != nil {
		t.Fatalf("load: %v", *p)
	}
}

// TestSlowFollowerConvergesUnderLoad shows a follower that was down while
// the log was compacted many times over catching up under sustained
// writes: it installs a snapshot and then follows from the log the leader
// keeps behind its newest snapshot, instead of looping through snapshot
// after snapshot, and reaches the leader's applied index while the writes
// go on (1000/s offered, a snapshot every 200 entries, default retention).
func TestSlowFollowerConvergesUnderLoad(t *testing.T) {
	slowFollowerConverges(t, time.Millisecond, 0)
}

// TestRegressionSlowFollowerLoopsThroughSnapshots pins a bug where the log
// kept behind the newest snapshot was fixed at one to two snapshot
// intervals: with writes as fast as the cluster takes them (several
// thousand a second here, so an interval of 200 entries lasted tens of
// milliseconds), the leader had compacted past every snapshot it sent
// before the follower had installed it, and the follower went through 3 to
// 5 snapshots before it could follow. SnapshotTrailingEntries now keeps as
// much log as the write rate needs.
func TestRegressionSlowFollowerLoopsThroughSnapshots(t *testing.T) {
	slowFollowerConverges(t, 100*time.Microsecond, 10*200)
}

func slowFollowerConverges(t *testing.T, interval time.Duration, trailing uint64) {
	const (
		snapEvery = 200
		catchUp   = 20 * time.Second
	)
	c := newTClusterWith(t, 3, snapEvery, func(c *tcluster) {
		c.tweak = func(cfg *node.Config) {
			// A disk hiccup under a loaded test run must not move leadership.
			cfg.ElectionTimeout = time.Second
			cfg.SnapshotTrailingEntries = trailing
		}
	})
	c.propose(1)
	lead := c.leader()
	slow, other := c.followersOf(lead)[0], c.followersOf(lead)[1]
	c.stop(slow)
	ln := c.members[lead].n

	start := time.Now()
	ld := startLoad([]*node.Node{ln, c.members[other].n}, interval, 16)
	stopped := false
	defer func() {
		if !stopped {
			ld.stop(t)
		}
	}()
	// Down for ten snapshot intervals, and past what the leader keeps.
	base := ln.Status().Applied
	waitFor(t, 30*time.Second, "ten snapshot intervals of writes", func() bool {
		st := ln.Status()
		return st.Applied >= base+10*snapEvery+pb.Index(trailing) && st.FirstIndex > base
	})

	c.start(slow, false)
	restarted := time.Now()
	sn := c.members[slow].n
	waitFor(t, catchUp, "the restarted follower to reach the leader's applied index", func() bool {
		la := ln.Status().Applied // read first: the follower must reach it later
		return sn.Status().Applied >= la
	})
	took := time.Since(restarted)
	// Keep following for a while under load.
	time.Sleep(time.Second)
	waitFor(t, catchUp, "the follower to keep up", func() bool {
		la := ln.Status().Applied
		return sn.Status().Applied >= la
	})
	ld.stop(t)
	stopped = true
	rate := float64(ld.acked.Load()) / time.Since(start).Seconds()
	snaps := sn.Counters().SnapshotsReceived
	t.Logf("follower caught up in %v at ~%.0f writes/s (snapshot every %d entries, %d trailing), installing %d snapshot(s)",
		took.Round(time.Millisecond), rate, snapEvery, trailing, snaps)
	if snaps == 0 {
		t.Fatal("the follower caught up without a snapshot: the test did not exercise InstallSnapshot")
	}
	if snaps > 2 {
		t.Fatalf("the follower installed %d snapshots: it looped instead of following from the log", snaps)
	}
	if rate < 100 {
		t.Fatalf("only %.0f writes/s: the load was not sustained", rate)
	}
	c.maybe = ld.unknown.Load()
	c.waitConverged(1 + ld.acked.Load())
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
