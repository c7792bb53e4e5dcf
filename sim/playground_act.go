package sim

import (
	"container/heap"
	"fmt"
	"slices"
	"strconv"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/confchange"
	pb "github.com/raftkv/raftkv/raftpb"
)

// Action is one thing a learner (or a scene) does to the playground. Op
// names it; the other fields are its arguments:
//
//	step n          play n events (a message delivered, or one tick)
//	run n           advance virtual time by n ticks
//	until what      play events until what holds, at most n ticks:
//	                "leader" (id: that member, 0: any; of a term above
//	                term), "snapshot" (an InstallSnapshot in flight),
//	                "commit" (member id
//	                has committed index), "has" (member id holds index in
//	                term), "quiet" (no message in flight)
//	crash id        stop a member: it keeps its durable term, vote and log
//	restart id      start it again from what it kept
//	timeout id      run its election timer out now (it campaigns)
//	cut id to       cut the link both ways (oneway: id -> to only)
//	heal id to      heal it (both ways); heal with id 0: every link
//	isolate id      cut every link of a member
//	drop msg        lose a message in flight; dup msg: deliver it twice
//	propose id n    a client sends n values to member id (0: the leader)
//	learner id      add a member as a learner; promote id: make it a voter
//	learners ids    add these members as learners, in one change
//	remove id       remove a member
//	voters ids      change to exactly these voters, in one joint step
//	snapshot id     a member snapshots its state machine
//	transfer to     hand leadership to member to
//	stage scene n   apply stage n of a scene (playground_scenes.go)
//	mutate what     what if: put a named bug of the core in force
//	                (raft.Mutation, builds with the mutation tag only;
//	                "none" restores the correct core)
//	amnesia id      what if: restart a crashed member with an empty disk,
//	                its term, vote and log forgotten (Figure 2 forbids it);
//	                with what "log", its term and vote survive
//	                and only its log and snapshots are lost
type Action struct {
	Op     string   `json:"op"`
	ID     uint64   `json:"id,omitempty"`
	To     uint64   `json:"to,omitempty"`
	N      int      `json:"n,omitempty"`
	Msg    uint64   `json:"msg,omitempty"`
	IDs    []uint64 `json:"ids,omitempty"`
	OneWay bool     `json:"oneway,omitempty"`
	What   string   `json:"what,omitempty"`
	Index  uint64   `json:"index,omitempty"`
	Term   uint64   `json:"term,omitempty"`
	Scene  string   `json:"scene,omitempty"`
}

// Playground bounds on one action.
const (
	playgroundMaxStep    = 100000
	playgroundMaxRun     = 10000
	playgroundMaxPropose = 20
)

// ReplayPlayground builds the cluster of opt and applies actions in order;
// the same options and actions give the same State.
func ReplayPlayground(opt PlaygroundOptions, actions []Action) (*Playground, error) {
	p, err := NewPlayground(opt)
	if err != nil {
		return nil, err
	}
	for i, a := range actions {
		n := len(p.actions)
		// An action recorded with an error (an "until" that ran out of
		// time) gives the same error again; one refused was never recorded.
		if err := p.Act(a); err != nil && len(p.actions) == n && p.s.err == nil {
			return p, fmt.Errorf("playground: replaying action %d (%s): %w", i, a.Op, err)
		}
	}
	return p, nil
}

// Act applies a. An action that was refused changes nothing and is not
// recorded; one that was applied is, even when it reports an error (an
// "until" that ran out of time still played its events).
func (p *Playground) Act(a Action) error {
	if p.s.err != nil {
		return errStopped
	}
	if len(p.actions) >= PlaygroundMaxActions {
		return fmt.Errorf("playground: %d actions recorded, the most one run keeps", PlaygroundMaxActions)
	}
	applied, err := p.apply(a)
	if applied {
		p.record(a)
	}
	return err
}

// record appends a to the action log, merging runs of step or run.
func (p *Playground) record(a Action) {
	if n := len(p.actions); n > 0 && (a.Op == "step" || a.Op == "run") && p.actions[n-1].Op == a.Op {
		p.actions[n-1].N += a.N
		return
	}
	a.IDs = slices.Clone(a.IDs)
	p.actions = append(p.actions, a)
}

// refused marks an error returned before anything changed.
func refused(format string, args ...any) (bool, error) {
	return false, fmt.Errorf("playground: "+format, args...)
}

func (p *Playground) apply(a Action) (bool, error) {
	switch a.Op {
	case "step":
		if a.N < 1 || a.N > playgroundMaxStep {
			return refused("step %d: want 1 to %d events", a.N, playgroundMaxStep)
		}
		for i := 0; i < a.N; i++ {
			if err := p.stepEvent(); err != nil {
				return i > 0, err
			}
		}
		return true, nil
	case "run":
		if a.N < 1 || a.N > playgroundMaxRun {
			return refused("run %d: want 1 to %d ticks", a.N, playgroundMaxRun)
		}
		return true, p.run(a.N)
	case "until":
		return p.until(a)
	case "stage":
		return p.stage(a.Scene, a.N)
	case "mutate":
		if err := setPlaygroundMutation(a.What); err != nil {
			return false, err
		}
		p.mutation = a.What
		if p.mutation == "none" {
			p.mutation = ""
		}
		p.s.trace.add(event{kind: evNote, text: "mutation: " + a.What})
		return true, nil
	}
	if a.Op == "heal" && a.ID == 0 {
		p.s.net.healAll()
		return true, nil
	}
	if a.Op == "drop" || a.Op == "dup" {
		return p.message(a)
	}
	if a.Op == "voters" || a.Op == "learners" {
		return p.conf(a, nil)
	}
	if a.Op == "restart" && a.ID == 0 {
		return p.restartAll()
	}
	if a.ID == 0 {
		// The leader, for the actions that name one member.
		lead := p.s.leader()
		if lead == nil {
			return refused("%s: no leader now; name a member", a.Op)
		}
		a.ID = uint64(lead.id)
	}
	r, err := p.replica(a.ID)
	if err != nil {
		return false, err
	}
	switch a.Op {
	case "crash":
		if !r.up() {
			return refused("member %d is already down", r.id)
		}
		p.s.crash(r, "crashed by the learner")
		r.downUntil = neverRestart
	case "restart":
		if r.up() {
			return refused("member %d is running", r.id)
		}
		p.s.start(r)
		p.s.drain(r)
	case "amnesia":
		return p.amnesia(r, a.What == "log")
	case "timeout":
		return p.timeout(r)
	case "cut", "heal", "isolate":
		return p.link(a, r)
	case "propose":
		return p.propose(r, a.N)
	case "learner", "promote", "remove", "voters":
		return p.conf(a, r)
	case "snapshot":
		return p.snapshot(r)
	case "transfer":
		return p.transfer(r)
	default:
		return refused("unknown action %q", a.Op)
	}
	p.noteSent()
	return true, nil
}

func (p *Playground) replica(id uint64) (*replica, error) {
	if id < 1 || id > uint64(len(p.s.reps)) {
		return nil, fmt.Errorf("playground: no member %d (members are 1 to %d)", id, len(p.s.reps))
	}
	return p.s.reps[id-1], nil
}

// restartAll restarts every member that is down.
func (p *Playground) restartAll() (bool, error) {
	n := 0
	for _, r := range p.s.reps {
		if !r.up() {
			p.s.start(r)
			p.s.drain(r)
			n++
		}
	}
	if n == 0 {
		return refused("every member is running")
	}
	p.noteSent()
	return true, p.s.err
}

func (p *Playground) up(r *replica) error {
	if !r.up() {
		return fmt.Errorf("playground: member %d is down", r.id)
	}
	return nil
}

// amnesia restarts a crashed member on an empty store: the "what if" of a
// server that forgets what it persisted (all of it, or with keepVote its
// log only). The checkers judge the result.
func (p *Playground) amnesia(r *replica, keepVote bool) (bool, error) {
	if r.up() {
		return refused("member %d is running; crash it first", r.id)
	}
	hs := r.store.DurableHardState()
	r.store = NewWALStore(r.id, mix64(p.s.seed^uint64(r.id)<<40^r.incarnation))
	what := "disk wiped by the learner"
	if keepVote {
		// The term and vote survive; the log and snapshots do not.
		err := r.store.Save(pb.HardState{Term: hs.Term, Vote: hs.Vote}, nil, nil)
		if err == nil {
			err = r.store.Sync()
		}
		if err != nil {
			p.s.failf("replica %d: keeping its term and vote on a new disk: %v", r.id, err)
			return true, p.s.err
		}
		what = "log and snapshots lost (term and vote kept)"
	}
	p.s.trace.add(event{kind: evNote, node: r.id, text: what})
	p.s.start(r)
	p.s.drain(r)
	p.noteSent()
	return true, p.s.err
}

// timeout ticks one member's clock alone until it campaigns, as if its
// election timer ran fast: it starts a PreVote (or vote) round as a
// timed-out follower does, with every rule in force.
func (p *Playground) timeout(r *replica) (bool, error) {
	if err := p.up(r); err != nil {
		return false, err
	}
	role := r.core.Role()
	if role != raft.Follower && role != raft.Candidate && role != raft.PreCandidate {
		return refused("member %d is a %s; only a follower or candidate campaigns", r.id, roleName(role))
	}
	term := r.core.Term()
	for i := 0; i < 2*PlaygroundElectionTicks; i++ {
		if err := r.rt.Tick(p.s.clock()); err != nil {
			return false, err
		}
		p.s.drain(r)
		if p.s.err != nil || !r.up() || r.core.Term() != term || r.core.Role() != role {
			p.noteSent()
			return true, nil
		}
	}
	p.noteSent()
	return true, fmt.Errorf("playground: member %d did not campaign", r.id)
}

func (p *Playground) link(a Action, r *replica) (bool, error) {
	n := &p.s.net
	if a.Op == "isolate" {
		for b := range p.s.reps {
			n.cut[r.id][b+1], n.cut[b+1][r.id] = true, true
		}
		return true, nil
	}
	o, err := p.replica(a.To)
	if err != nil || o == r {
		return refused("%s %d: want another member to link to", a.Op, r.id)
	}
	cut := a.Op == "cut"
	n.cut[r.id][o.id] = cut
	if !a.OneWay || !cut {
		n.cut[o.id][r.id] = cut
	}
	return true, nil
}

// message drops or duplicates the message in flight whose id is a.Msg.
func (p *Playground) message(a Action) (bool, error) {
	q := &p.s.net.queue
	k := slices.IndexFunc(*q, func(e *envelope) bool { return e.seq == a.Msg && !e.lost })
	if k < 0 {
		return refused("no message %d in flight", a.Msg)
	}
	env := (*q)[k]
	if a.Op == "drop" {
		heap.Remove(q, k)
		delete(p.sentAt, env.seq)
		p.s.trace.add(event{kind: evDrop, msg: env.m, text: "dropped by the learner"})
		p.s.net.undeliverable(p.s, env.fromInc, env.m)
		p.noteSent()
		return true, nil
	}
	dup := *env
	p.s.net.seq++
	dup.seq = p.s.net.seq
	dup.at = env.at + 1
	heap.Push(q, &dup)
	p.sentAt[dup.seq] = p.sentAt[env.seq]
	p.seenSeq = dup.seq
	p.s.trace.add(event{kind: evDup, msg: env.m})
	return true, nil
}

// propose has a client send n values to r, which must be the leader.
func (p *Playground) propose(r *replica, n int) (bool, error) {
	if err := p.up(r); err != nil {
		return false, err
	}
	n = max(n, 1)
	if n > playgroundMaxPropose {
		return refused("propose %d values: at most %d at once", n, playgroundMaxPropose)
	}
	data := make([][]byte, n)
	cmds := make([]uint64, n)
	for i := range data {
		p.s.nextCmd++
		cmds[i] = p.s.nextCmd
		data[i] = kv.EncodeCommand(kv.Command{Op: kv.OpPut, Key: PlaygroundKey,
			Value:          []byte(strconv.FormatUint(p.values+uint64(i)+1, 10)),
			IdempotencyKey: strconv.FormatUint(p.s.nextCmd, 10)})
	}
	if _, _, err := p.s.propose(r, data, cmds); err != nil {
		p.s.nextCmd -= uint64(n)
		return refused("member %d: %v", r.id, err)
	}
	p.values += uint64(n)
	p.noteSent()
	return true, nil
}

// conf proposes a membership change on r, which must be the leader.
func (p *Playground) conf(a Action, r *replica) (bool, error) {
	lead := p.s.leader()
	if lead == nil {
		return refused("no leader to propose a membership change to")
	}
	cs := lead.core.ConfState()
	var t confchange.Target
	var err error
	switch a.Op {
	case "learner":
		t, err = confchange.AddLearner(cs, r.id)
	case "promote":
		t, err = confchange.AddVoter(cs, r.id)
	case "remove":
		t, err = confchange.Remove(cs, r.id)
	case "voters", "learners":
		var set []pb.NodeID
		for _, id := range a.IDs {
			if _, err := p.replica(id); err != nil {
				return false, err
			}
			set = append(set, pb.NodeID(id))
		}
		slices.Sort(set)
		set = slices.Compact(set)
		if len(set) == 0 {
			return refused("%s: name at least one member", a.Op)
		}
		if a.Op == "voters" {
			t = confchange.SetVoters(cs, set)
		} else {
			t = confchange.Target{Voters: cs.Voters, Learners: slices.Concat(cs.Learners, set), Context: cs.Context}
		}
	}
	if err == nil {
		// The core refuses an invalid target too; asking first keeps the
		// simulator's "unexpected refusal" check for real bugs.
		_, err = confchange.Enter(cs, t)
	}
	if err != nil {
		return refused("%v", err)
	}
	if _, err := p.s.proposeConf(lead, t, a.Op); err != nil {
		return refused("%v", err)
	}
	p.noteSent()
	return true, p.s.err
}

// snapshot has r snapshot its state machine as the runtime does: the
// snapshot file is written, and the log compacted to the previous one.
func (p *Playground) snapshot(r *replica) (bool, error) {
	if err := p.up(r); err != nil {
		return false, err
	}
	last, _ := r.store.Latest()
	if r.sm.applied <= last.Index {
		return refused("member %d has applied nothing since its snapshot at %d", r.id, last.Index)
	}
	// A forced snapshot, as node.Snapshot asks for one (the answer, which
	// the playground does not wait for, comes back in the runtime's Work).
	r.rt.RequestSnapshot(1)
	p.s.drain(r)
	return true, p.s.err
}

// transfer asks r's leader to hand leadership to r (§3.10).
func (p *Playground) transfer(r *replica) (bool, error) {
	lead := p.s.leader()
	if lead == nil {
		return refused("no leader to transfer from")
	}
	if err := lead.core.TransferLeader(r.id); err != nil {
		return refused("transfer to %d: %v", r.id, err)
	}
	p.s.trace.add(event{kind: evTransfer, node: lead.id, a: uint64(r.id)})
	p.s.drain(lead)
	p.noteSent()
	return true, nil
}

// until plays events until a condition holds, for at most a.N ticks.
func (p *Playground) until(a Action) (bool, error) {
	if a.N < 1 || a.N > playgroundMaxRun {
		return refused("until: want a limit of 1 to %d ticks", playgroundMaxRun)
	}
	cond, err := p.condition(a)
	if err != nil {
		return false, err
	}
	end := p.s.now + uint64(a.N)
	for !cond() {
		if p.s.now >= end && !p.nextIsDelivery() {
			return true, fmt.Errorf("playground: %q did not hold within %d ticks", a.What, a.N)
		}
		if err := p.stepEvent(); err != nil {
			return true, err
		}
	}
	return true, nil
}

func (p *Playground) condition(a Action) (func() bool, error) {
	switch a.What {
	case "leader":
		return func() bool {
			lead := p.s.leader()
			return lead != nil && (a.ID == 0 || uint64(lead.id) == a.ID) && uint64(lead.core.Term()) > a.Term
		}, nil
	case "quiet":
		return func() bool { return len(p.s.net.queue) == 0 }, nil
	case "snapshot":
		return func() bool {
			return slices.ContainsFunc(p.s.net.queue, func(e *envelope) bool {
				return !e.lost && e.m.Type == pb.MsgInstallSnapshot
			})
		}, nil
	case "commit", "has":
		r, err := p.replica(a.ID)
		if err != nil {
			return nil, err
		}
		return func() bool {
			if !r.up() {
				return false
			}
			if a.What == "commit" {
				return uint64(r.core.Committed()) >= a.Index
			}
			t, err := r.store.Term(pb.Index(a.Index))
			return err == nil && uint64(t) == a.Term && uint64(r.store.LastIndex()) >= a.Index
		}, nil
	}
	return nil, fmt.Errorf("playground: until %q: want leader, commit, has, snapshot or quiet", a.What)
}
