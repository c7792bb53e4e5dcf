package sim

import (
	"fmt"
	"slices"

	"github.com/raftkv/raftkv/raft"
)

// A scene sets up a situation from the Raft paper in stages; the page
// narrates each stage (its text lives with the page, in English and
// Chinese). A stage is a function of the cluster's state, so it names
// members by what they are ("the leader", "a follower") rather than by
// number, and it acts only through apply: a recorded "stage" action replays
// it exactly.
type scene struct {
	options func(seed uint64) PlaygroundOptions
	stages  []func(p *Playground) error
}

// sceneMutation names the core's bug a what-if scene puts in force: such a
// scene is offered only in builds that have it (the mutation tag).
var sceneMutation = map[string]string{"whatif-figure8": raft.MutationCommitOlderTerm.String()}

// PlaygroundScene describes a scene to the page.
type PlaygroundScene struct {
	Name    string            `json:"name"`
	Options PlaygroundOptions `json:"options"`
	Stages  int               `json:"stages"`
}

// PlaygroundScenes lists the scenes in the order the page offers them.
func PlaygroundScenes(seed uint64) []PlaygroundScene {
	var out []PlaygroundScene
	for _, name := range sceneOrder {
		sc := scenes[name]
		if m := sceneMutation[name]; m != "" && !slices.Contains(PlaygroundMutations(), m) {
			continue
		}
		out = append(out, PlaygroundScene{Name: name, Options: sc.options(seed), Stages: len(sc.stages)})
	}
	return out
}

var sceneOrder = []string{
	"election", "replication", "leader-crash", "split-vote", "figure7", "figure8",
	"old-leader", "joint", "snapshot", "disrupt", "disrupt-prevote", "whatif-lost-log", "whatif-figure8",
}

func voters(n int, mod ...func(*PlaygroundOptions)) func(uint64) PlaygroundOptions {
	return func(seed uint64) PlaygroundOptions {
		o := PlaygroundOptions{Seed: seed, Voters: n}
		for _, f := range mod {
			f(&o)
		}
		return o
	}
}

func basicRaft(o *PlaygroundOptions)     { o.NoPreVote, o.NoCheckQuorum = true, true }
func noCheckQuorum(o *PlaygroundOptions) { o.NoCheckQuorum = true }
func twoSpares(o *PlaygroundOptions)     { o.Spares = 2 }
func oneEntry(o *PlaygroundOptions)      { o.OneEntryPerMessage = true }

// scenes is filled by init: stages act through apply, which looks scenes
// up, and a package-level initializer may not refer to itself.
var scenes map[string]scene

func init() { scenes = sceneTable() }

func sceneTable() map[string]scene {
	return map[string]scene{
		"election": {voters(5), []func(*Playground) error{
			func(p *Playground) error { return nil },
			func(p *Playground) error { return p.do(until("leader", 0, 300)) },
			func(p *Playground) error { return p.do(Action{Op: "run", N: 2 * PlaygroundElectionTicks}) },
		}},
		"replication": {voters(5), []func(*Playground) error{
			leaderSettled,
			func(p *Playground) error {
				return p.do(Action{Op: "propose"}, Action{Op: "step", N: 1})
			},
			func(p *Playground) error {
				lead := p.s.leader()
				if lead == nil {
					return errNoLeader
				}
				return p.do(Action{Op: "until", What: "commit", ID: uint64(lead.id),
					Index: uint64(lead.core.Status().LastIndex), N: 50})
			},
			func(p *Playground) error {
				return p.do(Action{Op: "run", N: PlaygroundHeartbeatTicks + PlaygroundMaxDelay})
			},
			func(p *Playground) error {
				return p.do(Action{Op: "propose", N: 5}, Action{Op: "run", N: 3 * PlaygroundHeartbeatTicks})
			},
		}},
		"leader-crash": {voters(5), []func(*Playground) error{
			func(p *Playground) error {
				return p.do(until("leader", 0, 300), Action{Op: "propose", N: 2}, Action{Op: "run", N: 15})
			},
			func(p *Playground) error { return p.do(Action{Op: "crash"}) },
			func(p *Playground) error { return p.do(until("leader", 0, 300)) },
			func(p *Playground) error {
				return p.do(Action{Op: "propose"}, Action{Op: "restart"}, Action{Op: "run", N: 30})
			},
		}},
		"split-vote": {voters(4, basicRaft), []func(*Playground) error{
			func(p *Playground) error { return nil },
			// 3 hears only 1, 4 hears only 2: each candidate gets two of four votes.
			func(p *Playground) error {
				return p.do(Action{Op: "cut", ID: 1, To: 4}, Action{Op: "cut", ID: 2, To: 3},
					Action{Op: "timeout", ID: 1}, Action{Op: "timeout", ID: 2},
					Action{Op: "run", N: 2*PlaygroundMaxDelay + 1})
			},
			func(p *Playground) error {
				return p.do(Action{Op: "heal"}, until("leader", 0, 400))
			},
		}},
		"figure7":    {voters(5), figure7},
		"figure8":    {voters(5, basicRaft, oneEntry), figure8},
		"old-leader": {voters(5), oldLeader},
		"joint":      {voters(3, twoSpares), joint},
		"snapshot":   {voters(3), snapshotScene},
		// Without PreVote, and without CheckQuorum's vote lease, which would
		// also shield the cluster: only the effect of PreVote shows.
		"disrupt":         {voters(5, basicRaft), disrupt},
		"disrupt-prevote": {voters(5, noCheckQuorum), disrupt},
		// A what-if: it ends with a safety property broken on purpose.
		"whatif-lost-log": {voters(3), lostLog},
		// What if the core committed by counting an entry of an older term?
		// Figure 8 with that bug in force (builds with mutations only).
		"whatif-figure8": {voters(5, basicRaft, oneEntry),
			[]func(*Playground) error{
				func(p *Playground) error {
					if err := p.do(Action{Op: "mutate", What: raft.MutationCommitOlderTerm.String()}); err != nil {
						return err
					}
					return figure8[0](p)
				},
				figure8[1],
				// (c), and S3's answer reaching S1, which now counts it.
				func(p *Playground) error {
					if err := figure8[2](p); err != nil {
						return err
					}
					return p.do(Action{Op: "run", N: 2 * PlaygroundMaxDelay})
				},
			}},
	}
}

var errNoLeader = fmt.Errorf("playground: no leader")

func until(what string, id uint64, ticks int) Action {
	return Action{Op: "until", What: what, ID: id, N: ticks}
}

// do applies actions as parts of a stage: they are not recorded alone.
func (p *Playground) do(actions ...Action) error {
	for _, a := range actions {
		if _, err := p.apply(a); err != nil {
			return err
		}
	}
	return nil
}

func leaderSettled(p *Playground) error {
	return p.do(until("leader", 0, 300), Action{Op: "run", N: 10})
}

// stage applies stage n of a scene; stage 0 is the scene's start, applied
// to a fresh cluster built with the scene's options.
func (p *Playground) stage(name string, n int) (bool, error) {
	sc, ok := scenes[name]
	if !ok {
		return refused("no scene %q", name)
	}
	if n < 0 || n >= len(sc.stages) {
		return refused("scene %s has stages 0 to %d", name, len(sc.stages)-1)
	}
	if want := sc.options(p.opt.Seed); want != p.opt {
		return refused("scene %s needs its own options %+v (start it on a fresh cluster)", name, want)
	}
	return true, sc.stages[n](p)
}

// followers returns the running voters other than the leader, by id.
func (p *Playground) followers() []uint64 {
	var out []uint64
	for _, r := range p.s.reps {
		if r.up() && r.core.Role() == raft.Follower {
			out = append(out, uint64(r.id))
		}
	}
	return out
}

func (p *Playground) leaderID() uint64 {
	if lead := p.s.leader(); lead != nil {
		return uint64(lead.id)
	}
	return 0
}

// Figure 7: a new leader meets followers whose logs miss entries or hold
// extra ones, and makes them match its own (§5.3).
var figure7 = []func(*Playground) error{
	func(p *Playground) error {
		return p.do(until("leader", 0, 300), Action{Op: "propose", N: 2}, Action{Op: "run", N: 15})
	},
	// A follower goes down and misses entries.
	func(p *Playground) error {
		f := p.followers()
		if len(f) == 0 {
			return errNoLeader
		}
		return p.do(Action{Op: "crash", ID: f[0]}, Action{Op: "propose", N: 3}, Action{Op: "run", N: 15})
	},
	// The leader is cut off and takes entries it can never commit; the
	// others elect a new leader, which appends entries of its own.
	func(p *Playground) error {
		old := p.leaderID()
		if old == 0 {
			return errNoLeader
		}
		term := p.s.leader().core.Term()
		return p.do(Action{Op: "isolate", ID: old}, Action{Op: "propose", ID: old, N: 3},
			Action{Op: "until", What: "leader", Term: uint64(term), N: 400},
			Action{Op: "propose", N: 2}, Action{Op: "run", N: 10})
	},
	// Everyone back: the new leader repairs both logs.
	func(p *Playground) error {
		return p.do(Action{Op: "heal"}, Action{Op: "restart"}, Action{Op: "run", N: 60})
	},
}

// Figure 8 (§5.4.2), with the core's numbering: index 1 is the first
// configuration and every new leader appends a no-op, so the paper's
// disputed index 2 is index 3 here, and its terms 2, 3, 4 are the same.
// Options: the basic algorithm (no PreVote, no CheckQuorum), one entry per
// AppendEntries.
var figure8 = []func(*Playground) error{
	// (a) S1 leads in term 2 and replicates index 3 to S2 only.
	func(p *Playground) error {
		return p.do(Action{Op: "timeout", ID: 1}, until("leader", 1, 100),
			Action{Op: "until", What: "commit", ID: 1, Index: 2, N: 100}, Action{Op: "run", N: 10},
			Action{Op: "cut", ID: 1, To: 3}, Action{Op: "cut", ID: 1, To: 4}, Action{Op: "cut", ID: 1, To: 5},
			Action{Op: "propose", ID: 1},
			Action{Op: "until", What: "has", ID: 2, Index: 3, Term: 2, N: 50})
	},
	// (b) S1 crashes; S5 is elected for term 3 by S3, S4 and itself and
	// takes a different entry at index 3, which reaches nobody.
	func(p *Playground) error {
		return p.do(Action{Op: "crash", ID: 1}, Action{Op: "timeout", ID: 5}, until("leader", 5, 100),
			Action{Op: "isolate", ID: 5}, Action{Op: "run", N: PlaygroundMaxDelay + 1})
	},
	// (c) S5 crashes; S1 restarts, is elected for term 4 (S2 and S3 vote)
	// and copies index 3 of term 2 to S3: a majority holds it, yet S1 does
	// not count it committed. S4 is down meanwhile (it plays no part).
	func(p *Playground) error {
		err := p.do(Action{Op: "crash", ID: 5}, Action{Op: "crash", ID: 4},
			Action{Op: "run", N: PlaygroundMaxDelay + 1}, // what S5 sent is lost on its cut links
			Action{Op: "heal"}, Action{Op: "restart", ID: 1})
		if err == nil {
			err = p.campaign(1)
		}
		if err != nil {
			return err
		}
		return p.do(Action{Op: "until", What: "has", ID: 3, Index: 3, Term: 2, N: 100})
	},
	// (d) S1 crashes before its term-4 entry reaches S3; S5 restarts and is
	// elected by S3, S4 and itself, and overwrites index 3 everywhere.
	func(p *Playground) error {
		err := p.do(Action{Op: "isolate", ID: 1}, Action{Op: "crash", ID: 1},
			Action{Op: "restart", ID: 4}, Action{Op: "restart", ID: 5})
		if err == nil {
			err = p.campaign(5)
		}
		if err != nil {
			return err
		}
		return p.do(Action{Op: "run", N: 20})
	},
}

// campaign runs out id's election timer until it wins: a first campaign
// may only teach it a newer term.
func (p *Playground) campaign(id uint64) error {
	for range 6 {
		if p.leaderID() == id {
			return nil
		}
		if r, _ := p.replica(id); r.up() && r.core.Role() != raft.Leader {
			if err := p.do(Action{Op: "timeout", ID: id}); err != nil {
				return err
			}
		}
		if err := p.do(Action{Op: "run", N: 2*PlaygroundMaxDelay + 1}); err != nil {
			return err
		}
	}
	if p.leaderID() == id {
		return nil
	}
	return fmt.Errorf("playground: member %d did not win an election", id)
}

// A leader cut off from the majority keeps its role (until CheckQuorum
// notices) and takes proposals it cannot commit; the majority elects a new
// leader; when the partition heals the old leader steps down and its
// uncommitted entries are replaced (§5.3, §6.2).
var oldLeader = []func(*Playground) error{
	func(p *Playground) error {
		return p.do(until("leader", 0, 300), Action{Op: "propose"}, Action{Op: "run", N: 15})
	},
	func(p *Playground) error {
		old := p.leaderID()
		if old == 0 {
			return errNoLeader
		}
		return p.do(Action{Op: "isolate", ID: old}, Action{Op: "propose", ID: old, N: 2},
			Action{Op: "run", N: 5})
	},
	func(p *Playground) error {
		var term uint64
		for _, r := range p.s.reps {
			if r.up() {
				term = max(term, uint64(r.core.Term()))
			}
		}
		return p.do(Action{Op: "until", What: "leader", Term: term, N: 400}, Action{Op: "propose"},
			Action{Op: "run", N: 10})
	},
	func(p *Playground) error { return p.do(Action{Op: "heal"}, Action{Op: "run", N: 40}) },
}

// Joint consensus (§6, Figures 10 and 11): from {a, b, c} led by a to
// {b, 4, 5} in one step through C_old,new; the old leader steps down once
// C_new commits.
var joint = []func(*Playground) error{
	func(p *Playground) error {
		return p.do(until("leader", 0, 300), Action{Op: "propose"}, Action{Op: "run", N: 15})
	},
	func(p *Playground) error {
		f := p.followers()
		if len(f) == 0 {
			return errNoLeader
		}
		return p.do(Action{Op: "learners", IDs: []uint64{4, 5}}, Action{Op: "run", N: 20})
	},
	func(p *Playground) error {
		f := p.followers()
		if len(f) == 0 {
			return errNoLeader
		}
		return p.do(Action{Op: "voters", IDs: []uint64{f[0], 4, 5}}, Action{Op: "run", N: 3})
	},
	func(p *Playground) error { return p.do(Action{Op: "run", N: 30}) },
	func(p *Playground) error {
		return p.do(until("leader", 0, 400), Action{Op: "propose"}, Action{Op: "run", N: 20})
	},
}

// A follower down while the leader snapshots and compacts its log comes
// back to find the entries it needs gone: the leader sends InstallSnapshot
// (§7).
var snapshotScene = []func(*Playground) error{
	func(p *Playground) error {
		return p.do(until("leader", 0, 300), Action{Op: "propose", N: 2}, Action{Op: "run", N: 15})
	},
	func(p *Playground) error {
		f := p.followers()
		if len(f) == 0 {
			return errNoLeader
		}
		return p.do(Action{Op: "crash", ID: f[0]}, Action{Op: "propose", N: 4}, Action{Op: "run", N: 12},
			Action{Op: "snapshot"}, Action{Op: "propose", N: 4}, Action{Op: "run", N: 12}, Action{Op: "snapshot"})
	},
	func(p *Playground) error {
		return p.do(Action{Op: "restart"}, Action{Op: "until", What: "snapshot", N: 100})
	},
	func(p *Playground) error { return p.do(Action{Op: "run", N: 20}) },
}

// A server cut off from the others times out again and again; without
// PreVote each timeout raises its term, and when it returns its term
// unseats the leader. With PreVote it never wins a pre-vote, so its term
// stays, and it rejoins quietly (dissertation §9.6).
var disrupt = []func(*Playground) error{
	leaderSettled,
	func(p *Playground) error {
		f := p.followers()
		if len(f) == 0 {
			return errNoLeader
		}
		return p.do(Action{Op: "isolate", ID: f[len(f)-1]}, Action{Op: "propose"},
			Action{Op: "run", N: 6 * PlaygroundElectionTicks})
	},
	func(p *Playground) error {
		return p.do(Action{Op: "heal"}, Action{Op: "run", N: 2 * PlaygroundElectionTicks})
	},
	func(p *Playground) error { return p.do(until("leader", 0, 400), Action{Op: "run", N: 10}) },
}

// What if a server lost its log but kept its term and vote? Figure 2 makes
// the log persistent because a vote stands for it (§5.4.1): the server
// below grants its vote to a candidate that lacks committed entries, and
// Leader Completeness breaks.
var lostLog = []func(*Playground) error{
	func(p *Playground) error {
		return p.do(Action{Op: "timeout", ID: 1}, until("leader", 1, 100), Action{Op: "run", N: 10},
			Action{Op: "isolate", ID: 3}, Action{Op: "propose", ID: 1, N: 3},
			Action{Op: "until", What: "commit", ID: 1, Index: 5, N: 50}, Action{Op: "run", N: 10})
	},
	func(p *Playground) error {
		return p.do(Action{Op: "crash", ID: 2}, Action{Op: "amnesia", ID: 2, What: "log"})
	},
	func(p *Playground) error {
		return p.do(Action{Op: "crash", ID: 1},
			Action{Op: "run", N: PlaygroundMaxDelay + 1}, // what S1 sent to S3 is lost on the cut links
			Action{Op: "heal"}, Action{Op: "timeout", ID: 3}, Action{Op: "until", What: "leader", ID: 3, N: 200})
	},
}
