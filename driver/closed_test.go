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
// once the followers stop answering, the leader's core holds the lease for
// LeaseTicks ticks after the last round they answered was sent, but with
// ticks every 1.5 intervals (the run loop too slow for its ticker) that
// would stretch it by half, so lease reads fall back to ReadIndex as soon
// as that round was sent more than LeaseTicks intervals plus TickSlack ago
// by the clock.
func TestRuntimeLeaseKeepsPace(t *testing.T) {
	const slack = tick / 2
	c := newTCluster(t, 3, func(cfg *Config) { cfg.TickSlack = slack })
	lead := c.elect()
	c.tick() // a round every follower answers
	if !lead.rt.LeaseTrusted(c.now) {
		t.Fatal("lease not trusted with regular ticks")
	}
	core := lead.rt.Core()
	since, ok := core.LeaseSince()
	if !ok {
		t.Fatal("no lease after a round every follower answered")
	}
	sent := c.now // the round left in the tick just counted
	window := time.Duration(core.LeaseTicks())*tick + slack
	fellBack := false
	for i := 0; i < core.LeaseTicks(); i++ {
		c.now = c.now.Add(tick + tick/2) // each tick half an interval late: below the gap guard
		if err := lead.rt.Tick(c.now); err != nil {
			t.Fatal(err)
		}
		lead.rt.Work() // the followers hear nothing more
		if s, ok := core.LeaseSince(); ok && s != since {
			t.Fatalf("the lease moved to the round of tick %d with nobody answering", s)
		}
		trusted := lead.rt.LeaseTrusted(c.now)
		if trusted && core.LeaseValid() && c.now.Sub(sent) > window {
			t.Fatalf("lease trusted %v after the round it rests on was sent, past %v", c.now.Sub(sent), window)
		}
		if !trusted && core.LeaseValid() {
			fellBack = true
		}
	}
	if lead.rt.Counters().LeaseGaps != 0 {
		t.Fatal("the gap guard fired: the test shows nothing")
	}
	if !fellBack {
		t.Fatal("lease reads never fell back while the core still held a lease stretched by late ticks")
	}
}

// TestClosedPromiseOutlastsLeaseWithBunchedTicks shows the promise
// outlasting the lease when the voter's ticks come in the worst order a
// ticker allows (closed.go): its run loop was busy for nearly two
// intervals, with a tick pending, and answered the leader's heartbeat at
// their end, at x; it then takes the pending tick, the one that fell due
// while it was busy (its timer ran late, after the pending one was taken,
// so it was sent), and the next one, due at the grid's next point a
// moment later: three ticks within 10 µs of the answer, then one per
// interval. The leader sent the round at x at the latest and may serve
// lease reads until LeaseTicks intervals plus the slack after its send;
// the voter must refuse votes (a PreVote first) until then, with room for
// clocks whose rates differ by up to 0.1% (NTP slews a clock by at most
// 500 ppm).
func TestClosedPromiseOutlastsLeaseWithBunchedTicks(t *testing.T) {
	const (
		slack = 2 * tick
		lease = 4 // closedFollower's LeaseTicks
		eps   = 10 * time.Microsecond
		rate  = 1e-3
	)
	rt := closedFollower(t, slack) // answered the heartbeat at t0 = x, before any tick
	rt.Work()
	rt.ReportClosed(2)
	at := []time.Duration{eps / 3, 2 * eps / 3, eps}
	for len(at) < 40 {
		at = append(at, at[len(at)-1]+tick)
	}
	window := float64(lease*tick+slack) * (1 + rate) / (1 - rate)
	for i, d := range at {
		if err := rt.Tick(t0.Add(d)); err != nil {
			t.Fatal(err)
		}
		rt.Work()
		vote := pb.Message{Type: pb.MsgPreVote, From: 3, To: 1, Term: 3, Index: 100, LogTerm: 2}
		if err := rt.Step(vote); err != nil {
			t.Fatal(err)
		}
		w := rt.Work()
		out := w.Send
		for _, rd := range w.Persist {
			out = append(out, rd.MessagesAfterPersist...) // votes leave once durable
		}
		for _, m := range out {
			if m.Type != pb.MsgPreVoteResp || m.Reject {
				continue
			}
			if float64(d) <= window {
				t.Fatalf("vote granted %v after the answer (tick %d), inside the lease of %v", d, i+1, time.Duration(window))
			}
			return
		}
	}
	t.Fatalf("no vote granted within %v of the answer", at[len(at)-1])
}
