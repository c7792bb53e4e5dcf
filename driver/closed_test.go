package driver

import (
	"testing"
	"time"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// closedFollower is member 1 of three, following member 2 in term 2, with
// the closed-connection promise the runtime's timing needs.
func closedFollower(t *testing.T, slack time.Duration) *Runtime {
	t.Helper()
	hs, ents, err := raft.Bootstrap([]pb.NodeID{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	log := &memLog{MemoryStorage: raft.NewMemoryStorage()}
	if err := log.Save(hs, nil, ents); err != nil {
		t.Fatal(err)
	}
	core, err := raft.New(raft.Config{ID: 1, Storage: log, ElectionTicks: 20, HeartbeatTicks: 2, Seed: 1,
		LeaseTicks: 4, ClosedPromiseTicks: ClosedPromiseTicks(4, tick, slack)})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := New(Config{Core: core, Now: t0, TickInterval: tick, ElectionTimeout: 20 * tick, TickSlack: slack})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Step(pb.Message{Type: pb.MsgHeartbeat, From: 2, To: 1, Term: 2}); err != nil {
		t.Fatal(err)
	}
	return rt
}

// TestRuntimeClosedReport shows that a closed connection to the leader
// reaches the core: its election timer jumps forward.
func TestRuntimeClosedReport(t *testing.T) {
	now := t0
	rt := closedFollower(t, tick/2)
	for range 3 {
		now = now.Add(tick)
		if err := rt.Tick(now); err != nil {
			t.Fatal(err)
		}
	}
	before := rt.Core().Status().ElectionElapsed
	rt.ReportClosed(2)
	if after := rt.Core().Status().ElectionElapsed; after <= before {
		t.Fatalf("election timer %d -> %d: the report did not reach the core", before, after)
	}
}

// TestRuntimeRejectsShortClosedPromise shows that the runtime refuses a
// core whose closed-connection promise would not outlast the lease given
// its tick slack.
func TestRuntimeRejectsShortClosedPromise(t *testing.T) {
	log := &memLog{MemoryStorage: raft.NewMemoryStorage()}
	want := ClosedPromiseTicks(4, tick, 2*tick)
	core, err := raft.New(raft.Config{ID: 1, Storage: log, ElectionTicks: 20, HeartbeatTicks: 2,
		LeaseTicks: 4, ClosedPromiseTicks: want - 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Core: core, Now: t0, TickInterval: tick, ElectionTimeout: 20 * tick, TickSlack: 2 * tick}); err == nil {
		t.Fatalf("a promise of %d ticks accepted, want at least %d", want-1, want)
	}
}

// TestRuntimeLeaseKeepsPace shows the lease guard against ticks that fall
// behind the clock without any one gap long enough to count as a pause:
// ticks every 1.5 intervals (the run loop too slow for its ticker) would
// stretch a lease of LeaseTicks ticks by half, so lease reads fall back
// to ReadIndex once the ticks of the lease window took longer than it
// plus TickSlack.
func TestRuntimeLeaseKeepsPace(t *testing.T) {
	c := newTCluster(t, 3, func(cfg *Config) { cfg.TickSlack = tick / 2 })
	lead := c.elect()
	if !lead.rt.LeaseTrusted(c.now) {
		t.Fatal("lease not trusted with regular ticks")
	}
	lease := lead.rt.Core().LeaseTicks()
	for i := 0; i < lease; i++ {
		c.now = c.now.Add(tick / 2) // each tick half an interval late, below the gap guard
		c.tick()
	}
	if lead.rt.Counters().LeaseGaps != 0 {
		t.Fatal("the gap guard fired: the test shows nothing")
	}
	if lead.rt.LeaseTrusted(c.now) {
		t.Fatalf("lease trusted after its %d ticks each came half an interval late", lease)
	}
	for i := 0; i < lease; i++ {
		c.tick()
	}
	if !lead.rt.LeaseTrusted(c.now) {
		t.Fatal("lease still not trusted after a lease window of regular ticks")
	}
}
