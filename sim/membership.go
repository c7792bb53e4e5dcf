package sim

import (
	"errors"
	"fmt"
	"slices"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/confchange"
	pb "github.com/raftkv/raftkv/raftpb"
)

// planTicksMax is how long a multi-step membership change may take before
// the simulator gives up on it (faults can stall it indefinitely).
const planTicksMax = 300

// confPlan is a membership change that needs several proposals: new
// members join as learners first (§6: they catch up without voting), then
// one joint-consensus change installs the new voter set.
type confPlan struct {
	voters   []pb.NodeID // sorted
	deadline uint64
	what     string
}

// randomConfChange starts one of the membership changes (§6) on the
// current leader: add a learner, promote one, remove a member, or a planned
// replace / grow / shrink of the voter set.
func (s *Sim) randomConfChange() {
	lead := s.leader()
	if lead == nil || s.plan != nil {
		return
	}
	cs := lead.core.ConfState()
	if cs.Joint() {
		return
	}
	spares := s.nonMembers(cs)
	switch s.rng.IntN(6) {
	case 0: // add a learner
		if len(spares) > 0 {
			id := spares[s.rng.IntN(len(spares))]
			if t, err := confchange.AddLearner(cs, id); err == nil {
				s.proposeConf(lead, t, fmt.Sprintf("add learner %d", id))
			}
		}
	case 1: // promote a learner; it may still lag (raft.ErrLearnerLagging)
		if len(cs.Learners) > 0 {
			id := cs.Learners[s.rng.IntN(len(cs.Learners))]
			if t, err := confchange.AddVoter(cs, id); err == nil {
				s.proposeConf(lead, t, fmt.Sprintf("promote %d", id))
			}
		}
	case 2: // remove a member, voter or learner, perhaps the leader
		members := slices.Concat(cs.Voters, cs.Learners)
		id := members[s.rng.IntN(len(members))]
		if t, err := confchange.Remove(cs, id); err == nil && len(t.Voters) > 0 {
			s.proposeConf(lead, t, fmt.Sprintf("remove %d", id))
		}
	case 3: // replace several voters at once
		pool := slices.Concat(cs.Voters, cs.Learners, spares)
		s.rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
		s.startPlan(pool[:len(cs.Voters)], "replace")
	case 4: // grow
		if len(spares)+len(cs.Learners) > 0 {
			extra := slices.Concat(cs.Learners, spares)
			k := 1 + s.rng.IntN(min(2, len(extra)))
			s.startPlan(slices.Concat(cs.Voters, extra[:k]), "grow")
		}
	default: // shrink
		if len(cs.Voters) > 1 {
			v := slices.Clone(cs.Voters)
			s.rng.Shuffle(len(v), func(i, j int) { v[i], v[j] = v[j], v[i] })
			k := 1 + s.rng.IntN(min(2, len(v)-1))
			s.startPlan(v[k:], "shrink")
		}
	}
}

// nonMembers lists the replicas outside cs, in id order.
func (s *Sim) nonMembers(cs pb.ConfState) []pb.NodeID {
	var out []pb.NodeID
	for _, r := range s.reps {
		if !cs.Contains(r.id) {
			out = append(out, r.id)
		}
	}
	return out
}

func (s *Sim) startPlan(voters []pb.NodeID, what string) {
	v := slices.Clone(voters)
	slices.Sort(v)
	s.plan = &confPlan{voters: v, deadline: s.now + planTicksMax, what: what}
	s.trace.add(event{kind: evConf, text: fmt.Sprintf("plan: %s to voters %v", what, v)})
	s.advancePlan()
}

// advancePlan takes the plan's next step on the current leader, if the
// previous one has taken effect: add missing members as learners, then
// propose the new voter set.
func (s *Sim) advancePlan() {
	p := s.plan
	if s.now > p.deadline {
		s.trace.add(event{kind: evConf, text: "plan abandoned: " + p.what})
		s.plan = nil
		return
	}
	lead := s.leader()
	if lead == nil {
		return
	}
	cs := lead.core.ConfState()
	if cs.Joint() {
		return
	}
	if slices.Equal(cs.Voters, p.voters) {
		s.trace.add(event{kind: evConf, node: lead.id, text: "plan done: " + p.what})
		s.plan = nil
		return
	}
	var missing []pb.NodeID
	for _, id := range p.voters {
		if !cs.Contains(id) {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		t := confchange.Target{Voters: cs.Voters, Learners: slices.Concat(cs.Learners, missing)}
		s.proposeConf(lead, t, fmt.Sprintf("add learners %v", missing))
		return
	}
	s.proposeConf(lead, confchange.SetVoters(cs, p.voters), fmt.Sprintf("voters %v", p.voters))
}

// proposeConf proposes a membership change and traces the outcome. The
// errors a busy or lagging cluster gives are expected; any other is not.
func (s *Sim) proposeConf(r *replica, t confchange.Target, what string) (pb.Index, error) {
	idx, term, err := r.rt.ProposeConfChange(t)
	var nl *raft.NotLeaderError
	switch {
	case err == nil:
		s.trace.add(event{kind: evConf, node: r.id, text: fmt.Sprintf("%s proposed at %d/%d", what, idx, term)})
		s.drain(r)
	case errors.Is(err, raft.ErrLearnerLagging), errors.Is(err, raft.ErrConfChangeInProgress),
		errors.Is(err, raft.ErrTransferring), errors.As(err, &nl):
		s.trace.add(event{kind: evConf, node: r.id, text: what + " refused: " + err.Error()})
	default:
		s.failf("replica %d: ProposeConfChange(%s): %v", r.id, what, err)
	}
	return idx, err
}
