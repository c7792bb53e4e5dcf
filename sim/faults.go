package sim

import (
	"fmt"
	"math/rand/v2"

	pb "github.com/raftkv/raftkv/raftpb"
)

// params are a run's shape and fault rates, drawn from its seed so that
// seeds cover quiet and violent clusters alike. Rates are per tick unless
// they say per message.
type params struct {
	replicas, voters int

	electionTicks, heartbeatTicks int
	maxMsgBytes                   uint64
	maxLearnerLag                 pb.Index

	dropRate, dupRate  float64 // per message
	minDelay, maxDelay int     // ticks

	crashRate, syncFailRate float64
	// leaderCrashRate kills the leader just after it accepts a proposal,
	// leaving entries of its term on few logs: with one entry per
	// AppendEntries this is the nemesis of Figure 8 (§5.4.2).
	leaderCrashRate float64
	// installCrashRate kills a replica just after it stored a snapshot a
	// leader sent, before its core hears of it (per snapshot): the file is
	// durable, the log record that installs it is not, and the restart
	// must install it (node.recover).
	installCrashRate  float64
	downTicksMax      int
	partitionRate     float64
	partitionTicksMax int

	proposeRate, readRate, transferRate, confRate float64

	// snapshotEvery is the applied entries between images (0: never);
	// snapshotMargin the entries kept in the log behind the applied index.
	snapshotEvery, snapshotMargin int
}

func randomParams(rng *rand.Rand) params {
	p := params{
		replicas:          3 + rng.IntN(5),
		electionTicks:     ElectionTicks,
		heartbeatTicks:    1 + rng.IntN(2),
		maxLearnerLag:     pb.Index(5 + rng.IntN(50)),
		dropRate:          pick(rng, 0, 0.01, 0.05, 0.15),
		dupRate:           pick(rng, 0, 0.01, 0.05),
		maxDelay:          rng.IntN(MaxDelayTicks + 1),
		crashRate:         pick(rng, 0, 0.003, 0.01, 0.03),
		syncFailRate:      pick(rng, 0, 0.002, 0.01),
		downTicksMax:      5 + rng.IntN(80),
		partitionRate:     pick(rng, 0, 0.005, 0.02, 0.05),
		partitionTicksMax: 5 + rng.IntN(100),
		proposeRate:       pick(rng, 0.05, 0.2, 0.5, 0.9),
		readRate:          pick(rng, 0, 0.05, 0.2),
		transferRate:      pick(rng, 0, 0.005, 0.02),
		confRate:          pick(rng, 0, 0.01, 0.03, 0.08),
		snapshotMargin:    rng.IntN(12),
	}
	p.installCrashRate = 10 * p.crashRate
	p.voters = 3 + rng.IntN(p.replicas-2)
	if rng.IntN(5) > 0 {
		p.snapshotEvery = 3 + rng.IntN(40)
	}
	if rng.IntN(3) == 0 {
		p.maxMsgBytes = uint64(60 + rng.IntN(400)) // a few entries per AppendEntries
	}
	if rng.IntN(4) == 0 {
		p.leaderCrashRate = pick(rng, 0.1, 0.3)
		p.maxMsgBytes = 1 // one entry per AppendEntries
	}
	return p
}

func pick(rng *rand.Rand, xs ...float64) float64 { return xs[rng.IntN(len(xs))] }

// upReplicas returns the running replicas in id order.
func (s *Sim) upReplicas() []*replica {
	var up []*replica
	for _, r := range s.reps {
		if r.up() {
			up = append(up, r)
		}
	}
	return up
}

func (s *Sim) randomUp() *replica {
	up := s.upReplicas()
	if len(up) == 0 {
		return nil
	}
	return up[s.rng.IntN(len(up))]
}

// randomEvents injects the safety phase's faults and client operations.
func (s *Sim) randomEvents() {
	p := &s.p
	if s.chance(p.crashRate) {
		if r := s.randomUp(); r != nil {
			r.downUntil = s.now + 1 + uint64(s.rng.IntN(p.downTicksMax))
			s.crash(r, "killed")
		}
	}
	if s.chance(p.syncFailRate) {
		if r := s.randomUp(); r != nil {
			s.failDisk(r)
		}
	}
	if s.partitionUntil > 0 && s.now >= s.partitionUntil {
		s.net.healAll()
		s.partitionUntil = 0
		s.trace.add(event{kind: evHeal})
	}
	if s.chance(p.partitionRate) {
		s.partition()
	}
	if s.chance(p.proposeRate) {
		s.proposeRandom()
	}
	if s.chance(p.readRate) {
		s.readRandom()
	}
	if s.chance(p.transferRate) {
		s.transferRandom()
	}
	if s.chance(p.confRate) {
		s.randomConfChange()
	}
	if s.plan != nil && s.now%3 == 0 {
		s.advancePlan()
	}
}

// failDisk arms a disk fault on r: the next fsync fails or, on a store
// that can, one time in four the next write.
func (s *Sim) failDisk(r *replica) {
	if w, ok := r.store.(interface{ FailNextWrite() }); ok && s.rng.IntN(4) == 0 {
		w.FailNextWrite()
		s.trace.add(event{kind: evSyncFail, node: r.id, text: "write"})
		return
	}
	r.store.FailNextSync()
	s.trace.add(event{kind: evSyncFail, node: r.id, text: "fsync"})
}

// partition cuts links: two random halves, one isolated replica, or a
// one-way cut between a few pairs.
func (s *Sim) partition() {
	n := len(s.reps)
	s.partitionUntil = s.now + 1 + uint64(s.rng.IntN(s.p.partitionTicksMax))
	switch s.rng.IntN(3) {
	case 0:
		side := make([]bool, n+1)
		for id := 1; id <= n; id++ {
			side[id] = s.rng.IntN(2) == 0
		}
		for a := 1; a <= n; a++ {
			for b := 1; b <= n; b++ {
				if side[a] != side[b] {
					s.net.cut[a][b] = true
				}
			}
		}
		s.trace.add(event{kind: evPartition, text: fmt.Sprintf("split %v", side[1:])})
	case 1:
		x := 1 + s.rng.IntN(n)
		for b := 1; b <= n; b++ {
			s.net.cut[x][b], s.net.cut[b][x] = true, true
		}
		s.trace.add(event{kind: evPartition, text: fmt.Sprintf("isolate %d", x)})
	default:
		for k := 1 + s.rng.IntN(n); k > 0; k-- {
			a, b := 1+s.rng.IntN(n), 1+s.rng.IntN(n)
			s.net.cut[a][b] = true
			s.trace.add(event{kind: evPartition, text: fmt.Sprintf("cut %d -> %d (one way)", a, b)})
		}
	}
}

// healAll ends the safety phase: no more loss, duplication or cuts, and
// every crashed replica restarts. (An fsync failure already armed may still
// fire once; the replica restarts at the next tick.)
func (s *Sim) healAll() {
	s.net.healAll()
	s.partitionUntil = 0
	s.p.dropRate, s.p.dupRate = 0, 0
	s.plan = nil
	for _, r := range s.reps {
		r.downUntil = 0 // restart at the next tick
	}
	s.trace.add(event{kind: evHeal, text: "everything (liveness phase)"})
}

// proposeRandom has a client send 1–3 commands, usually to the leader.
func (s *Sim) proposeRandom() {
	r := s.leader()
	if r == nil || s.rng.IntN(5) == 0 {
		r = s.randomUp()
	}
	if r == nil {
		return
	}
	n := 1 + s.rng.IntN(3)
	data := make([][]byte, n)
	ids := make([]uint64, n)
	for i := range data {
		s.nextCmd++
		ids[i] = s.nextCmd
		data[i] = s.clientCommand(s.nextCmd, s.rng.IntN(64))
	}
	s.propose(r, data, ids)
}

func (s *Sim) propose(r *replica, data [][]byte, ids []uint64) (pb.Index, pb.Term, error) {
	first, term, err := r.core.Propose(data...)
	if err != nil {
		return 0, 0, err
	}
	s.check.onPropose(first, term, ids)
	s.trace.add(event{kind: evPropose, node: r.id, a: uint64(first), b: uint64(term), c: uint64(len(data))})
	s.drain(r)
	if s.chance(s.p.leaderCrashRate) && r.up() {
		r.downUntil = s.now + 1 + uint64(s.rng.IntN(s.p.downTicksMax))
		s.crash(r, "leader killed after a proposal")
	}
	return first, term, nil
}

// readRandom asks a random replica for a ReadIndex, or the leader for a
// lease read (§6.4.1: no heartbeat round while the lease holds).
func (s *Sim) readRandom() {
	r, lease := s.randomUp(), false
	if lead := s.leader(); lead != nil && s.rng.IntN(2) == 0 {
		r, lease = lead, true
	}
	if r == nil {
		return
	}
	s.nextRead++
	s.check.onReadRequest(s.nextRead)
	ask, how := r.core.ReadIndex, "read"
	if lease {
		ask, how = r.core.LeaseRead, "lease read"
	}
	if err := ask(command(s.nextRead, 0)); err != nil {
		return
	}
	s.trace.add(event{kind: evRead, node: r.id, text: fmt.Sprintf("asks %s %d", how, s.nextRead)})
	s.drain(r)
}

// transferRandom asks some replica to move leadership to a random voter.
func (s *Sim) transferRandom() {
	lead := s.leader()
	if lead == nil {
		return
	}
	voters := lead.core.ConfState().Voters
	to := voters[s.rng.IntN(len(voters))]
	via := lead
	if s.rng.IntN(3) == 0 {
		via = s.randomUp() // a follower forwards the request
	}
	err := via.core.TransferLeader(to)
	text := ""
	if err != nil {
		text = "refused: " + err.Error()
	}
	s.trace.add(event{kind: evTransfer, node: via.id, a: uint64(to), text: text})
	s.drain(via)
}
