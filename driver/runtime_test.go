package driver

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// memLog is a raft.MemoryStorage with the Saver write side: writes are
// visible at once; syncs counts the fsyncs.
type memLog struct {
	*raft.MemoryStorage
	syncs int
}

func (l *memLog) Save(hs pb.HardState, snap *pb.SnapshotMeta, ents []pb.Entry) error {
	if snap != nil {
		if err := l.ApplySnapshot(*snap); err != nil {
			return err
		}
	}
	if err := l.Append(ents); err != nil {
		return err
	}
	if !hs.IsEmpty() {
		l.SetHardState(hs)
	}
	return nil
}

func (l *memLog) Sync() error { l.syncs++; return nil }

var t0 = time.Unix(1000, 0)

const tick = 10 * time.Millisecond

// tmember is one member of a tcluster: a runtime with instant I/O unless
// the test holds it back.
type tmember struct {
	id  pb.NodeID
	rt  *Runtime
	log *memLog
	// persisting and applying are handed out and not yet completed.
	persisting []raft.Ready
	applying   []ApplyJob
	applied    []pb.Index
	snapshots  []ApplyJob // jobs that asked for an image
	compacted  []pb.Index
	// stalled holds back fsyncs; slowApply holds back apply jobs.
	stalled, slowApply bool
}

// tcluster wires runtimes of bootstrapped voters with an instant network.
type tcluster struct {
	t       *testing.T
	now     time.Time
	members map[pb.NodeID]*tmember
	inbox   []pb.Message
}

func newTCluster(t *testing.T, n int, tweak func(*Config)) *tcluster {
	c := &tcluster{t: t, now: t0, members: map[pb.NodeID]*tmember{}}
	var voters []pb.NodeID
	for i := 1; i <= n; i++ {
		voters = append(voters, pb.NodeID(i))
	}
	hs, ents, err := raft.Bootstrap(voters)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range voters {
		log := &memLog{MemoryStorage: raft.NewMemoryStorage()}
		if err := log.Save(hs, nil, ents); err != nil {
			t.Fatal(err)
		}
		core, err := raft.New(raft.Config{ID: id, Storage: log, ElectionTicks: 10, HeartbeatTicks: 1, Seed: uint64(id)})
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{Core: core, Now: t0, TickInterval: tick, ElectionTimeout: 10 * tick}
		if tweak != nil {
			tweak(&cfg)
		}
		rt, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.members[id] = &tmember{id: id, rt: rt, log: log}
	}
	return c
}

func (c *tcluster) ids() []pb.NodeID {
	var ids []pb.NodeID
	for id := range c.members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// settle runs every member until nothing more happens without a tick.
func (c *tcluster) settle() {
	c.t.Helper()
	for round := 0; ; round++ {
		if round == 1000 {
			c.t.Fatal("cluster does not settle")
		}
		busy := false
		for _, id := range c.ids() {
			busy = c.members[id].work(c) || busy
		}
		msgs := c.inbox
		c.inbox = nil
		for _, m := range msgs {
			busy = true
			if to := c.members[m.To]; to != nil {
				_ = to.rt.Step(m)
			}
		}
		if !busy {
			return
		}
	}
}

func (m *tmember) work(c *tcluster) bool {
	w := m.rt.Work()
	c.inbox = append(c.inbox, w.Send...)
	m.persisting = append(m.persisting, w.Persist...)
	m.applying = append(m.applying, w.Apply...)
	for _, to := range w.Compact {
		m.compacted = append(m.compacted, to.Index)
	}
	did := !w.IsEmpty()
	if len(m.persisting) > 0 && !m.stalled {
		m.persist(c, len(m.persisting))
		did = true
	}
	for len(m.applying) > 0 && !m.slowApply {
		m.applyOne(c)
		did = true
	}
	return did
}

func (m *tmember) persist(c *tcluster, n int) {
	c.t.Helper()
	batch := m.persisting[:n]
	if err := PersistBatch(m.log, batch, func(msgs []pb.Message) { c.inbox = append(c.inbox, msgs...) }); err != nil {
		c.t.Fatal(err)
	}
	if err := m.rt.PersistDone(batch[n-1].ID); err != nil {
		c.t.Fatal(err)
	}
	m.persisting = m.persisting[n:]
}

func (m *tmember) applyOne(c *tcluster) {
	c.t.Helper()
	job := m.applying[0]
	m.applying = m.applying[1:]
	for _, e := range job.Entries {
		m.applied = append(m.applied, e.Index)
	}
	if job.TakeSnapshot {
		m.snapshots = append(m.snapshots, job)
	}
	if err := m.rt.ApplyDone(); err != nil {
		c.t.Fatal(err)
	}
}

func (c *tcluster) tick() {
	c.now = c.now.Add(tick)
	for _, id := range c.ids() {
		c.members[id].rt.Tick(c.now)
	}
	c.settle()
}

// elect ticks until member 1 leads.
func (c *tcluster) elect() *tmember {
	c.t.Helper()
	m := c.members[1]
	for i := 0; i < 100 && m.rt.Core().Role() != raft.Leader; i++ {
		if m.rt.Core().Role() == raft.Follower {
			_ = m.rt.Core().TransferLeader(1) // campaign now rather than wait
		}
		c.tick()
	}
	if m.rt.Core().Role() != raft.Leader {
		c.t.Fatal("member 1 did not become leader")
	}
	return m
}

func (c *tcluster) propose(m *tmember, k int) {
	c.t.Helper()
	for i := 0; i < k; i++ {
		if _, _, err := m.rt.Propose([]byte{byte(i), 1, 2, 3}); err != nil {
			c.t.Fatal(err)
		}
		c.settle()
	}
}

// TestRuntimePipelineBoundedAndGroupCommit shows that the runtime hands out
// at most MaxOutstandingReadys Readys before the first is durable, that
// heartbeats still leave while that many wait (TakeMessages), and that one
// fsync covering them all lets them through together.
func TestRuntimePipelineBoundedAndGroupCommit(t *testing.T) {
	c := newTCluster(t, 3, func(cfg *Config) { cfg.MaxOutstandingReadys = 2 })
	lead := c.elect()
	lead.stalled = true
	for i := 0; i < 5; i++ {
		if _, _, err := lead.rt.Propose([]byte("x")); err != nil {
			t.Fatal(err)
		}
		c.settle()
	}
	if len(lead.persisting) != 2 {
		t.Fatalf("%d Readys outstanding, want the bound 2", len(lead.persisting))
	}
	for i := 0; i < 3; i++ {
		c.tick() // heartbeats must still go out and be answered
	}
	if lead.rt.Core().Role() != raft.Leader {
		t.Fatal("leader lost leadership while its disk was slow for less than an election timeout")
	}
	syncs := lead.log.syncs
	lead.persist(c, len(lead.persisting))
	if lead.log.syncs != syncs+1 {
		t.Fatalf("%d fsyncs for one batch", lead.log.syncs-syncs)
	}
	lead.stalled = false
	c.settle()
	st := lead.rt.Core().Status()
	if st.Commit != st.LastIndex {
		t.Fatalf("commit %d, last %d: the proposals did not commit once durable", st.Commit, st.LastIndex)
	}
}

// TestRuntimePersistDoneInOrder shows that a Ready reported durable out of
// the order it was handed out is refused.
func TestRuntimePersistDoneInOrder(t *testing.T) {
	c := newTCluster(t, 1, nil)
	m := c.members[1]
	m.stalled = true
	c.elect()
	if len(m.persisting) == 0 {
		t.Fatal("nothing outstanding")
	}
	if err := m.rt.PersistDone(m.persisting[0].ID + 100); err == nil {
		t.Fatal("PersistDone of a Ready never handed out succeeded")
	}
}

// TestRuntimeApplyBackPressure shows that committed entries reach the
// applier only after they are durable, and that a full applier holds back
// Advance, hence new Readys.
func TestRuntimeApplyBackPressure(t *testing.T) {
	c := newTCluster(t, 1, func(cfg *Config) { cfg.MaxApplyJobs = 1; cfg.MaxOutstandingReadys = 2 })
	m := c.elect()
	m.slowApply = true
	c.propose(m, 6)
	if len(m.applying) != 1 {
		t.Fatalf("%d apply jobs outstanding, want the bound 1", len(m.applying))
	}
	if len(m.persisting) > 0 || m.rt.Core().Outstanding() > 2 {
		t.Fatalf("Readys not held back: %d persisting, %d outstanding", len(m.persisting), m.rt.Core().Outstanding())
	}
	m.slowApply = false
	c.settle()
	last := m.rt.Core().Status().LastIndex
	if len(m.applied) == 0 || m.applied[len(m.applied)-1] != last {
		t.Fatalf("applied %v, want up to %d", m.applied, last)
	}
	for _, i := range m.applied {
		if term, _ := m.log.Term(i); term == 0 {
			t.Fatalf("applied %d, which is not in the durable log", i)
		}
	}
}

// TestRuntimeSnapshotPolicy shows the snapshot decisions: one every
// SnapshotEntries applied entries, one at a time, compaction to the
// previous snapshot once the next is durable, none when SnapshotSizeFactor
// says the log since is still small next to the last image.
func TestRuntimeSnapshotPolicy(t *testing.T) {
	c := newTCluster(t, 1, func(cfg *Config) { cfg.SnapshotEntries = 4 })
	m := c.elect()
	c.propose(m, 4)
	if len(m.snapshots) != 1 {
		t.Fatalf("%d snapshots asked for after 5 entries, want 1", len(m.snapshots))
	}
	c.propose(m, 8) // the first is still being written: no second
	if len(m.snapshots) != 1 {
		t.Fatalf("%d snapshots asked for while one is in progress", len(m.snapshots))
	}
	meta := func(i pb.Index) pb.SnapshotMeta { return pb.SnapshotMeta{Index: i, Term: 2} }
	m.rt.SnapshotDone(meta(5), 100, nil)
	c.settle()
	if len(m.compacted) != 0 {
		t.Fatalf("compacted to %v after the first snapshot", m.compacted)
	}
	c.propose(m, 4)
	if len(m.snapshots) != 2 {
		t.Fatalf("%d snapshots asked for, want 2", len(m.snapshots))
	}
	m.rt.SnapshotDone(meta(17), 100, nil)
	c.settle()
	if !slices.Equal(m.compacted, []pb.Index{5}) {
		t.Fatalf("compacted to %v, want the previous snapshot 5", m.compacted)
	}

	// With a size factor of 10 and a 100-byte image, 4-byte entries need
	// 250 of them, not 4.
	c = newTCluster(t, 1, func(cfg *Config) { cfg.SnapshotEntries = 4; cfg.SnapshotSizeFactor = 10 })
	m = c.elect()
	c.propose(m, 4)
	m.rt.SnapshotDone(meta(5), 100, nil)
	c.propose(m, 20)
	if len(m.snapshots) != 1 {
		t.Fatalf("%d snapshots with the size factor unmet, want 1", len(m.snapshots))
	}
}

// TestRuntimeRequestSnapshot shows a forced snapshot: taken at the applied
// index after the jobs already handed out, answered with its index; asked
// again with nothing applied since, answered at once.
func TestRuntimeRequestSnapshot(t *testing.T) {
	c := newTCluster(t, 1, nil)
	m := c.elect()
	c.propose(m, 3)
	m.rt.RequestSnapshot(7)
	c.settle()
	if len(m.snapshots) != 1 {
		t.Fatalf("forced snapshot not asked for: %v", m.snapshots)
	}
	at := m.applied[len(m.applied)-1]
	m.rt.SnapshotDone(pb.SnapshotMeta{Index: at, Term: 2}, 10, nil)
	w := m.rt.Work()
	if len(w.Snapshots) != 1 || w.Snapshots[0].Token != 7 || w.Snapshots[0].Index != at || w.Snapshots[0].Err != nil {
		t.Fatalf("answer %+v, want token 7 at %d", w.Snapshots, at)
	}
	m.rt.RequestSnapshot(8)
	w = m.rt.Work()
	if len(w.Snapshots) != 1 || w.Snapshots[0].Token != 8 || w.Snapshots[0].Index != at {
		t.Fatalf("answer %+v, want token 8 at once at %d", w.Snapshots, at)
	}
	failed := errors.New("disk full")
	c.propose(m, 1)
	m.rt.RequestSnapshot(9)
	c.settle()
	m.rt.SnapshotDone(pb.SnapshotMeta{Index: at + 1, Term: 2}, 0, failed)
	if w := m.rt.Work(); len(w.Snapshots) != 1 || !errors.Is(w.Snapshots[0].Err, failed) {
		t.Fatalf("answer %+v, want the write error", w.Snapshots)
	}
	// Nothing applied since, but the last image failed: take another.
	m.rt.RequestSnapshot(10)
	c.settle()
	if len(m.snapshots) != 3 {
		t.Fatalf("%d images asked for; a forced snapshot after a failed one was answered without one", len(m.snapshots))
	}
	m.rt.SnapshotDone(pb.SnapshotMeta{Index: at + 1, Term: 2}, 10, nil)
	if w := m.rt.Work(); len(w.Snapshots) != 1 || w.Snapshots[0].Err != nil || w.Snapshots[0].Index != at+1 {
		t.Fatalf("answer %+v, want success at %d", w.Snapshots, at+1)
	}
}

// TestRuntimeDiskStallHandOver shows the disk-stall rule: a leader whose
// fsync makes no progress for an election timeout hands leadership to the
// most caught-up voter.
func TestRuntimeDiskStallHandOver(t *testing.T) {
	c := newTCluster(t, 3, nil)
	lead := c.elect()
	c.propose(lead, 2)
	lead.stalled = true
	c.propose(lead, 1)
	for i := 0; i < 12 && lead.rt.Core().Role() == raft.Leader; i++ {
		c.tick()
	}
	if lead.rt.Core().Role() == raft.Leader {
		t.Fatal("the leader with a stalled disk still leads after more than an election timeout")
	}
	lead.stalled = false
	c.settle()
	if c.members[2].rt.Core().Role() != raft.Leader {
		t.Fatalf("member 2 (the most caught-up, lowest id) did not take over: %v", c.members[2].rt.Core().Role())
	}
}

// TestRegressionDiskStallBlamedForSlowRunLoop pins a false hand-over: a
// run goroutine held up between two ticks (a loaded machine) saw a Ready
// handed out just before as waiting for the disk since the older tick,
// and handed leadership away though the fsync was quick. The wait counts
// from the first tick that sees it, and a gap in the ticks does not count.
func TestRegressionDiskStallBlamedForSlowRunLoop(t *testing.T) {
	c := newTCluster(t, 3, nil)
	lead := c.elect()
	lead.stalled = true
	c.propose(lead, 1)
	c.now = c.now.Add(15 * tick) // nobody ran for longer than an election timeout
	c.tick()
	if lead.rt.Counters().DiskStallHandOvers != 0 {
		t.Fatal("handed over for a wait nobody watched")
	}
	for i := 0; i < 12 && lead.rt.Counters().DiskStallHandOvers == 0; i++ {
		c.tick()
	}
	if lead.rt.Counters().DiskStallHandOvers == 0 {
		t.Fatal("no hand-over after an election timeout of watched stall")
	}
}

// TestRuntimeLeaseGapGuard shows the lease guard: after a gap of more than
// two tick intervals between ticks, lease reads fall back to ReadIndex for
// one election timeout.
func TestRuntimeLeaseGapGuard(t *testing.T) {
	c := newTCluster(t, 3, nil)
	lead := c.elect()
	if !lead.rt.LeaseTrusted(c.now) {
		t.Fatal("lease not trusted with regular ticks")
	}
	c.now = c.now.Add(5 * tick) // the process was paused
	if lead.rt.LeaseTrusted(c.now) {
		t.Fatal("lease trusted right after a gap in the ticks")
	}
	for i := 0; i < 10; i++ {
		c.tick()
		if lead.rt.LeaseTrusted(c.now) {
			t.Fatalf("lease trusted %d ticks after the gap, before an election timeout", i+1)
		}
	}
	// The first tick after the gap notices it too and blocks from then.
	c.tick()
	c.tick()
	if !lead.rt.LeaseTrusted(c.now) {
		t.Fatal("lease still not trusted an election timeout after the gap")
	}
}

// TestMostCaughtUpVoter shows the one hand-over pick: the longest match
// among eligible voters, ties to the lowest id, never a learner or self.
func TestMostCaughtUpVoter(t *testing.T) {
	st := raft.Status{ID: 1, Conf: pb.ConfState{Voters: []pb.NodeID{1, 2, 3, 4}, Learners: []pb.NodeID{5}},
		Progress: map[pb.NodeID]raft.ProgressStatus{
			1: {Match: 100}, 2: {Match: 50}, 3: {Match: 80}, 4: {Match: 80}, 5: {Match: 99, Learner: true},
		}}
	if got := MostCaughtUpVoter(st, nil); got != 3 {
		t.Fatalf("picked %d, want 3", got)
	}
	if got := MostCaughtUpVoter(st, func(id pb.NodeID) bool { return id != 3 }); got != 4 {
		t.Fatalf("picked %d, want 4", got)
	}
	if got := MostCaughtUpVoter(st, func(pb.NodeID) bool { return false }); got != pb.None {
		t.Fatalf("picked %d with nobody eligible", got)
	}
}

// TestRecoverInstallsSnapshotLostFromLog shows the start rule: a durable
// snapshot the log does not hold (the record that installed it was lost)
// is installed in the log, with its index committed.
func TestRecoverInstallsSnapshotLostFromLog(t *testing.T) {
	log := &memLog{MemoryStorage: raft.NewMemoryStorage()}
	if err := log.Save(pb.HardState{Term: 1, Commit: 2}, nil, []pb.Entry{{Index: 1, Term: 1}, {Index: 2, Term: 1}}); err != nil {
		t.Fatal(err)
	}
	snap := pb.SnapshotMeta{Index: 10, Term: 3, Conf: pb.ConfState{Voters: []pb.NodeID{1}}}
	meta, ok, err := Recover(log, func() (pb.SnapshotMeta, bool) { return snap, true })
	if err != nil || !ok || meta.Index != 10 {
		t.Fatalf("Recover = %v, %v, %v", meta, ok, err)
	}
	hs, cs, _ := log.InitialState()
	if log.FirstIndex() != 11 || hs.Commit != 10 || hs.Term != 3 || len(cs.Voters) != 1 || log.syncs != 1 {
		t.Fatalf("log first %d, hard state %+v, conf %v, %d syncs", log.FirstIndex(), hs, cs, log.syncs)
	}
	// The log holds it now: nothing more to do.
	if _, _, err := Recover(log, func() (pb.SnapshotMeta, bool) { return snap, true }); err != nil || log.syncs != 1 {
		t.Fatalf("second Recover: %v, %d syncs", err, log.syncs)
	}
	if _, ok, _ := Recover(log, func() (pb.SnapshotMeta, bool) { return pb.SnapshotMeta{}, false }); ok {
		t.Fatal("Recover found a snapshot where there is none")
	}
}
