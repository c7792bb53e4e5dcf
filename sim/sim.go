package sim

import (
	"fmt"
	"math/rand/v2"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// DefaultSteps is the length of the safety phase in ticks.
const DefaultSteps = 600

// ElectionTicks is the simulated election timeout E: each replica's timeout
// is drawn from [E, 2E).
const ElectionTicks = 10

// MaxDelayTicks bounds the ordinary per-message network delay; slow
// messages (on a third of the seeds) take up to 3*ElectionTicks.
const MaxDelayTicks = 3

// LivenessTicks bounds the liveness phase: once every fault has healed, a
// leader must commit a fresh proposal within this many ticks. Derivation,
// with E = ElectionTicks and D = MaxDelayTicks:
//   - a leader cut off from its quorum notices within 2E (CheckQuorum looks
//     every E ticks at who answered during the previous E);
//   - followers ignore campaigns for E after the last heartbeat (§6 vote
//     lease), and a randomized timeout fires within 2E after that;
//   - a PreVote and a vote round cost at most 4D;
//   - split votes are retried with fresh random timeouts: allow 8 attempts;
//   - then a joint configuration left pending needs its C_new appended and
//     committed, and the fresh proposal committed: a few round trips, 8D.
//
// 2E + E + 8*(2E + 4D) + 8D = 30 + 8*32 + 24 = 310 ticks for E=10, D=3;
// rounded up to 32 election timeouts.
const LivenessTicks = 32 * ElectionTicks

// Options choose a run. Everything else is drawn from Seed.
type Options struct {
	Seed uint64
	// Steps is the length of the safety phase in ticks (DefaultSteps if 0).
	Steps int
	// Store builds each replica's store: NewWALStore (the production WAL
	// and snapshot files on a fault-injecting file system; the default when
	// nil) or NewMemStore (the in-memory durability model).
	Store StoreFactory
	// FSM chooses the state machine (FSMAuto: kv on half the seeds).
	FSM FSM
	// TraceLen is how many events a failure report shows (TraceLen if 0).
	TraceLen int
}

// Stats count what a run did, to show the faults were exercised.
type Stats struct {
	Ticks, Messages, Crashes, Snapshots, Installs uint64
	Leaders, ConfChanges, Acked, Reads            uint64
	// LeaseReads and ForwardedReads count the answered reads that were
	// lease reads and ReadIndex reads asked at a follower (the rest of
	// Reads asked the leader directly).
	LeaseReads, ForwardedReads uint64
	// TornCrashes counts crashes that tore the last unsynced write;
	// Transfers the TimeoutNow messages sent (a transfer reached its end
	// on the leader's side).
	TornCrashes, Transfers uint64
	// LivenessTicks is how long the liveness phase took to commit.
	LivenessTicks uint64
	// What the runtimes' policy did (driver.Counters), summed over
	// replicas and incarnations.
	GroupCommits, PipelineFull, StallHandOvers, LeaseGaps uint64
	// ClosedReports counts closed-connection reports delivered, and
	// ClosedLeader those about the leader the replica was following, which
	// shorten its vote refusal (closed.go).
	ClosedReports, ClosedLeader uint64
	// DoubleTicks counts the instants a replica took a held-back tick and
	// the next one together (lateTickRate).
	DoubleTicks uint64
	// CommitNotices counts the commit-notice timers (driver.Work.CommitUnsent)
	// that fired while a follower still had not been sent the commit index.
	CommitNotices uint64
}

// Result is the outcome of a run.
type Result struct {
	Seed   uint64
	Err    error
	Trace  string // the last TraceLen events, set when Err is
	Digest uint64 // digest of every event of the run
	Stats  Stats
}

// Sim is one simulated cluster.
type Sim struct {
	seed  uint64
	steps int
	rng   *rand.Rand
	p     params
	now   uint64
	reps  []*replica // reps[i] has id i+1
	net   network
	check checker
	trace trace
	stats Stats
	err   error

	nextCmd, nextRead uint64
	partitionUntil    uint64
	// bridge is the replica both sides of a bridge partition reach (0: none);
	// bridgeSides[id] says which side replica id is on.
	bridge      pb.NodeID
	bridgeSides []bool
	bridgeSince uint64
	// stillUntil holds partitions, bounces and crashes off until then
	// (deafenBridge: the scenario needs a while to play out).
	stillUntil uint64
	plan       *confPlan
	// withKV runs the kv state machine beside the hash-only one.
	withKV bool
}

// New builds the cluster of opt.Seed: replicas 1..n, of which the first
// voters are bootstrapped as the initial configuration and the rest start
// empty, outside it, ready to be added.
func New(opt Options) *Sim {
	return newSim(opt, func(rng *rand.Rand) params {
		p := randomParams(rng)
		slowMessages(&p, rand.New(rand.NewPCG(opt.Seed, 0x510e)))
		closedSignals(&p, rand.New(rand.NewPCG(opt.Seed, 0xc105ed)))
		lateTicks(&p, rand.New(rand.NewPCG(opt.Seed, 0x1a7e)))
		return p
	})
}

// newSim builds a Sim whose parameters come from choose (scripted tests
// fix them; runs draw them from the seed).
func newSim(opt Options, choose func(*rand.Rand) params) *Sim {
	s := &Sim{seed: opt.Seed, steps: opt.Steps, rng: rand.New(rand.NewPCG(opt.Seed, 0x5eed)),
		withKV: opt.FSM.withKV(opt.Seed)}
	if s.steps == 0 {
		s.steps = DefaultSteps
	}
	s.trace.now = &s.now
	s.trace.ring = make([]event, TraceLen)
	if opt.TraceLen > 0 {
		s.trace.ring = make([]event, opt.TraceLen)
	}
	s.check = newChecker(s)
	s.p = choose(s.rng)
	s.build(opt.Store)
	return s
}

func (s *Sim) build(factory StoreFactory) {
	if factory == nil {
		factory = NewWALStore
	}
	voters := make([]pb.NodeID, s.p.voters)
	for i := range voters {
		voters[i] = pb.NodeID(i + 1)
	}
	hs, ents, err := raft.Bootstrap(voters)
	if err != nil {
		s.failf("bootstrap: %v", err)
		return
	}
	for i := 0; i < s.p.replicas; i++ {
		id := pb.NodeID(i + 1)
		r := &replica{id: id, store: factory(id, mix64(s.seed^uint64(id)*0x9e3779b97f4a7c15))}
		if i < s.p.voters {
			if err := r.store.Save(hs, nil, ents); err == nil {
				err = r.store.Sync()
			}
			if err != nil {
				s.failf("bootstrap %d: %v", r.id, err)
				return
			}
		}
		s.reps = append(s.reps, r)
		s.start(r)
	}
}

func (s *Sim) replica(id pb.NodeID) *replica { return s.reps[id-1] }

// failf records the first violation; the run stops at the next check.
func (s *Sim) failf(format string, args ...any) {
	if s.err == nil {
		s.err = fmt.Errorf(format, args...)
		s.trace.add(event{kind: evNote, text: "FAILED: " + s.err.Error()})
	}
}

func (s *Sim) chance(p float64) bool { return p > 0 && s.rng.Float64() < p }

// delay draws a message's delay: a slow one on a slow link or at
// slowRate, else an ordinary one.
func (s *Sim) delay(slowLink bool) uint64 {
	if slowLink || s.chance(s.p.slowRate) {
		return uint64(s.p.slowDelayMin + s.rng.IntN(s.p.slowDelayMax-s.p.slowDelayMin+1))
	}
	if s.p.maxDelay <= s.p.minDelay {
		return uint64(s.p.minDelay)
	}
	return uint64(s.p.minDelay + s.rng.IntN(s.p.maxDelay-s.p.minDelay+1))
}

// Run plays both phases and reports the outcome.
func (s *Sim) Run() Result {
	for i := 0; i < s.steps && s.err == nil; i++ {
		s.randomEvents()
		s.tick()
	}
	if s.err == nil {
		s.liveness()
	}
	for _, r := range s.reps {
		s.countRuntime(r)
	}
	res := Result{Seed: s.seed, Err: s.err, Digest: s.trace.digest, Stats: s.stats}
	if s.err != nil {
		res.Trace = s.trace.String() + "--- replicas ---\n" + s.stateDump()
	}
	return res
}

// tick advances virtual time by one: restarts due, every running core
// ticks, messages due arrive, and the checker sweeps.
func (s *Sim) tick() {
	s.now++
	s.stats.Ticks++
	for _, r := range s.reps {
		if !r.up() && s.now >= r.downUntil && s.err == nil {
			s.start(r)
			s.drain(r)
		}
	}
	for _, r := range s.reps {
		if !r.up() || s.paused(r) || s.err != nil {
			continue
		}
		if r.pausedUntil > 0 {
			r.pausedUntil = 0
			s.resume(r)
			if !r.up() || s.err != nil {
				continue
			}
		}
		if s.chance(s.p.lateTickRate) {
			r.tickWaiting = true
			continue
		}
		n := 1
		if r.tickWaiting {
			n, r.tickWaiting = 2, false
			s.stats.DoubleTicks++
		}
		for range n {
			if err := r.rt.Tick(s.clock()); err != nil {
				s.failf("replica %d: tick: %v", r.id, err)
				break
			}
			s.drain(r)
			if !r.up() || s.err != nil {
				break
			}
		}
	}
	s.net.deliverDue(s)
	if s.err == nil {
		s.check.sweep()
	}
}

// leader returns the running leader of the highest term, or nil.
func (s *Sim) leader() *replica {
	var best *replica
	for _, r := range s.reps {
		if r.up() && !s.paused(r) && r.core.Role() == raft.Leader && (best == nil || r.core.Term() > best.core.Term()) {
			best = r
		}
	}
	return best
}

// liveness heals everything, restarts every crashed replica, and requires
// a leader to commit a fresh proposal within LivenessTicks.
func (s *Sim) liveness() {
	s.healAll()
	start := s.now
	var want proposal
	for s.now-start < LivenessTicks && s.err == nil {
		s.tick()
		if want.index > 0 {
			if ce := s.check.committed.at(want.index); ce.applied {
				if ce.term == want.term {
					s.stats.LivenessTicks = s.now - start
					if lead := s.leader(); lead != nil {
						s.check.checkAcked(lead)
					}
					return
				}
				want = proposal{} // overwritten: propose again
			}
		}
		lead := s.leader()
		if lead == nil || (want.index > 0 && want.term == lead.core.Term()) {
			continue
		}
		s.nextCmd++
		idx, term, err := lead.rt.Propose(s.clientCommand(s.nextCmd, 0))
		if err != nil {
			continue
		}
		want = proposal{index: idx, term: term, cmd: s.nextCmd}
		s.check.onPropose(lead.id, idx, term, []uint64{s.nextCmd})
		s.trace.add(event{kind: evPropose, node: lead.id, a: uint64(idx), b: uint64(term), c: 1, text: " (liveness)"})
		s.drain(lead)
	}
	if s.err == nil {
		s.failf("liveness: no proposal committed within %d ticks of healing (want %d/%d)",
			LivenessTicks, want.index, want.term)
	}
}
