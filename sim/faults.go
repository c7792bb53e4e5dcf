package sim

import (
	"fmt"
	"math/rand/v2"

	"github.com/raftkv/raftkv/raft"
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
	// slowRate is the share of messages that take a long delay instead, of
	// slowDelayMin to slowDelayMax ticks: past the lease margin (half an
	// election timeout), as a congested link or a stalled connection
	// delivers them. A heartbeat answer that late must not back a read
	// lease past the voter's refusal (§6.4.1).
	slowRate                   float64
	slowDelayMin, slowDelayMax int

	crashRate, syncFailRate float64
	// bounceRate kills a replica and restarts it at the next tick, as a
	// supervisor restarts a crashed server: a voter whose answer may still
	// back a leader's read lease comes back having forgotten that leader
	// (§6.4.1).
	bounceRate float64
	// leaseNemesis aims the faults at read leases: every partition is a
	// bridge, a bounce during one restarts the bridge (the voter both sides
	// count on), writes are few, and every leader, stale or not, is asked
	// for lease reads at leaseReadRate per tick.
	leaseNemesis  bool
	leaseReadRate float64
	// diskFullRate fills a replica's disk, or frees a full one (space.go).
	diskFullRate float64
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
	// snapshotMargin the runtime's SnapshotTrailingEntries.
	snapshotEvery, snapshotMargin int

	// disablePreVote and disableCheckQuorum turn the core's protections
	// off (the playground's toggles; randomized runs keep both on).
	disablePreVote, disableCheckQuorum bool

	// The runtime's queue bounds, and how late the I/O it asks for
	// completes (ticks; 0: at once): fsyncs, apply jobs, snapshot writes.
	maxOutstandingReadys, maxApplyJobs           int
	persistDelayMax, applyDelayMax, snapDelayMax int
	// stallRate stalls a replica's fsyncs (the leader's, half the time)
	// for up to stallTicksMax ticks: long enough for the runtime's
	// disk-stall hand-over.
	stallRate     float64
	stallTicksMax int
	// pauseRate freezes a replica's process (SIGSTOP, a long GC pause) for
	// up to pauseTicksMax ticks: no ticks, no messages handled, no I/O.
	// Half the time a replica that led resumes into a lease read, which
	// the runtime's lease guard must turn into a ReadIndex.
	pauseRate     float64
	pauseTicksMax int

	// leaseTicks is the cores' LeaseTicks (0: the default). closedSignal
	// turns on closed-connection reports and the early election they
	// allow; resetRate resets a link between running replicas, and
	// rstPartitions makes every partition report its cut links closed
	// (closed.go).
	leaseTicks    int
	closedSignal  bool
	resetRate     float64
	rstPartitions bool

	// lateTickRate holds a replica's tick back, as a busy run loop does
	// with a ticker: one tick waits, the ones due meanwhile are dropped,
	// and the waiting one is taken just before the next one due, so two
	// ticks can come at one instant though never more in all than the
	// clock allows (driver.ClosedPromiseTicks counts on both).
	lateTickRate float64
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
	if rng.IntN(3) == 0 {
		p.bounceRate = pick(rng, 0.01, 0.03)
	}
	if rng.IntN(3) == 0 {
		p.leaseNemesis = true
		p.bounceRate = pick(rng, 0.1, 0.2)
		p.leaseReadRate = pick(rng, 0.5, 1)
		p.partitionRate = max(p.partitionRate, 0.05)
		p.partitionTicksMax = max(p.partitionTicksMax, 40)
		// Few writes: a side cut off from the leader keeps a log as up to
		// date as the bridge's, so the bridge may vote for it. A fast
		// network: an election fits in the lease.
		p.proposeRate = pick(rng, 0.01, 0.05)
		p.maxDelay = min(p.maxDelay, rng.IntN(2))
	}
	// From a value already drawn, not a new draw: the seeds without this
	// fault run as they did before it existed.
	p.diskFullRate = []float64{0, 0, 0.005, 0.02}[p.downTicksMax%4]
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
	p.maxOutstandingReadys = []int{1, 2, 4, 64}[rng.IntN(4)]
	p.maxApplyJobs = []int{1, 2, 64}[rng.IntN(3)]
	if rng.IntN(3) > 0 {
		p.persistDelayMax = rng.IntN(4)
		p.applyDelayMax = rng.IntN(4)
		p.snapDelayMax = rng.IntN(6)
	}
	p.stallRate = pick(rng, 0, 0, 0.005, 0.02)
	p.stallTicksMax = 3 * ElectionTicks
	p.pauseRate = pick(rng, 0, 0, 0.005, 0.01)
	p.pauseTicksMax = 4 * ElectionTicks
	return p
}

// slowMessages gives a third of the seeds slow messages. It draws from a
// stream of its own, so that the other seeds run as they did before slow
// messages existed (and the seeds recorded as finding bugs still do).
func slowMessages(p *params, rng *rand.Rand) {
	if rng.IntN(3) != 0 {
		return
	}
	p.slowRate = pick(rng, 0.02, 0.1, 0.3)
	p.slowDelayMin = p.electionTicks/2 + 1
	p.slowDelayMax = 3 * p.electionTicks
}

// lateTicks gives half the seeds late ticks, from a stream of its own
// (see slowMessages).
func lateTicks(p *params, rng *rand.Rand) {
	p.lateTickRate = pick(rng, 0, 0, 0.05, 0.2)
}

func pick(rng *rand.Rand, xs ...float64) float64 { return xs[rng.IntN(len(xs))] }

// upReplicas returns the running replicas that are not paused, in id
// order.
func (s *Sim) upReplicas() []*replica {
	var up []*replica
	for _, r := range s.reps {
		if r.up() && !s.paused(r) {
			up = append(up, r)
		}
	}
	return up
}

// upLeaders returns the running replicas that believe they lead, in id
// order.
func (s *Sim) upLeaders() []*replica {
	var out []*replica
	for _, r := range s.reps {
		if r.up() && !s.paused(r) && r.core.Role() == raft.Leader {
			out = append(out, r)
		}
	}
	return out
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
	if s.now >= s.stillUntil && s.chance(p.crashRate) {
		if r := s.randomUp(); r != nil {
			r.downUntil = s.now + 1 + uint64(s.rng.IntN(p.downTicksMax))
			s.crash(r, "killed")
		}
	}
	if s.now >= s.stillUntil && s.chance(p.bounceRate) {
		if s.bridgeSettled() {
			s.bounceBridge()
		} else if r := s.randomUp(); r != nil {
			r.downUntil = s.now + 1
			s.crash(r, "killed, restarting at once")
		}
	}
	if s.chance(p.syncFailRate) {
		if r := s.randomUp(); r != nil {
			s.failDisk(r)
		}
	}
	if s.chance(p.diskFullRate) {
		s.toggleDiskFull()
	}
	if s.chance(p.stallRate) {
		s.stallDisk()
	}
	if s.chance(p.pauseRate) {
		if r := s.randomUp(); r != nil {
			r.pausedUntil = s.now + 1 + uint64(s.rng.IntN(p.pauseTicksMax))
			s.trace.add(event{kind: evNote, node: r.id, text: fmt.Sprintf("process paused until t%d", r.pausedUntil)})
		}
	}
	if s.partitionUntil > 0 && s.now >= s.partitionUntil {
		s.net.healAll()
		s.partitionUntil, s.bridge = 0, 0
		s.trace.add(event{kind: evHeal})
	}
	if s.now >= s.stillUntil && s.chance(p.partitionRate) {
		s.partition()
		s.rstPartition()
	}
	if s.chance(p.resetRate) {
		s.resetLink()
	}
	if s.chance(p.proposeRate) {
		s.proposeRandom()
	}
	if s.chance(p.readRate) {
		s.readRandom()
	}
	if p.leaseReadRate > 0 {
		for _, r := range s.upLeaders() {
			if s.chance(p.leaseReadRate) {
				s.read(r, true)
			}
		}
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

// bridgePartition splits the replicas in two sides that both reach one
// replica, the bridge, and not each other. The leader, if there is one, is
// not the bridge, and is on side false.
func (s *Sim) bridgePartition() {
	n := len(s.reps)
	var lead pb.NodeID
	if l := s.leader(); l != nil {
		lead = l.id
	}
	bridge := pb.NodeID(1 + s.rng.IntN(n))
	if bridge == lead {
		bridge = bridge%pb.NodeID(n) + 1
	}
	// Halves as equal as can be, so that each side with the bridge may be
	// a quorum: the leader's keeps its lease, the other may elect.
	others := make([]int, 0, n)
	for _, id := range s.rng.Perm(n) {
		if pb.NodeID(id+1) != bridge && pb.NodeID(id+1) != lead {
			others = append(others, id+1)
		}
	}
	if l := s.leader(); s.p.slowRate > 0 && l != nil {
		bridge, others = s.votingBridge(l, bridge, others)
	}
	side := make([]bool, n+1)
	for i, id := range others {
		side[id] = i%2 == 0
	}
	s.bridge, s.bridgeSides, s.bridgeSince = bridge, side, s.now
	for a := 1; a <= n; a++ {
		for b := 1; b <= n; b++ {
			if pb.NodeID(a) != bridge && pb.NodeID(b) != bridge && side[a] != side[b] {
				s.net.cut[a][b] = true
			}
		}
	}
	text := ""
	if s.p.slowRate > 0 {
		// The bridge's answers to the leader's side go over a congested
		// link: some arrive long after they were sent (deafenBridge).
		for id := 1; id <= n; id++ {
			if pb.NodeID(id) != bridge && !side[id] {
				s.net.slow[bridge][id] = true
			}
		}
		text = ", its link to side false slow"
	}
	s.trace.add(event{kind: evPartition, text: fmt.Sprintf("split %v bridged by %d%s", side[1:], bridge, text)})
}

// votingBridge, for the slow-message seeds, makes the bridge a voter of the
// leader's configuration and splits the other voters evenly (others lists
// them first, in the order drawn), on a network healed of earlier cuts: so
// that with an odd number of voters both sides with the bridge are a
// quorum, as deafenBridge needs.
func (s *Sim) votingBridge(lead *replica, bridge pb.NodeID, others []int) (pb.NodeID, []int) {
	conf := lead.core.ConfState()
	var voters []pb.NodeID
	for _, id := range conf.Voters {
		if id != lead.id {
			voters = append(voters, id)
		}
	}
	if len(voters) == 0 {
		return bridge, others
	}
	s.net.healAll()
	pool := append(others, int(bridge))
	bridge = voters[s.rng.IntN(len(voters))]
	sorted := make([]int, 0, len(pool))
	for _, voting := range []bool{true, false} {
		for _, id := range pool {
			if pb.NodeID(id) != bridge && conf.IsVoter(pb.NodeID(id)) == voting {
				sorted = append(sorted, id)
			}
		}
	}
	return bridge, sorted
}

// bridgeSettled reports whether the lease nemesis should bounce the bridge:
// a bridge partition has lasted an election timeout (the side without the
// leader has stopped hearing it and may campaign) and the bridge runs and
// does not lead.
func (s *Sim) bridgeSettled() bool {
	if !s.p.leaseNemesis || s.bridge == 0 || s.now < s.bridgeSince+uint64(s.p.electionTicks) {
		return false
	}
	b := s.replica(s.bridge)
	return b.up() && b.core.Role() != raft.Leader
}

// bounceBridge restarts the bridge of a bridge partition, which comes back
// reaching only the side without the leader: the leader keeps the lease
// the bridge's last answers gave it, while the other side, which has long
// stopped hearing the leader, may now elect one with the bridge's vote.
// A voter that forgot the leader it answered must not give that vote
// before the lease is over (§6.4.1).
func (s *Sim) bounceBridge() {
	if lead := s.leader(); s.p.slowRate > 0 && lead != nil && lead.id != s.bridge {
		s.deafenBridge(lead)
		return
	}
	b := s.replica(s.bridge)
	b.downUntil = s.now + 1
	s.crash(b, "bridge killed, restarting at once")
	leaderSide := s.bridgeSides[1]
	if lead := s.leader(); lead != nil && lead.id != b.id {
		leaderSide = s.bridgeSides[lead.id]
	}
	for id := 1; id <= len(s.reps); id++ {
		if id != int(b.id) && s.bridgeSides[id] == leaderSide {
			s.net.cut[id][b.id], s.net.cut[b.id][id] = true, true
		}
	}
	s.trace.add(event{kind: evPartition, text: fmt.Sprintf("%d no longer bridges: it reaches only side %v", b.id, !leaderSide)})
	s.bridge = 0
}

// deafenBridge makes the bridge of a bridge partition stop hearing the
// leader's side, one way: its last answers, slow ones among them, are still
// on their way to the leader. Once its refusal has run out the bridge may
// vote for the other side; a late answer must not keep the leader's lease
// alive until then (§6.4.1: the lease runs from when the heartbeat
// answered was sent). Cuts left from earlier partitions are healed, so
// that both sides reach the bridge as the scenario needs.
func (s *Sim) deafenBridge(lead *replica) {
	n, bridge, side := len(s.reps), s.bridge, s.bridgeSides
	s.net.healAll()
	for a := 1; a <= n; a++ {
		for b := 1; b <= n; b++ {
			switch {
			case a == b:
			case pb.NodeID(a) != bridge && pb.NodeID(b) != bridge && side[a] != side[b]:
				s.net.cut[a][b] = true
			case pb.NodeID(b) == bridge && side[a] == side[lead.id]:
				s.net.cut[a][b] = true
			case pb.NodeID(a) == bridge && side[b] == side[lead.id]:
				s.net.slow[a][b] = true
			}
		}
	}
	s.trace.add(event{kind: evPartition, text: fmt.Sprintf("%d stops hearing side %v (one way), its link to it slow",
		bridge, side[lead.id])})
	s.bridge = 0
	// Hold still while the bridge's refusal runs out and the other side
	// elects: a crash or a new partition would only spoil it.
	s.stillUntil = s.now + 3*uint64(s.p.electionTicks)
	s.partitionUntil = max(s.partitionUntil, s.stillUntil)
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

// stallDisk makes a replica's fsyncs hang for a while (the leader's half
// the time): it must keep answering heartbeats, and a leader must hand
// over once its disk has stalled for an election timeout.
func (s *Sim) stallDisk() {
	r := s.leader()
	if r == nil || s.rng.IntN(2) == 0 {
		r = s.randomUp()
	}
	if r == nil {
		return
	}
	r.stallUntil = s.now + 1 + uint64(s.rng.IntN(s.p.stallTicksMax))
	s.trace.add(event{kind: evNote, node: r.id, text: fmt.Sprintf("disk stalls: no fsync completes before t%d", r.stallUntil)})
}

// partition cuts links: two random halves, one isolated replica, a one-way
// cut between a few pairs, or a bridge: two halves that both reach one
// replica, so each may hold a quorum through it.
func (s *Sim) partition() {
	n := len(s.reps)
	s.partitionUntil = s.now + 1 + uint64(s.rng.IntN(s.p.partitionTicksMax))
	s.bridge = 0
	kind := s.rng.IntN(4)
	if s.p.leaseNemesis {
		kind = 2
	}
	switch kind {
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
	case 2:
		s.bridgePartition()
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
	s.partitionUntil, s.bridge = 0, 0
	s.p.dropRate, s.p.dupRate, s.p.slowRate = 0, 0, 0
	s.p.persistDelayMax, s.p.applyDelayMax, s.p.snapDelayMax, s.p.stallRate, s.p.pauseRate = 0, 0, 0, 0, 0
	s.plan = nil
	for _, r := range s.reps {
		r.downUntil = 0 // restart at the next tick
		r.stallUntil = 0
		r.pausedUntil = 0
		for i := range r.io.persist {
			r.io.persist[i].due = min(r.io.persist[i].due, s.now)
		}
		for i := range r.io.apply {
			r.io.apply[i].due = min(r.io.apply[i].due, s.now)
		}
		if r.io.snap != nil {
			r.io.snap.due = min(r.io.snap.due, s.now)
		}
	}
	s.freeDisks()
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
	if !s.admitProposal(r, data) {
		return 0, 0, errNoSpace
	}
	first, term, err := r.rt.Propose(data...)
	if err != nil {
		return 0, 0, err
	}
	s.check.onPropose(r.id, first, term, ids)
	s.trace.add(event{kind: evPropose, node: r.id, a: uint64(first), b: uint64(term), c: uint64(len(data))})
	s.drain(r)
	if s.chance(s.p.leaderCrashRate) && r.up() {
		r.downUntil = s.now + 1 + uint64(s.rng.IntN(s.p.downTicksMax))
		s.crash(r, "leader killed after a proposal")
	}
	return first, term, nil
}

// resume runs when a paused replica's process continues. One that led
// before the pause may still believe it holds a lease (its lease is
// counted in ticks, and none passed); half the time a client's lease read
// reaches it first. The lease guard must not let it answer from the lease.
func (s *Sim) resume(r *replica) {
	s.trace.add(event{kind: evNote, node: r.id, text: "process resumes"})
	if r.core.Role() != raft.Leader || s.rng.IntN(2) == 0 {
		return
	}
	s.read(r, true)
}

// readRandom asks a random replica for a ReadIndex, or a leader for a lease
// read (§6.4.1: no heartbeat round while the lease holds). Any replica that
// believes it leads may be asked, as a client that has not heard of a newer
// leader would: a lease is only worth something if it holds then.
func (s *Sim) readRandom() {
	r, lease := s.randomUp(), false
	if leaders := s.upLeaders(); len(leaders) > 0 && s.rng.IntN(2) == 0 {
		r, lease = leaders[s.rng.IntN(len(leaders))], true
	}
	if r != nil {
		s.read(r, lease)
	}
}

// read asks r for a ReadIndex or a lease read.
func (s *Sim) read(r *replica, lease bool) {
	s.nextRead++
	s.check.onReadRequest(s.nextRead, lease, r.core.Role() != raft.Leader)
	ask, how := r.rt.ReadIndex, "read"
	if lease {
		now := s.clock()
		ask, how = func(ctx []byte) error { return r.rt.LeaseRead(ctx, now) }, "lease read"
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
	err := via.rt.TransferLeader(to)
	text := ""
	if err != nil {
		text = "refused: " + err.Error()
	}
	s.trace.add(event{kind: evTransfer, node: via.id, a: uint64(to), text: text})
	s.drain(via)
}
