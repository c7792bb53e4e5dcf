package sim

import (
	"container/heap"
	"fmt"
	"math/rand/v2"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// Closed connections (raft/closed.go). On two thirds of the seeds the
// replicas run with the early election a closed connection allows: a lease
// of two heartbeat intervals, and the shortest vote refusal after a closed
// connection to the leader that the runtime allows with ticks on time
// (driver.ClosedPromiseTicks). The network then reports what a kernel
// would: a crashed replica's connections close at every peer whose link
// from it is not cut, and a message to a replica that is down is refused.
// It also lies the way networks do: links between running replicas are
// reset at random (the ends hear the connection closed, and messages keep
// flowing), and on half of these seeds every partition answers with RST,
// so each replica that cannot reach another hears its connection to it
// closed while that one lives on the other side. None of this may cost
// safety: lease reads must stay linearizable (check_reads.go), and no
// leader may hold a lease once a leader of a later term was elected
// (checkLeases).

// closedSignals draws the closed-connection parameters from a stream of
// their own, so that the seeds without them run as they did before.
func closedSignals(p *params, rng *rand.Rand) {
	if rng.IntN(3) == 0 {
		return
	}
	p.closedSignal = true
	p.leaseTicks = 2 * p.heartbeatTicks
	p.resetRate = pick(rng, 0, 0.005, 0.02)
	p.rstPartitions = rng.IntN(2) == 0
}

// notifyClosed tells replica to, after up to a tick, that its connection
// to from closed.
func (n *network) notifyClosed(s *Sim, from pb.NodeID, to *replica) {
	n.seq++
	heap.Push(&n.queue, &envelope{m: pb.Message{From: from, To: to.id}, at: s.now + uint64(s.rng.IntN(2)),
		seq: n.seq, toInc: to.incarnation, closed: true})
}

// deliverClosed hands a closed-connection report to its replica, if the
// incarnation it was meant for still runs; a paused one gets it when it
// resumes.
func (n *network) deliverClosed(s *Sim, env *envelope) {
	to := s.replica(env.m.To)
	if !to.up() || to.incarnation != env.toInc {
		return
	}
	if s.paused(to) {
		env.at = to.pausedUntil
		heap.Push(&n.queue, env)
		return
	}
	s.trace.add(event{kind: evNote, node: to.id, text: fmt.Sprintf("connection to %d closed", env.m.From)})
	s.stats.ClosedReports++
	if to.core.Role() == raft.Follower && to.core.Lead() == env.m.From {
		s.stats.ClosedLeader++
	}
	to.rt.ReportClosed(env.m.From)
	s.drain(to)
}

// closedByCrash reports a crashed replica's connections closed.
func (s *Sim) closedByCrash(dead pb.NodeID) {
	if !s.p.closedSignal {
		return
	}
	for _, r := range s.reps {
		if r.id != dead && r.up() && !s.net.isCut(dead, r.id) {
			s.net.notifyClosed(s, dead, r)
		}
	}
}

// refused reports to the sender of m, sent by its incarnation fromInc to a
// replica that is down, that the connection was refused.
func (s *Sim) refused(m pb.Message, fromInc uint64) {
	if !s.p.closedSignal {
		return
	}
	if from := s.replica(m.From); from.up() && from.incarnation == fromInc {
		s.net.notifyClosed(s, m.To, from)
	}
}

// resetLink reports the connection between two running replicas closed at
// both ends; nothing else changes.
func (s *Sim) resetLink() {
	up := s.upReplicas()
	if len(up) < 2 {
		return
	}
	i := s.rng.IntN(len(up))
	j := (i + 1 + s.rng.IntN(len(up)-1)) % len(up)
	a, b := up[i], up[j]
	s.trace.add(event{kind: evPartition, text: fmt.Sprintf("link %d <-> %d reset", a.id, b.id)})
	s.net.notifyClosed(s, a.id, b)
	s.net.notifyClosed(s, b.id, a)
}

// rstPartition reports, for every cut link, the connection closed at the
// end that can no longer send: a firewall answering with RST.
func (s *Sim) rstPartition() {
	if !s.p.rstPartitions {
		return
	}
	for _, a := range s.reps {
		for _, b := range s.reps {
			if a != b && a.up() && s.net.isCut(a.id, b.id) {
				s.net.notifyClosed(s, b.id, a)
			}
		}
	}
}

// checkLeases checks the lease's promise directly (§6.4.1): a leader that
// would answer a lease read now (its core holds the lease and its runtime
// trusts its ticks) leads the newest term a leader was elected in. A stale
// lease read needs more luck to be seen: a read asked at that moment, and
// a write committed by the newer leader first.
func (c *checker) checkLeases() {
	for _, r := range c.s.reps {
		if !r.up() || c.s.paused(r) || !r.core.LeaseValid() || !r.rt.LeaseTrusted(c.s.clock()) {
			continue
		}
		if term := r.core.Term(); c.election.newest > term {
			c.failf("lease (§6.4.1): %d would answer lease reads in term %d, but %d was elected in term %d",
				r.id, term, c.election.leaders[c.election.newest], c.election.newest)
			return
		}
	}
}
