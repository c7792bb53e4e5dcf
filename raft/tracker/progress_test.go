package tracker

import (
	"fmt"
	"testing"

	pb "github.com/raftkv/raftkv/raftpb"
)

// step is one line of a progress script: what the leader does or hears,
// and the progress it must leave, as Progress.String prints it plus
// whether sending is paused.
type step struct {
	do   string
	f    func(p *Progress) string // returns a result to compare, or ""
	want string
}

func sent(last pb.Index, count int, bytes uint64) func(*Progress) string {
	return func(p *Progress) string { p.SentEntries(last, count, bytes); return "" }
}

func acked(n pb.Index) func(*Progress) string {
	return func(p *Progress) string { return fmt.Sprint(p.MaybeUpdate(n)) }
}

func rejected(idx, hint pb.Index) func(*Progress) string {
	return func(p *Progress) string { return fmt.Sprint(p.MaybeDecrTo(idx, hint)) }
}

func runScript(t *testing.T, p *Progress, script []step) {
	t.Helper()
	for i, s := range script {
		res := s.f(p)
		got := p.String()
		if p.IsPaused() {
			got += " paused"
		}
		if res != "" {
			got = res + ": " + got
		}
		if got != s.want {
			t.Fatalf("step %d (%s):\n got %s\nwant %s", i+1, s.do, got, s.want)
		}
		if err := p.CheckInvariants(); err != nil {
			t.Fatalf("step %d (%s): %v", i+1, s.do, err)
		}
	}
}

// TestProgressProbeToReplicate follows a follower from the leader's
// election (§5.3: nextIndex starts just after the leader's last entry) to
// pipelined replication. A probe is one message at a time; the follower's
// answer finds the match and replication then pipelines within the window.
func TestProgressProbeToReplicate(t *testing.T) {
	p := NewProgress(11, 2, 0, false)
	runScript(t, p, []step{
		{"start", func(*Progress) string { return "" }, "probe match=0 next=11"},
		{"send a probe with entries 11..12", sent(12, 2, 20), "probe match=0 next=11 paused"},
		{"ack of 12", acked(12), "true: probe match=12 next=13"},
		{"logs match: replicate", func(p *Progress) string { p.BecomeReplicate(); return "" }, "replicate match=12 next=13"},
		{"send 13..15", sent(15, 3, 30), "replicate match=12 next=16 inflight=1/30B"},
		{"send 16", sent(16, 1, 10), "replicate match=12 next=17 inflight=2/40B paused"},
		{"empty append adds nothing to the window", sent(16, 0, 0), "replicate match=12 next=17 inflight=2/40B paused"},
		{"ack of 15", func(p *Progress) string {
			up := p.MaybeUpdate(15)
			p.Inflights.FreeLE(15)
			return fmt.Sprint(up)
		}, "true: replicate match=15 next=17 inflight=1/10B"},
		{"duplicate ack of 15", acked(15), "false: replicate match=15 next=17 inflight=1/10B"},
		{"old ack of 13", acked(13), "false: replicate match=15 next=17 inflight=1/10B"},
	})
}

// TestProgressRejections shows how a rejected AppendEntries moves nextIndex
// back (§5.3: "decrement nextIndex and retry"), a whole term at a time via
// the hint, never below what is known to match, and that rejections of
// messages already superseded change nothing.
func TestProgressRejections(t *testing.T) {
	p := NewProgress(21, 8, 0, false)
	p.MaybeUpdate(5)
	p.BecomeReplicate()
	runScript(t, p, []step{
		{"replicating from 6", func(*Progress) string { return "" }, "replicate match=5 next=6"},
		{"send 6..20", sent(20, 15, 150), "replicate match=5 next=21 inflight=1/150B"},
		{"stale reject of 4 (below match)", rejected(4, 3), "false: replicate match=5 next=21 inflight=1/150B"},
		{"reject of 5, the match itself, is stale too", rejected(5, 0), "false: replicate match=5 next=21 inflight=1/150B"},
		{"reject of 20, hint 9: back to probing from 10", rejected(20, 9), "true: probe match=5 next=10"},
		{"probe at 9 (entries 10..12)", sent(12, 3, 30), "probe match=5 next=10 paused"},
		{"reject of an older probe at 20", rejected(20, 2), "false: probe match=5 next=10 paused"},
		{"reject of 9, hint 2: never below match+1", rejected(9, 2), "true: probe match=5 next=6"},
		{"reject of 7 with hint 100: next never moves past the rejected index", func(p *Progress) string {
			p.Next = 8 // a probe at 7 was sent
			return fmt.Sprint(p.MaybeDecrTo(7, 100))
		}, "true: probe match=5 next=7"},
	})
}

// TestProgressSnapshot shows the snapshot state (§7): a follower that needs
// compacted entries is sent a snapshot and nothing else until it is
// reported; a failed snapshot falls back to probing from the match, a
// delivered one from just after the snapshot.
func TestProgressSnapshot(t *testing.T) {
	p := NewProgress(101, 4, 0, false)
	p.MaybeUpdate(3)
	runScript(t, p, []step{
		{"needs compacted entries: snapshot at 90", func(p *Progress) string { p.BecomeSnapshot(90); return "" }, "snapshot match=3 next=101 snap=90 paused"},
		{"rejections do not apply", rejected(100, 10), "false: snapshot match=3 next=101 snap=90 paused"},
		{"snapshot delivered: probe after it", func(p *Progress) string { p.BecomeProbe(); return "" }, "probe match=3 next=91"},
		{"snapshot again", func(p *Progress) string { p.BecomeSnapshot(90); return "" }, "snapshot match=3 next=91 snap=90 paused"},
		{"snapshot failed: probe after the match", func(p *Progress) string {
			p.PendingSnapshot = 0
			p.BecomeProbe()
			return ""
		}, "probe match=3 next=4"},
		{"snapshot again", func(p *Progress) string { p.BecomeSnapshot(90); return "" }, "snapshot match=3 next=4 snap=90 paused"},
		{"the follower answers at 90", acked(90), "true: snapshot match=90 next=91 snap=90 paused"},
	})
	defer func() {
		if recover() == nil {
			t.Fatal("sending entries to a follower awaiting a snapshot did not panic")
		}
	}()
	p.SentEntries(95, 1, 1)
}

// TestProgressReplicateFallsBackToProbe shows that a replicating follower
// that becomes unreachable is probed again from after its match, with its
// window emptied (the messages in flight are presumed lost).
func TestProgressReplicateFallsBackToProbe(t *testing.T) {
	p := NewProgress(1, 4, 0, false)
	p.BecomeReplicate()
	runScript(t, p, []step{
		{"send 1..3", sent(3, 3, 3), "replicate match=0 next=4 inflight=1/3B"},
		{"send 4..5", sent(5, 2, 2), "replicate match=0 next=6 inflight=2/5B"},
		{"unreachable", func(p *Progress) string { p.BecomeProbe(); return "" }, "probe match=0 next=1"},
		{"probe", sent(5, 5, 5), "probe match=0 next=1 paused"},
		{"heartbeat answer unpauses", func(p *Progress) string { p.ProbeSent = false; return "" }, "probe match=0 next=1"},
	})
}

// TestProgressCheckInvariants shows that the invariant check names the
// values when Match < Next, the snapshot rule or the window breaks.
func TestProgressCheckInvariants(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(p *Progress)
	}{
		{"match not below next", func(p *Progress) { p.Match = p.Next }},
		{"snapshot state without a snapshot", func(p *Progress) { p.State = StateSnapshot }},
		{"messages in flight while probing", func(p *Progress) { p.Inflights.Add(12, 1) }},
		{"message in flight past next", func(p *Progress) {
			p.BecomeReplicate()
			p.Inflights.Add(p.Next+3, 1)
		}},
		{"message in flight already acknowledged", func(p *Progress) {
			p.BecomeReplicate()
			p.SentEntries(12, 2, 2)
			p.Match = 12
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewProgress(11, 4, 0, false)
			if err := p.CheckInvariants(); err != nil {
				t.Fatalf("fresh progress: %v", err)
			}
			tc.corrupt(p)
			if err := p.CheckInvariants(); err == nil {
				t.Fatalf("%s: no error for %s", tc.name, p)
			}
		})
	}
}
