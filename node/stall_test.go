package node_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/node"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

// stallFS is the real file system with a switch: while it is on, every
// File.Sync blocks until it is switched off, the way an fsync hangs on a
// saturated or dying disk. Writes and reads go through untouched.
type stallFS struct {
	vfs.FS
	mu      sync.Mutex
	gate    chan struct{} // nil: not stalled; closed when released
	blocked atomic.Int64  // Syncs that had to wait for a release
}

func newStallFS() *stallFS { return &stallFS{FS: vfs.OS()} }

func (s *stallFS) stall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate == nil {
		s.gate = make(chan struct{})
	}
}

func (s *stallFS) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
}

func (s *stallFS) wait() {
	s.mu.Lock()
	g := s.gate
	s.mu.Unlock()
	if g != nil {
		s.blocked.Add(1)
		<-g
	}
}

func (s *stallFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return stallFile{File: f, fs: s}, nil
}

func (s *stallFS) Create(name string) (vfs.File, error) { return s.wrap(s.FS.Create(name)) }
func (s *stallFS) Open(name string) (vfs.File, error)   { return s.wrap(s.FS.Open(name)) }
func (s *stallFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	return s.wrap(s.FS.OpenFile(name, flag, perm))
}

type stallFile struct {
	vfs.File
	fs *stallFS
}

func (f stallFile) Sync() error {
	f.fs.wait()
	return f.File.Sync()
}

// newStallCluster starts n members, each on a stallFS of its own. The
// stalls are released before the members stop.
func newStallCluster(t *testing.T, n int, tweak func(*node.Config)) (*tcluster, map[pb.NodeID]*stallFS) {
	fss := map[pb.NodeID]*stallFS{}
	c := newTClusterWith(t, n, 0, func(c *tcluster) {
		c.tweak = tweak
		for id, m := range c.members {
			fss[id] = newStallFS()
			m.fs = fss[id]
		}
	})
	t.Cleanup(func() { // runs before the cluster's own cleanup stops it
		for _, s := range fss {
			s.release()
		}
	})
	return c, fss
}

func (c *tcluster) followersOf(lead pb.NodeID) []pb.NodeID {
	var out []pb.NodeID
	for id := pb.NodeID(1); int(id) <= len(c.members); id++ {
		if id != lead {
			out = append(out, id)
		}
	}
	return out
}

// proposeTo proposes v through member id and fails the test on any error.
func (c *tcluster) proposeTo(id pb.NodeID, v uint64, timeout time.Duration) {
	c.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := c.members[id].n.Propose(ctx, cmd(v)); err != nil {
		c.tb.Fatalf("propose %d through %d: %v", v, id, err)
	}
}

// proposeAvoiding proposes v through whichever member other than avoid
// leads, following leadership if it moves again (a loaded machine can
// cost the new leader its term too). A definite "not applied" is retried;
// an unknown outcome is counted in c.maybe, as propose does.
func (c *tcluster) proposeAvoiding(avoid pb.NodeID, v uint64, timeout time.Duration) {
	c.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		var lead pb.NodeID
		for _, id := range c.followersOf(avoid) {
			if l, _, role := c.members[id].n.Leader(); role == raft.Leader && l == id {
				lead = id
			}
		}
		if lead != pb.None {
			_, err := c.members[lead].n.Propose(ctx, cmd(v))
			if err == nil {
				return
			}
			if errors.Is(err, node.ErrUnknownOutcome) {
				c.maybe += v
				return
			}
		}
		if ctx.Err() != nil {
			c.tb.Fatalf("propose %d avoiding %d: no member but %d committed it within %v", v, avoid, avoid, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTimingDiskStallFollower shows that a follower whose fsync hangs does
// not take the cluster hostage and is not lost by the leader: it keeps
// answering heartbeats, so there is no election and the term stays; the
// leader keeps committing with the other follower; and with that other
// follower gone too, the leader still hears a quorum (CheckQuorum holds
// and a ReadIndex barrier, one heartbeat round, completes) although
// nothing can commit. Once released, the follower catches up.
func TestTimingDiskStallFollower(t *testing.T) { diskStallFollower(t, 64) }

// TestRegressionFullReadyPipelineSilencesStalledFollower pins a bug where
// a member stopped sending anything once MaxOutstandingReadys Readys waited
// for its stalled fsync (the run goroutine took no more Readys, so even
// heartbeat answers stayed in the core): its leader, left with it as the
// only other member of a quorum, stepped down after an election timeout.
// A pipeline of 2 makes it fill at once.
func TestRegressionFullReadyPipelineSilencesStalledFollower(t *testing.T) {
	diskStallFollower(t, 2)
}

// diskStallFollowerElection is the election timeout of the follower stall
// tests: long enough that a hiccup of the real disk under a loaded test
// run does not make the healthy leader hand over (checkDiskStall).
const diskStallFollowerElection = time.Second

func diskStallFollower(t *testing.T, pipeline int) {
	const et = diskStallFollowerElection
	c, fss := newStallCluster(t, 3, func(cfg *node.Config) {
		cfg.ElectionTimeout, cfg.MaxOutstandingReadys = et, pipeline
	})
	c.propose(1)
	want := uint64(1)
	lead := c.leader()
	ln := c.members[lead].n
	_, term0, _ := ln.Leader()
	changes0 := ln.Counters().LeaderChanges
	fs := c.followersOf(lead)
	stalled, healthy := fs[0], fs[1]

	fss[stalled].stall()
	// Two election timeouts of writes, committed with the healthy follower.
	for end := time.Now().Add(2 * et); time.Now().Before(end); {
		c.proposeTo(lead, 1, 5*time.Second)
		want++
	}
	if fss[stalled].blocked.Load() == 0 {
		t.Fatal("the stalled follower never reached an fsync")
	}
	checkReign := func(when string) {
		t.Helper()
		if l, term, role := ln.Leader(); l != lead || term != term0 || role != raft.Leader {
			t.Fatalf("%s: member %d sees leader %d term %d role %v; want itself leading in term %d",
				when, lead, l, term, role, term0)
		}
		if l, term, _ := c.members[stalled].n.Leader(); l != lead || term != term0 {
			t.Fatalf("%s: stalled member %d sees leader %d term %d; want %d in term %d",
				when, stalled, l, term, lead, term0)
		}
	}
	checkReign("after writes during the stall")

	// Now the stalled follower is the leader's only way to a quorum.
	// CheckQuorum would depose a leader that hears nobody within two
	// election timeouts of this.
	c.stop(healthy)
	for end := time.Now().Add(5 * et / 2); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		checkReign("healthy follower down")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ln.ReadIndex(ctx); err != nil {
		t.Fatalf("read barrier with only the stalled follower to answer heartbeats: %v", err)
	}
	checkReign("after the read barrier")
	if got := ln.Counters().LeaderChanges; got != changes0 {
		t.Fatalf("leader counted %d leader changes during the stall", got-changes0)
	}

	fss[stalled].release()
	c.start(healthy, false)
	c.proposeTo(lead, 1, 5*time.Second)
	want++
	c.waitConverged(want)
	checkReign("after the release")
}

// TestTimingDiskStallLeader shows that a leader whose fsync hangs for
// longer than an election timeout gives up leadership: another member
// leads and proposals commit through it while the old leader's disk is
// still stalled; once released, the old leader catches up as a follower.
func TestTimingDiskStallLeader(t *testing.T) { diskStallLeader(t, 64) }

// TestTimingDiskStallLeaderFullPipeline is TestTimingDiskStallLeader with
// the stalled leader's Ready pipeline full at once: it still sends
// heartbeats (so its followers do not elect on their own) and must still
// hand over or step down.
func TestTimingDiskStallLeaderFullPipeline(t *testing.T) { diskStallLeader(t, 2) }

func diskStallLeader(t *testing.T, pipeline int) {
	c, fss := newStallCluster(t, 3, func(cfg *node.Config) { cfg.MaxOutstandingReadys = pipeline })
	c.propose(1)
	want := uint64(1)
	old := c.leader()
	on := c.members[old].n
	_, term0, _ := on.Leader()

	fss[old].stall()
	// A proposal on the stalled leader forces an fsync that hangs. Its
	// outcome is unknown until the stall ends (the followers may commit it).
	const stuckValue = 1000
	stuck := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := on.Propose(ctx, cmd(stuckValue))
		stuck <- err
	}()

	var next pb.NodeID
	deadline := time.Now().Add(10 * time.Second)
	for next == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no new leader within 10s of stalling leader %d's disk", old)
		}
		for _, id := range c.followersOf(old) {
			if l, term, role := c.members[id].n.Leader(); role == raft.Leader && l == id && term > term0 {
				next = id
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if fss[old].blocked.Load() == 0 {
		t.Fatal("the stalled leader never reached an fsync")
	}
	for range 20 {
		c.proposeAvoiding(old, 1, 10*time.Second)
		want++
	}
	if _, term, role := on.Leader(); role == raft.Leader {
		t.Fatalf("member %d still leads (term %d) with a stalled disk", old, term)
	}
	if got := fss[old].blocked.Load(); got == 0 {
		t.Fatal("stall not in force")
	}
	t.Logf("leadership moved from %d to %d while %d's fsync hung", old, next, old)

	fss[old].release()
	select {
	case err := <-stuck:
		switch {
		case err == nil:
			want += stuckValue
		case errors.Is(err, node.ErrUnknownOutcome):
			c.maybe += stuckValue
		default:
			t.Fatalf("proposal on the stalled leader: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the proposal on the stalled leader got no answer")
	}
	c.proposeAvoiding(old, 1, 10*time.Second)
	want++
	c.waitConverged(want)
	if l, _, _ := on.Leader(); l == pb.None {
		t.Fatalf("old leader %d knows no leader after catching up", old)
	}
}
