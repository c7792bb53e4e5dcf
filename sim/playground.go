package sim

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// The playground drives a Sim by hand, one event at a time, for a learner
// watching it in a browser (cmd/playground compiles it to WebAssembly). It
// is the same cluster the randomized runs use (the real core, driver.Runtime,
// the production WAL and snapshot store, the kv state machine, the
// checkers) with no random faults: every crash, cut link, dropped message,
// proposal and membership change comes from an Action. Randomness is left
// to the election timeouts and message delays, both drawn from the seed, so
// a seed and a list of actions replay to the same state.

// Playground limits and timing, in ticks.
const (
	PlaygroundMinVoters = 3
	PlaygroundMaxVoters = 7
	// PlaygroundMaxSpares bounds the members outside the first
	// configuration, waiting to be added.
	PlaygroundMaxSpares = 2
	// PlaygroundElectionTicks is E: election timeouts are drawn from
	// [E, 2E); a follower grants no vote within E of hearing a leader.
	PlaygroundElectionTicks  = 20
	PlaygroundHeartbeatTicks = 5
	// Messages take between PlaygroundMinDelay and PlaygroundMaxDelay ticks.
	PlaygroundMinDelay = 2
	PlaygroundMaxDelay = 4
	// PlaygroundMaxLogCells bounds the log cells State shows per member
	// (the newest ones).
	PlaygroundMaxLogCells = 48
	// PlaygroundMaxActions bounds the recorded actions of one run.
	PlaygroundMaxActions = 4096
	// playgroundMaxLearnerLag is how far behind a learner may be and still
	// be promoted: small, so that promoting one that is catching up is
	// refused (raft.ErrLearnerLagging).
	playgroundMaxLearnerLag = 8
)

// PlaygroundOptions choose a playground cluster.
type PlaygroundOptions struct {
	Seed uint64 `json:"seed"`
	// Voters is the size of the first configuration, 3 to 7.
	Voters int `json:"voters"`
	// Spares are members outside it, ready to be added (0 to 2).
	Spares int `json:"spares,omitempty"`
	// PreVote and CheckQuorum (dissertation §9.6, §6.2): on unless disabled.
	NoPreVote     bool `json:"nopv,omitempty"`
	NoCheckQuorum bool `json:"nocq,omitempty"`
	// OneEntryPerMessage sends one entry per AppendEntries, as Figure 8's
	// walk-through needs.
	OneEntryPerMessage bool `json:"one,omitempty"`
}

func (o PlaygroundOptions) validate() error {
	if o.Voters < PlaygroundMinVoters || o.Voters > PlaygroundMaxVoters {
		return fmt.Errorf("playground: %d voters; want %d to %d", o.Voters, PlaygroundMinVoters, PlaygroundMaxVoters)
	}
	if o.Spares < 0 || o.Spares > PlaygroundMaxSpares {
		return fmt.Errorf("playground: %d spare members; want 0 to %d", o.Spares, PlaygroundMaxSpares)
	}
	return nil
}

// Playground is a hand-driven cluster. It is not safe for concurrent use.
type Playground struct {
	s   *Sim
	opt PlaygroundOptions
	// sentAt is the tick each envelope in flight was sent at, by seq.
	sentAt  map[uint64]uint64
	seenSeq uint64
	events  uint64
	actions []Action
	// values numbers the values proposed, for the log cells to show.
	values uint64
	// mutation names the core's bug in force ("": none).
	mutation string
}

// NewPlayground builds the cluster of opt, every member started and none
// yet leader.
func NewPlayground(opt PlaygroundOptions) (*Playground, error) {
	if err := opt.validate(); err != nil {
		return nil, err
	}
	// A new cluster starts with the correct core.
	if err := setPlaygroundMutation(""); err != nil {
		return nil, err
	}
	p := &Playground{opt: opt, sentAt: map[uint64]uint64{}}
	p.s = newSim(Options{Seed: opt.Seed, FSM: FSMKV, Store: NewWALStore}, func(*rand.Rand) params {
		pr := params{
			replicas: opt.Voters + opt.Spares, voters: opt.Voters,
			electionTicks: PlaygroundElectionTicks, heartbeatTicks: PlaygroundHeartbeatTicks,
			minDelay: PlaygroundMinDelay, maxDelay: PlaygroundMaxDelay,
			maxLearnerLag:  playgroundMaxLearnerLag,
			disablePreVote: opt.NoPreVote, disableCheckQuorum: opt.NoCheckQuorum,
			downTicksMax: 1,
		}
		if opt.OneEntryPerMessage {
			pr.maxMsgBytes = 1
		}
		return pr
	})
	if p.s.err != nil {
		return nil, fmt.Errorf("playground: %w", p.s.err)
	}
	for _, r := range p.s.reps {
		r.downUntil = neverRestart
	}
	p.noteSent()
	return p, nil
}

// neverRestart keeps a crashed member down until an Action restarts it.
const neverRestart = ^uint64(0)

// Options returns the options the playground was built with.
func (p *Playground) Options() PlaygroundOptions { return p.opt }

// Actions returns the actions applied so far: with the options, all it
// takes to replay the run.
func (p *Playground) Actions() []Action { return slices.Clone(p.actions) }

// Violation returns the first safety property a checker found broken, or
// nil. The cluster does not move after one.
func (p *Playground) Violation() error { return p.s.err }

// errStopped refuses to move a cluster a checker has stopped.
var errStopped = errors.New("playground: the run stopped at a safety violation; reset or undo")

// stepEvent plays the next event: the next message due, or else one tick
// of every running member's clock.
func (p *Playground) stepEvent() error {
	s := p.s
	if s.err != nil {
		return errStopped
	}
	if q := s.net.queue; len(q) > 0 && q[0].at <= s.now {
		env := heap.Pop(&s.net.queue).(*envelope)
		delete(p.sentAt, env.seq)
		s.net.deliver(s, env)
	} else {
		s.now++
		s.stats.Ticks++
		for _, r := range s.reps {
			if r.up() && s.err == nil {
				if err := r.rt.Tick(s.clock()); err != nil {
					s.failf("replica %d: tick: %v", r.id, err)
					continue
				}
				s.drain(r)
			}
		}
	}
	if s.err == nil {
		s.check.sweep()
	}
	p.events++
	p.noteSent()
	return nil
}

// nextIsDelivery reports whether the next event delivers a message.
func (p *Playground) nextIsDelivery() bool {
	q := p.s.net.queue
	return len(q) > 0 && q[0].at <= p.s.now
}

// noteSent records the send tick of envelopes put on the wire since the
// last event: every one of them was sent at the current tick.
func (p *Playground) noteSent() {
	top := p.seenSeq
	for _, env := range p.s.net.queue {
		if env.seq > p.seenSeq {
			p.sentAt[env.seq] = p.s.now
			top = max(top, env.seq)
		}
	}
	p.seenSeq = top
}

// Step plays n events (deliveries or ticks).
func (p *Playground) Step(n int) error {
	return p.Act(Action{Op: "step", N: n})
}

// Run advances virtual time by ticks, delivering every message due by then.
func (p *Playground) Run(ticks int) error {
	return p.Act(Action{Op: "run", N: ticks})
}

func (p *Playground) run(ticks int) error {
	end := p.s.now + uint64(ticks)
	for p.nextIsDelivery() || p.s.now < end {
		if err := p.stepEvent(); err != nil {
			return err
		}
	}
	return nil
}

// PlaygroundState is what the page draws, and what a replay must equal.
type PlaygroundState struct {
	Options PlaygroundOptions `json:"options"`
	// Now is virtual time in ticks; Events counts the events played.
	Now      uint64              `json:"now"`
	Events   uint64              `json:"events"`
	Election int                 `json:"election_ticks"`
	Leader   uint64              `json:"leader"`
	Members  []PlaygroundMember  `json:"members"`
	Messages []PlaygroundMessage `json:"messages"`
	// Cut lists the links that drop messages, as [from, to].
	Cut    [][2]uint64       `json:"cut"`
	Checks []PlaygroundCheck `json:"checks"`
	// Violation is the checker's report, empty while every property holds.
	Violation string `json:"violation,omitempty"`
	// Mutation is the core's bug in force, if any (a what-if).
	Mutation string `json:"mutation,omitempty"`
	Actions  int    `json:"actions"`
}

// PlaygroundMember is one member as the page shows it.
type PlaygroundMember struct {
	ID   uint64 `json:"id"`
	Up   bool   `json:"up"`
	Role string `json:"role"`
	Term uint64 `json:"term"`
	Vote uint64 `json:"vote"`
	Lead uint64 `json:"lead"`
	// Elapsed and Timeout are the election timer (running members).
	Elapsed int    `json:"elapsed"`
	Timeout int    `json:"timeout"`
	Commit  uint64 `json:"commit"`
	Applied uint64 `json:"applied"`
	// LogStart is the index the log starts after (its snapshot boundary);
	// Snapshot the newest snapshot file kept; Last the last log index.
	LogStart uint64            `json:"log_start"`
	Snapshot uint64            `json:"snapshot"`
	Last     uint64            `json:"last"`
	Log      []PlaygroundEntry `json:"log"`
	Conf     PlaygroundConf    `json:"conf"`
	// Match is the leader's view of each member's log (on the leader).
	Match map[string]uint64 `json:"match,omitempty"`
	// Value is the kv store's value of PlaygroundKey, as applied here.
	Value string `json:"value"`
}

// PlaygroundEntry is one log cell.
type PlaygroundEntry struct {
	Index uint64 `json:"i"`
	Term  uint64 `json:"t"`
	// Kind is "noop", "value" or "conf"; Text what the cell says.
	Kind string `json:"k"`
	Text string `json:"x,omitempty"`
}

// PlaygroundConf is a configuration: Outgoing is set in the joint phase
// C_old,new (Voters is C_new).
type PlaygroundConf struct {
	Voters   []uint64 `json:"voters"`
	Outgoing []uint64 `json:"outgoing,omitempty"`
	Learners []uint64 `json:"learners,omitempty"`
}

// PlaygroundMessage is one message in flight.
type PlaygroundMessage struct {
	ID      uint64 `json:"id"`
	Type    string `json:"type"`
	From    uint64 `json:"from"`
	To      uint64 `json:"to"`
	Term    uint64 `json:"term"`
	Index   uint64 `json:"index"`
	LogTerm uint64 `json:"log_term"`
	Entries int    `json:"entries,omitempty"`
	Commit  uint64 `json:"commit,omitempty"`
	Reject  bool   `json:"reject,omitempty"`
	Sent    uint64 `json:"sent"`
	At      uint64 `json:"at"`
}

// PlaygroundCheck is one checked property and whether it holds.
type PlaygroundCheck struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
}

// PlaygroundKey is the kv key the playground's proposals put.
const PlaygroundKey = "x"

// playgroundChecks are the checked properties, by the prefix of the
// checker's report: the five of Figure 3, then the ones the simulator adds.
var playgroundChecks = []string{
	"Election Safety", "Leader Append-Only", "Log Matching", "Leader Completeness",
	"State Machine Safety", "commitment rule", "persistence", "clients", playgroundOtherCheck,
}

// playgroundOtherCheck stands for every other check (the state machine's
// own, the core's invariants): it fails when a report names none above.
const playgroundOtherCheck = "other"

// State returns the cluster as the page draws it.
func (p *Playground) State() PlaygroundState {
	s := p.s
	st := PlaygroundState{Options: p.opt, Now: s.now, Events: p.events, Election: PlaygroundElectionTicks,
		Actions: len(p.actions), Members: []PlaygroundMember{}, Messages: []PlaygroundMessage{},
		Cut: [][2]uint64{}, Mutation: p.mutation}
	if lead := s.leader(); lead != nil {
		st.Leader = uint64(lead.id)
	}
	for _, r := range s.reps {
		st.Members = append(st.Members, p.memberState(r))
	}
	envs := slices.Clone(s.net.queue)
	slices.SortFunc(envs, func(a, b *envelope) int { return cmp.Compare(a.seq, b.seq) })
	for _, env := range envs {
		if env.lost {
			continue
		}
		m := &env.m
		msg := PlaygroundMessage{ID: env.seq, Type: messageName(m.Type), From: uint64(m.From), To: uint64(m.To),
			Term: uint64(m.Term), Index: uint64(m.Index), LogTerm: uint64(m.LogTerm), Entries: len(m.Entries),
			Commit: uint64(m.Commit), Reject: m.Reject, Sent: p.sentAt[env.seq], At: env.at}
		if m.Type == pb.MsgInstallSnapshot {
			msg.Index, msg.LogTerm = uint64(m.Snapshot.Index), uint64(m.Snapshot.Term)
		}
		st.Messages = append(st.Messages, msg)
	}
	for a := 1; a <= len(s.reps); a++ {
		for b := 1; b <= len(s.reps); b++ {
			if s.net.cut[a][b] {
				st.Cut = append(st.Cut, [2]uint64{uint64(a), uint64(b)})
			}
		}
	}
	broken := ""
	if s.err != nil {
		st.Violation = s.err.Error()
		broken = playgroundOtherCheck
		for _, name := range playgroundChecks {
			if strings.HasPrefix(st.Violation, name) {
				broken = name
			}
		}
	}
	for _, name := range playgroundChecks {
		st.Checks = append(st.Checks, PlaygroundCheck{Name: name, OK: name != broken})
	}
	return st
}

func (p *Playground) memberState(r *replica) PlaygroundMember {
	m := PlaygroundMember{ID: uint64(r.id), Up: r.up(), Role: "down"}
	var cs pb.ConfState
	if r.up() {
		st := r.core.Status()
		m.Role = roleName(st.Role)
		m.Term, m.Vote, m.Lead = uint64(st.Term), uint64(st.Vote), uint64(st.Lead)
		m.Elapsed, m.Timeout = st.ElectionElapsed, st.ElectionTimeout
		m.Commit, m.Applied = uint64(st.Commit), uint64(r.sm.applied)
		cs = st.Conf
		if len(st.Progress) > 0 {
			m.Match = map[string]uint64{}
			for id, pr := range st.Progress {
				m.Match[fmt.Sprint(id)] = uint64(pr.Match)
			}
		}
		if r.sm.kv != nil {
			if v, _, ok := r.sm.kv.Get(PlaygroundKey); ok {
				m.Value = string(v)
			}
		}
	} else {
		// What survives a crash: the durable term, vote and log.
		hs := r.store.DurableHardState()
		m.Term, m.Vote, m.Commit = uint64(hs.Term), uint64(hs.Vote), uint64(hs.Commit)
		if _, c, err := r.store.InitialState(); err == nil {
			cs = c
		}
	}
	m.Conf = PlaygroundConf{Voters: ids(cs.Voters), Outgoing: ids(cs.VotersOutgoing), Learners: ids(cs.Learners)}
	first, last := r.store.FirstIndex(), r.store.LastIndex()
	m.LogStart, m.Last = uint64(first-1), uint64(last)
	if snap, err := r.store.Snapshot(); err == nil {
		m.Snapshot = uint64(snap.Index)
	}
	from := max(first, last+1-min(last+1, PlaygroundMaxLogCells))
	if from <= last {
		ents, err := r.store.Entries(from, last+1, 0)
		if err == nil {
			for i := range ents {
				m.Log = append(m.Log, logCell(&ents[i]))
			}
		}
	}
	return m
}

func ids(xs []pb.NodeID) []uint64 {
	out := make([]uint64, len(xs))
	for i, x := range xs {
		out[i] = uint64(x)
	}
	return out
}

func logCell(e *pb.Entry) PlaygroundEntry {
	c := PlaygroundEntry{Index: uint64(e.Index), Term: uint64(e.Term), Kind: "noop"}
	switch {
	case e.Type == pb.EntryConfChange:
		c.Kind = "conf"
		if cs, err := pb.DecodeConfState(e.Data); err == nil {
			c.Text = confText(cs)
		}
	case len(e.Data) > 0:
		c.Kind = "value"
		if cmd, err := kv.DecodeCommand(e.Data); err == nil {
			c.Text = cmd.Key + "=" + string(cmd.Value)
		}
	}
	return c
}

func confText(cs pb.ConfState) string {
	t := fmt.Sprint(ids(cs.Voters))
	if cs.Joint() {
		t += "+" + fmt.Sprint(ids(cs.VotersOutgoing))
	}
	if len(cs.Learners) > 0 {
		t += " L" + fmt.Sprint(ids(cs.Learners))
	}
	return t
}

func roleName(r raft.Role) string {
	switch r {
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	case raft.PreCandidate:
		return "precandidate"
	case raft.Leader:
		return "leader"
	case raft.Learner:
		return "learner"
	case raft.Removed:
		return "removed"
	}
	return fmt.Sprint(r)
}

func messageName(t pb.MessageType) string {
	switch t {
	case pb.MsgAppendEntries:
		return "AppendEntries"
	case pb.MsgAppendEntriesResp:
		return "AppendEntriesResp"
	case pb.MsgRequestVote:
		return "RequestVote"
	case pb.MsgRequestVoteResp:
		return "RequestVoteResp"
	case pb.MsgPreVote:
		return "PreVote"
	case pb.MsgPreVoteResp:
		return "PreVoteResp"
	case pb.MsgHeartbeat:
		return "Heartbeat"
	case pb.MsgHeartbeatResp:
		return "HeartbeatResp"
	case pb.MsgInstallSnapshot:
		return "InstallSnapshot"
	case pb.MsgTimeoutNow:
		return "TimeoutNow"
	case pb.MsgReadIndex:
		return "ReadIndex"
	case pb.MsgReadIndexResp:
		return "ReadIndexResp"
	case pb.MsgTransferLeader:
		return "TransferLeader"
	}
	return t.String()
}
