package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/confchange"
	pb "github.com/raftkv/raftkv/raftpb"
)

// scripted is a Sim without random faults, driven step by step by a test.
// The checkers run as in random runs; a violation fails the test with the
// trace.
type scripted struct {
	*Sim
	t    *testing.T
	load *loadgen
}

// scriptedParams is a quiet network: every message takes exactly one tick.
func scriptedParams(replicas, voters int) func(*rand.Rand) params {
	return func(*rand.Rand) params {
		return params{
			replicas: replicas, voters: voters,
			electionTicks: ElectionTicks, heartbeatTicks: 1,
			maxLearnerLag: 20,
			minDelay:      1, maxDelay: 1,
			snapshotEvery: 10, snapshotMargin: 3,
		}
	}
}

func newScripted(t *testing.T, replicas, voters int) *scripted {
	t.Helper()
	c := &scripted{Sim: newSim(Options{Seed: 1}, scriptedParams(replicas, voters)), t: t}
	c.ok()
	return c
}

// ok fails the test if a checker found a violation.
func (c *scripted) ok() {
	c.t.Helper()
	if c.err != nil {
		c.t.Fatalf("%v\n--- last events ---\n%s--- replicas ---\n%s", c.err, c.trace.String(), c.stateDump())
	}
}

// run advances n ticks, with the client load if one is attached.
func (c *scripted) run(n int) {
	c.t.Helper()
	for i := 0; i < n; i++ {
		if c.load != nil {
			c.load.step()
		}
		c.tick()
		c.ok()
	}
}

// runUntil advances tick by tick until cond holds, for at most n ticks.
func (c *scripted) runUntil(n int, what string, cond func() bool) {
	c.t.Helper()
	for i := 0; i < n; i++ {
		if cond() {
			return
		}
		c.run(1)
	}
	if !cond() {
		c.t.Fatalf("t%d: %s did not happen within %d ticks\n--- replicas ---\n%s", c.now, what, n, c.stateDump())
	}
}

func (c *scripted) waitLeader() *replica {
	c.t.Helper()
	c.runUntil(LivenessTicks, "a leader", func() bool { return c.leader() != nil })
	return c.leader()
}

// confOf returns the configuration in force at replica id.
func (c *scripted) confOf(id pb.NodeID) pb.ConfState { return c.replica(id).core.ConfState() }

// committedConf reports whether replica id has committed a configuration
// with exactly these voters (not joint).
func (c *scripted) committedConf(id pb.NodeID, voters []pb.NodeID) bool {
	r := c.replica(id)
	return r.up() && slices.Equal(r.sm.conf.Voters, voters) && !r.sm.conf.Joint()
}

// addLearners adds ids as learners on the current leader and waits until
// the configuration is applied by the leader.
func (c *scripted) addLearners(ids ...pb.NodeID) {
	c.t.Helper()
	lead := c.waitLeader()
	cs := lead.core.ConfState()
	t := confchange.Target{Voters: cs.Voters, Learners: slices.Concat(cs.Learners, ids)}
	if _, _, err := lead.core.ProposeConfChange(t); err != nil {
		c.t.Fatalf("add learners %v: %v", ids, err)
	}
	c.drain(lead)
	c.runUntil(LivenessTicks, fmt.Sprintf("learners %v applied", ids), func() bool {
		for _, id := range ids {
			if !slices.Contains(lead.sm.conf.Learners, id) {
				return false
			}
		}
		return true
	})
}

// proposeVoters proposes the joint change to voters on the leader, whose
// new members must be caught-up learners.
func (c *scripted) proposeVoters(voters ...pb.NodeID) (*replica, pb.Index) {
	c.t.Helper()
	lead := c.waitLeader()
	idx, _, err := lead.core.ProposeConfChange(confchange.SetVoters(lead.core.ConfState(), voters))
	if err != nil {
		c.t.Fatalf("propose voters %v: %v", voters, err)
	}
	c.drain(lead)
	return lead, idx
}

// waitConf waits until every running member of voters has committed
// exactly that voter set.
func (c *scripted) waitConf(voters ...pb.NodeID) {
	c.t.Helper()
	voters = slices.Sorted(slices.Values(voters))
	c.runUntil(3*LivenessTicks, fmt.Sprintf("voters %v committed everywhere", voters), func() bool {
		for _, id := range voters {
			if r := c.replica(id); r.up() && !c.committedConf(id, voters) {
				return false
			}
		}
		return true
	})
}

// isolate cuts every link to and from id.
func (c *scripted) isolate(id pb.NodeID) {
	for o := range c.reps {
		c.net.cut[id][o+1], c.net.cut[o+1][id] = true, true
	}
}

// split cuts every link between the two sides.
func (c *scripted) split(a, b []pb.NodeID) {
	for _, x := range a {
		for _, y := range b {
			c.net.cut[x][y], c.net.cut[y][x] = true, true
		}
	}
}

// finish heals the cluster, requires the liveness phase to pass, and holds
// the client load to exactly-once delivery.
func (c *scripted) finish() {
	c.t.Helper()
	if c.load != nil {
		c.load.stop = true
		c.runUntil(3*LivenessTicks, "every client command committed", c.load.settled)
	}
	c.liveness()
	c.ok()
	if c.load != nil {
		c.load.check()
	}
}

// loadgen is a client sending one command per tick to the leader. A
// command whose entry is overwritten (its index ends up holding an entry of
// another term) was not committed, and is sent again under the same id; so
// at the end every command must be committed exactly once.
type loadgen struct {
	c       *scripted
	next    uint64
	stop    bool
	pending map[uint64]proposal // command id -> where it was proposed
	retry   []uint64
	done    map[uint64]pb.Index
	refused int
}

func (c *scripted) startLoad() *loadgen {
	c.load = &loadgen{c: c, pending: map[uint64]proposal{}, done: map[uint64]pb.Index{}}
	return c.load
}

func (l *loadgen) step() {
	l.resolve()
	if l.stop && len(l.retry) == 0 {
		return
	}
	lead := l.c.leader()
	if lead == nil {
		return
	}
	var id uint64
	if len(l.retry) > 0 {
		id = l.retry[0]
	} else {
		l.next++
		id = 1<<40 + l.next // apart from the random clients' ids
	}
	idx, term, err := l.c.propose(lead, [][]byte{command(id, 8)}, []uint64{id})
	var nl *raft.NotLeaderError
	switch {
	case err == nil:
		if len(l.retry) > 0 && l.retry[0] == id {
			l.retry = l.retry[1:]
		}
		l.pending[id] = proposal{index: idx, term: term, cmd: id}
	case errors.Is(err, raft.ErrTransferring), errors.As(err, &nl), errors.Is(err, raft.ErrProposalDropped):
		l.refused++
		if len(l.retry) == 0 || l.retry[0] != id {
			l.retry = append(l.retry, id)
		}
	default:
		l.c.t.Fatalf("propose: %v", err)
	}
}

// resolve learns which pending commands committed and which were lost.
func (l *loadgen) resolve() {
	ids := make([]uint64, 0, len(l.pending))
	for id := range l.pending {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		p := l.pending[id]
		ce := l.c.check.committed.at(p.index)
		if !ce.applied {
			continue
		}
		delete(l.pending, id)
		if ce.term == p.term {
			l.done[id] = p.index
		} else {
			l.retry = append(l.retry, id)
		}
	}
}

func (l *loadgen) settled() bool {
	l.resolve()
	return len(l.pending) == 0 && len(l.retry) == 0
}

// check holds the load to exactly-once, same-order delivery: every command
// committed at one index (the checker fails a run on a second), and every
// running replica's state machine applied what it applied in the order of
// the committed log.
func (l *loadgen) check() {
	t := l.c.t
	t.Helper()
	for id := uint64(1); id <= l.next; id++ {
		cmd := 1<<40 + id
		at, ok := l.c.check.clients.applied[cmd]
		if !ok {
			t.Fatalf("command %d was never committed", cmd)
		}
		if l.done[cmd] != at {
			t.Fatalf("command %d committed at %d, the client saw %d", cmd, at, l.done[cmd])
		}
	}
	for _, r := range l.c.reps {
		if !r.up() {
			continue
		}
		for _, rec := range r.sm.records {
			ce := l.c.check.committed.at(rec.index)
			if !ce.applied || ce.term != rec.term || ce.hash != rec.hash {
				t.Fatalf("replica %d applied %d/%d out of the committed order", r.id, rec.index, rec.term)
			}
		}
	}
	t.Logf("%d commands committed exactly once (%d refusals retried)", l.next, l.refused)
}

// maxApplied is the highest index any replica has applied.
func (c *scripted) maxApplied() pb.Index {
	var m pb.Index
	for i := len(c.check.committed.ents) - 1; i > 0; i-- {
		if c.check.committed.ents[i].applied {
			return pb.Index(i)
		}
	}
	return m
}
