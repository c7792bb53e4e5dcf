package raft_test

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/raftkv/raftkv/driver"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// memStore is a LogStore over MemoryStorage. The MemoryStorage is the
// durable image: Save only buffers, Sync makes what was saved durable, and
// a crash (dropUnsynced) loses what was saved but not synced.
type memStore struct {
	*raft.MemoryStorage
	pending []pendingWrite
}

type pendingWrite struct {
	hs   pb.HardState
	snap *pb.SnapshotMeta
	ents []pb.Entry
}

func newMemStore() *memStore { return &memStore{MemoryStorage: raft.NewMemoryStorage()} }

func (s *memStore) Save(hs pb.HardState, snap *pb.SnapshotMeta, ents []pb.Entry) error {
	s.pending = append(s.pending, pendingWrite{hs: hs, snap: snap, ents: slices.Clone(ents)})
	return nil
}

func (s *memStore) Sync() error {
	for _, w := range s.pending {
		if w.snap != nil {
			if err := s.ApplySnapshot(*w.snap); err != nil {
				return err
			}
		}
		if err := s.Append(w.ents); err != nil {
			return err
		}
		if !w.hs.IsEmpty() {
			s.SetHardState(w.hs)
		}
	}
	s.pending = s.pending[:0]
	return nil
}

// dropUnsynced is what a crash does to the store.
func (s *memStore) dropUnsynced() { s.pending = nil }

// crashPhase names a point in the Ready loop where a crash can be injected.
type crashPhase int

const (
	// crashBeforeSync: the Ready is saved but not synced (lost by the
	// crash); Messages already left, MessagesAfterPersist not.
	crashBeforeSync crashPhase = iota + 1
	// crashAfterPersist: the Ready is durable, MessagesAfterPersist not sent.
	crashAfterPersist
	// crashAfterSend: everything sent, nothing applied, Advance not called.
	crashAfterSend
)

type delayedMsg struct {
	at  int
	seq int
	m   pb.Message
}

// cluster is a tiny lock-step harness: every tick, every core is driven
// and every message delivered (unless cut, held, dropped or delayed), for
// scripted tests of the core. After every Ready it checks Election Safety,
// State Machine Safety, that a term and vote are durable before a message
// of that term leaves, and one vote per term; after every Step, Tick and
// Advance, the core's own documented invariants (checkCore).
type cluster struct {
	t       testing.TB
	ids     []pb.NodeID
	tweak   func(*raft.Config)
	cores   map[pb.NodeID]*raft.Raft
	stores  map[pb.NodeID]*memStore
	applied map[pb.NodeID]*[]pb.Entry
	reads   map[pb.NodeID][]raft.ReadState
	inbox   []pb.Message

	// cut isolates a member in both directions; cutLink cuts one direction
	// of one link: cutLink[[2]pb.NodeID{from, to}].
	cut     map[pb.NodeID]bool
	cutLink map[[2]pb.NodeID]bool
	// hold keeps every message sent in held instead of delivering it; the
	// test delivers them one by one with deliver.
	hold bool
	held []pb.Message
	// net, when set, says how a message travels: one delivery per element,
	// each after that many ticks (0: now). Empty drops the message.
	net     func(m pb.Message) []int
	delayed []delayedMsg
	now     int
	seq     int
	// onSend observes every message as it leaves its sender.
	onSend func(m pb.Message)
	// onReady observes every Ready as it is handed out.
	onReady func(id pb.NodeID, rd *raft.Ready)
	// onStep observes every message as it is delivered; onDrop every
	// message that is not (its link is cut, or the test discards it).
	onStep func(m pb.Message)
	onDrop func(m pb.Message)
	// onNote receives the narration of scripted scenarios (say); onSkim
	// is told when a stretch narrated by skim starts and ends.
	onNote func(text string)
	onSkim func(on bool)
	// byzantine turns off the cluster-wide checks (Election Safety, State
	// Machine Safety) once forged messages were injected: the protocol does
	// not promise them against forgeries. Per-member checks stay on.
	byzantine bool
	// lazyCommit turns off drive's stand-in for the runtime's commit-notice
	// timer, so a test sees a commit index wait for the next AppendEntries
	// or tick.
	lazyCommit bool
	// crashHook, when set, is asked at each crashPhase whether the member
	// crashes there (and restarts from its durable state).
	crashHook func(id pb.NodeID, p crashPhase) bool

	// Counters.
	sent       map[pb.MessageType]int
	sentTo     map[pb.NodeID]map[pb.MessageType]int
	entryBytes map[pb.NodeID]uint64 // entry payload carried to each member in AppendEntries
	rejects    int                  // AppendEntriesResp rejecting a prevLogIndex (log mismatch)

	// Safety records.
	leaders   map[pb.Term]pb.NodeID
	committed map[pb.Index]pb.Entry
	votes     map[voteKey]pb.NodeID
	maxTerm   map[pb.NodeID]pb.Term
	// seen is, per member since its last start, the highest term, commit
	// and applied index checkCore saw: none of them may go back.
	seen map[pb.NodeID]raft.Status
}

type voteKey struct {
	voter pb.NodeID
	term  pb.Term
}

func newCluster(t testing.TB, n int, tweak func(*raft.Config)) *cluster {
	return newClusterOf(t, n, n, tweak)
}

// newClusterOf builds n members of which the first voters are bootstrapped
// as the voting configuration; the others start with an empty log, as a
// server about to join does, and learn the configuration by replication.
func newClusterOf(t testing.TB, n, voters int, tweak func(*raft.Config)) *cluster {
	c := &cluster{t: t, tweak: tweak, cores: map[pb.NodeID]*raft.Raft{}, stores: map[pb.NodeID]*memStore{},
		applied: map[pb.NodeID]*[]pb.Entry{}, reads: map[pb.NodeID][]raft.ReadState{},
		cut: map[pb.NodeID]bool{}, cutLink: map[[2]pb.NodeID]bool{},
		sent: map[pb.MessageType]int{}, sentTo: map[pb.NodeID]map[pb.MessageType]int{},
		entryBytes: map[pb.NodeID]uint64{}, leaders: map[pb.Term]pb.NodeID{},
		committed: map[pb.Index]pb.Entry{}, votes: map[voteKey]pb.NodeID{}, maxTerm: map[pb.NodeID]pb.Term{},
		seen: map[pb.NodeID]raft.Status{}}
	for i := 1; i <= n; i++ {
		c.ids = append(c.ids, pb.NodeID(i))
	}
	hs, ents, err := raft.Bootstrap(c.ids[:voters])
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range c.ids {
		st := newMemStore()
		if int(id) <= voters {
			if err := st.Save(hs, nil, ents); err != nil {
				t.Fatal(err)
			}
			if err := st.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		c.stores[id] = st
		c.applied[id] = new([]pb.Entry)
		c.sentTo[id] = map[pb.MessageType]int{}
		c.start(id, tweak)
	}
	return c
}

func (c *cluster) start(id pb.NodeID, tweak func(*raft.Config)) {
	cfg := raft.Config{ID: id, Storage: c.stores[id], Seed: uint64(id) * 7919}
	if tweak != nil {
		tweak(&cfg)
	}
	r, err := raft.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	if r.Term() < c.maxTerm[id] {
		c.t.Fatalf("member %d restarted at term %d below term %d it had sent messages in", id, r.Term(), c.maxTerm[id])
	}
	c.cores[id] = r
	delete(c.seen, id)
	c.checkCore(id, "restart")
}

// checkCore fails the test, naming the values, when member id's core
// breaks one of its documented invariants or has stopped on a failure.
func (c *cluster) checkCore(id pb.NodeID, after string) {
	c.t.Helper()
	r := c.cores[id]
	if err := r.Err(); err != nil {
		c.t.Fatalf("member %d stopped after %s: %v", id, after, err)
	}
	if err := r.CheckInvariants(); err != nil {
		c.t.Fatalf("after %s: %v", after, err)
	}
	st, prev := r.Status(), c.seen[id]
	if st.Term < prev.Term || st.Commit < prev.Commit || st.Applied < prev.Applied {
		c.t.Fatalf("member %d went back after %s: term %d commit %d applied %d, had term %d commit %d applied %d",
			id, after, st.Term, st.Commit, st.Applied, prev.Term, prev.Commit, prev.Applied)
	}
	c.seen[id] = raft.Status{Term: st.Term, Commit: st.Commit, Applied: st.Applied}
}

// tickCore ticks member id once and checks its invariants.
func (c *cluster) tickCore(id pb.NodeID) {
	c.t.Helper()
	if err := c.cores[id].Tick(); err != nil {
		c.t.Fatalf("member %d: tick: %v", id, err)
	}
	c.checkCore(id, "Tick")
}

// crash loses everything not synced, including the state machine (it is
// rebuilt by applying the log again), and restarts the member.
func (c *cluster) crash(id pb.NodeID) {
	c.stores[id].dropUnsynced()
	*c.applied[id] = nil
	c.start(id, c.tweak)
}

// handle runs one Ready of member id through the driver (or, with a crash
// hook, through the same steps one by one so a crash can fall between them).
func (c *cluster) handle(id pb.NodeID) {
	r, st := c.cores[id], c.stores[id]
	if c.crashHook == nil {
		// One Ready at a time, through the persister's contract
		// (driver.PersistBatch): send, persist and sync, send what
		// waited, apply, advance.
		rd := r.Ready()
		out := outbox{c, id}
		if len(rd.Messages) > 0 {
			out.Send(rd.Messages)
		}
		if err := driver.PersistBatch(st, []raft.Ready{rd}, out.Send); err != nil {
			c.t.Fatal(err)
		}
		if rd.Snapshot != nil || len(rd.CommittedEntries) > 0 {
			if err := (applier{c, id}).Apply(rd.Snapshot, rd.CommittedEntries); err != nil {
				c.t.Fatal(err)
			}
		}
		if err := r.Advance(rd); err != nil {
			c.t.Fatal(err)
		}
		if c.onReady != nil {
			c.onReady(id, &rd)
		}
		c.afterReady(id, rd)
		return
	}
	rd := r.Ready()
	if c.onReady != nil {
		c.onReady(id, &rd)
	}
	c.send(id, rd.Messages)
	// The steps of driver.PersistBatch, with a crash point between save and sync.
	var hs pb.HardState
	if rd.HardStateChanged {
		hs = rd.HardState
	}
	if err := st.Save(hs, rd.Snapshot, rd.Entries); err != nil {
		c.t.Fatal(err)
	}
	if c.crashHook(id, crashBeforeSync) {
		c.crash(id)
		return
	}
	if rd.MustSync {
		if err := st.Sync(); err != nil {
			c.t.Fatal(err)
		}
	}
	if c.crashHook(id, crashAfterPersist) {
		c.crash(id)
		return
	}
	c.send(id, rd.MessagesAfterPersist)
	if c.crashHook(id, crashAfterSend) {
		c.crash(id)
		return
	}
	if err := (applier{c, id}).Apply(rd.Snapshot, rd.CommittedEntries); err != nil {
		c.t.Fatal(err)
	}
	if err := r.Advance(rd); err != nil {
		c.t.Fatal(err)
	}
	c.afterReady(id, rd)
}

func (c *cluster) afterReady(id pb.NodeID, rd raft.Ready) {
	c.checkCore(id, fmt.Sprintf("Advance of Ready %d", rd.ID))
	c.reads[id] = append(c.reads[id], rd.ReadStates...)
	r := c.cores[id]
	if r.Role() == raft.Leader && !c.byzantine {
		if other, ok := c.leaders[r.Term()]; ok && other != id {
			c.t.Fatalf("election safety: %d and %d both lead term %d", other, id, r.Term())
		}
		c.leaders[r.Term()] = id
	}
}

type outbox struct {
	c  *cluster
	id pb.NodeID
}

func (o outbox) Send(m []pb.Message) { o.c.send(o.id, m) }

// send checks what leaves a member and routes it.
func (c *cluster) send(from pb.NodeID, msgs []pb.Message) {
	durable := c.stores[from].HardState()
	for _, m := range msgs {
		if m.Type != pb.MsgPreVote && m.Type != pb.MsgPreVoteResp {
			if m.Term > durable.Term {
				c.t.Fatalf("%d sent %s before term %d was durable (durable %d)", from, m, m.Term, durable.Term)
			}
			c.maxTerm[from] = max(c.maxTerm[from], m.Term)
		}
		if m.Type == pb.MsgRequestVoteResp && !m.Reject {
			if durable.Term != m.Term || durable.Vote != m.To {
				c.t.Fatalf("%d granted %s before its vote was durable (durable %+v)", from, m, durable)
			}
			k := voteKey{from, m.Term}
			if v, ok := c.votes[k]; ok && v != m.To {
				c.t.Fatalf("%d voted twice in term %d: for %d and %d", from, m.Term, v, m.To)
			}
			c.votes[k] = m.To
		}
		c.sent[m.Type]++
		if c.sentTo[m.To] == nil {
			c.sentTo[m.To] = map[pb.MessageType]int{}
		}
		c.sentTo[m.To][m.Type]++
		if m.Type == pb.MsgAppendEntries {
			for i := range m.Entries {
				c.entryBytes[m.To] += uint64(len(m.Entries[i].Data))
			}
		}
		if m.Type == pb.MsgAppendEntriesResp && m.Reject && m.Index > 0 {
			c.rejects++
		}
		if c.onSend != nil {
			c.onSend(m)
		}
		c.route(m)
	}
}

func (c *cluster) route(m pb.Message) {
	if c.hold {
		c.held = append(c.held, m)
		return
	}
	if c.net == nil {
		c.inbox = append(c.inbox, m)
		return
	}
	for _, d := range c.net(m) {
		if d <= 0 {
			c.inbox = append(c.inbox, m)
			continue
		}
		c.seq++
		c.delayed = append(c.delayed, delayedMsg{at: c.now + d, seq: c.seq, m: m})
	}
}

type applier struct {
	c  *cluster
	id pb.NodeID
}

// Apply checks State Machine Safety: every member applies the same entry at
// each index, in order.
func (a applier) Apply(snap *pb.SnapshotMeta, ents []pb.Entry) error {
	list := a.c.applied[a.id]
	if snap != nil {
		// The state machine restarts from the snapshot: a placeholder
		// entry stands for it.
		*list = []pb.Entry{{Index: snap.Index, Term: snap.Term}}
	}
	for _, e := range ents {
		if n := len(*list); n > 0 && (*list)[n-1].Index+1 != e.Index {
			a.c.t.Fatalf("member %d applied %d after %d", a.id, e.Index, (*list)[n-1].Index)
		}
		prev, ok := a.c.committed[e.Index]
		switch {
		case a.c.byzantine:
		case !ok:
			a.c.committed[e.Index] = pb.Entry{Term: e.Term, Index: e.Index, Type: e.Type, Data: slices.Clone(e.Data)}
		case prev.Term != e.Term || prev.Type != e.Type || !bytes.Equal(prev.Data, e.Data):
			a.c.t.Fatalf("state machine safety: member %d applied %v at %d, another applied %v", a.id, e, e.Index, prev)
		}
		*list = append(*list, e)
	}
	return nil
}

func (c *cluster) deliverable(m pb.Message) bool {
	return c.cores[m.To] != nil && !c.cut[m.From] && !c.cut[m.To] && !c.cutLink[[2]pb.NodeID{m.From, m.To}]
}

// readyAll runs every core's Ready loop until none has work. It reports
// whether any had.
func (c *cluster) readyAll() bool {
	busy := false
	for _, id := range c.ids {
		for c.cores[id].HasReady() {
			busy = true
			c.handle(id)
		}
	}
	return busy
}

// drive runs every core's Ready loop and delivers messages until quiet.
// followerOf returns the first member, in id order, that is not lead.
func (c *cluster) followerOf(lead pb.NodeID) pb.NodeID {
	if c.ids[0] == lead {
		return c.ids[1]
	}
	return c.ids[0]
}

func (c *cluster) drive() {
	for round := 0; round < 1000; round++ {
		busy := c.readyAll()
		msgs := c.inbox
		c.inbox = nil
		for _, m := range msgs {
			if !c.deliverable(m) {
				c.dropped(m)
				continue
			}
			busy = true
			c.step(m)
		}
		if !busy && !c.lazyCommit {
			// Nothing else to do: the runtime's commit-notice timer, which
			// waits longer than a round of messages, fires now.
			for _, id := range c.ids {
				if c.cores[id].CommitUnsent() {
					c.cores[id].SendCommit()
					busy = true
				}
			}
		}
		if !busy {
			return
		}
	}
	c.t.Fatal("cluster did not quiesce")
}

func (c *cluster) step(m pb.Message) {
	if c.onStep != nil {
		c.onStep(m)
	}
	if err := c.cores[m.To].Step(m); err != nil {
		c.t.Fatalf("step %s: %v", m, err)
	}
	c.checkCore(m.To, "Step "+m.String())
}

// deliver steps the held messages that match (and are deliverable), drops
// the others that match, keeps the rest held, and runs the Ready loops. It
// returns how many were delivered.
func (c *cluster) deliver(match func(m pb.Message) bool) int {
	var keep []pb.Message
	n := 0
	msgs := c.held
	c.held = nil
	for _, m := range msgs {
		if !match(m) {
			keep = append(keep, m)
			continue
		}
		if c.deliverable(m) {
			c.step(m)
			n++
		} else {
			c.dropped(m)
		}
	}
	c.held = append(keep, c.held...)
	c.readyAll()
	return n
}

// discard drops held messages that match.
func (c *cluster) discard(match func(m pb.Message) bool) {
	c.held = slices.DeleteFunc(c.held, func(m pb.Message) bool {
		if match(m) {
			c.dropped(m)
			return true
		}
		return false
	})
}

func (c *cluster) dropped(m pb.Message) {
	if c.onDrop != nil {
		c.onDrop(m)
	}
}

// say narrates a scripted scenario: the transcripts print it, tests ignore it.
func (c *cluster) say(format string, args ...any) {
	if c.onNote != nil {
		c.onNote(fmt.Sprintf(format, args...))
	}
}

// skim narrates a long stretch, f, that a transcript summarises (elections
// and leaders only) rather than printing message by message.
func (c *cluster) skim(text string, f func()) {
	c.say("%s", text)
	if c.onSkim != nil {
		c.onSkim(true)
		defer c.onSkim(false)
	}
	f()
}

// msgIs matches messages by type, sender and recipient (0: any).
func msgIs(t pb.MessageType, from, to pb.NodeID) func(pb.Message) bool {
	return func(m pb.Message) bool {
		return (t == pb.MsgNone || m.Type == t) && (from == 0 || m.From == from) && (to == 0 || m.To == to)
	}
}

func anyMsg(pb.Message) bool { return true }

func (c *cluster) tick(n int) {
	for i := 0; i < n; i++ {
		c.now++
		c.releaseDelayed()
		for _, id := range c.ids {
			c.tickCore(id)
		}
		c.drive()
	}
}

// tickOne ticks one core n times and runs the Ready loops (delivering
// messages unless held).
func (c *cluster) tickOne(id pb.NodeID, n int) {
	for i := 0; i < n; i++ {
		c.tickCore(id)
	}
	if c.hold {
		c.readyAll()
	} else {
		c.drive()
	}
}

// campaign ticks member id (not a leader) alone until it starts an
// election (PreVote or real) and runs the Ready loops.
func (c *cluster) campaign(id pb.NodeID) {
	r := c.cores[id]
	for r.HasReady() {
		c.handle(id)
	}
	for i := 0; i < 100*raft.DefaultElectionTicks && !r.HasReady(); i++ {
		c.tickCore(id)
	}
	if role := r.Role(); role != raft.Candidate && role != raft.PreCandidate {
		c.t.Fatalf("member %d did not campaign (%s)", id, role)
	}
	if c.hold {
		c.readyAll()
	} else {
		c.drive()
	}
}

func (c *cluster) releaseDelayed() {
	if len(c.delayed) == 0 {
		return
	}
	slices.SortFunc(c.delayed, func(a, b delayedMsg) int {
		if a.at != b.at {
			return a.at - b.at
		}
		return a.seq - b.seq
	})
	i := 0
	for i < len(c.delayed) && c.delayed[i].at <= c.now {
		c.inbox = append(c.inbox, c.delayed[i].m)
		i++
	}
	c.delayed = append(c.delayed[:0], c.delayed[i:]...)
}

// partition cuts every link between members of different groups (and
// heals every other link); a member in no group is isolated.
func (c *cluster) partition(groups ...[]pb.NodeID) {
	clear(c.cutLink)
	group := map[pb.NodeID]int{}
	for g, ids := range groups {
		for _, id := range ids {
			group[id] = g + 1
		}
	}
	for _, a := range c.ids {
		for _, b := range c.ids {
			if a != b && (group[a] == 0 || group[a] != group[b]) {
				c.cutLink[[2]pb.NodeID{a, b}] = true
			}
		}
	}
}

// leaderOf returns the member of ids that leads the highest term (0: none).
func (c *cluster) leaderOf(ids ...pb.NodeID) pb.NodeID {
	var lead pb.NodeID
	for _, id := range ids {
		if c.cores[id].Role() == raft.Leader && (lead == 0 || c.cores[id].Term() > c.cores[lead].Term()) {
			lead = id
		}
	}
	return lead
}

// waitLeaderOf ticks until a member of ids leads.
func (c *cluster) waitLeaderOf(ids ...pb.NodeID) pb.NodeID {
	for i := 0; i < 200; i++ {
		if l := c.leaderOf(ids...); l != 0 {
			return l
		}
		c.tick(1)
	}
	c.t.Fatalf("no leader among %v", ids)
	return 0
}

func (c *cluster) leader() pb.NodeID {
	var lead pb.NodeID
	for _, id := range c.ids {
		if c.cut[id] {
			continue
		}
		if c.cores[id].Role() == raft.Leader {
			if lead != 0 && c.cores[id].Term() == c.cores[lead].Term() {
				c.t.Fatalf("two leaders in term %d: %d and %d", c.cores[id].Term(), lead, id)
			}
			if lead == 0 || c.cores[id].Term() > c.cores[lead].Term() {
				lead = id
			}
		}
	}
	return lead
}

func (c *cluster) waitLeader() pb.NodeID {
	for i := 0; i < 200; i++ {
		if l := c.leader(); l != 0 {
			return l
		}
		c.tick(1)
	}
	c.t.Fatal("no leader elected")
	return 0
}

// commands returns the application commands member id has applied.
func (c *cluster) commands(id pb.NodeID) []string {
	var cmds []string
	for _, e := range *c.applied[id] {
		if len(e.Data) > 0 && e.Type == pb.EntryNormal {
			cmds = append(cmds, string(e.Data))
		}
	}
	return cmds
}

// propose proposes cmds at member id, failing the test on error.
func (c *cluster) propose(id pb.NodeID, cmds ...string) pb.Index {
	data := make([][]byte, len(cmds))
	for i := range cmds {
		data[i] = []byte(cmds[i])
	}
	first, _, err := c.cores[id].Propose(data...)
	if err != nil {
		c.t.Fatalf("propose at %d: %v", id, err)
	}
	return first
}

// appliedCount returns how many members have applied cmd.
func (c *cluster) appliedCount(cmd string) int {
	n := 0
	for _, id := range c.ids {
		if slices.Contains(c.commands(id), cmd) {
			n++
		}
	}
	return n
}

// one submits cmd to the leader until at least want members applied it,
// the way a client retries (the 6.824 "one"): it returns the ticks taken.
func (c *cluster) one(cmd string, want, maxTicks int) int {
	for ticks := 0; ticks < maxTicks; {
		if l := c.leader(); l != 0 {
			if _, _, err := c.cores[l].Propose([]byte(cmd)); err == nil {
				for w := 0; w < 40 && ticks < maxTicks; w++ {
					c.tick(1)
					ticks++
					if c.appliedCount(cmd) >= want {
						return ticks
					}
				}
				continue
			}
		}
		c.tick(1)
		ticks++
	}
	c.t.Fatalf("%q not applied by %d members within %d ticks", cmd, want, maxTicks)
	return 0
}

func (c *cluster) resetCounters() {
	clear(c.sent)
	for _, m := range c.sentTo {
		clear(m)
	}
	clear(c.entryBytes)
	c.rejects = 0
}

func cmdN(prefix string, i int) string { return fmt.Sprintf("%s%d", prefix, i) }

func TestSmokeElectionAndReplication(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	term := c.cores[lead].Term()
	for i := 0; i < 10; i++ {
		if _, _, err := c.cores[lead].Propose([]byte(fmt.Sprintf("cmd%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	c.tick(5)
	for _, id := range c.ids {
		if cmds := c.commands(id); len(cmds) != 10 {
			t.Fatalf("member %d applied %v", id, cmds)
		}
	}
	c.tick(500)
	if c.leader() != lead || c.cores[lead].Term() != term {
		t.Fatalf("leadership changed without faults: %d term %d", c.leader(), c.cores[lead].Term())
	}
}

func TestSmokeReelectionAndRejoin(t *testing.T) {
	c := newCluster(t, 5, nil)
	old := c.waitLeader()
	c.cut[old] = true
	c.tick(50)
	lead := c.waitLeader()
	if lead == old {
		t.Fatal("cut-off leader still leads")
	}
	if c.cores[old].Role() == raft.Leader {
		t.Fatal("isolated leader did not step down (CheckQuorum)")
	}
	term := c.cores[lead].Term()
	if _, _, err := c.cores[lead].Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	c.tick(3)
	delete(c.cut, old)
	c.tick(100)
	if c.leader() != lead || c.cores[lead].Term() != term {
		t.Fatalf("rejoin disturbed the leader: now %d term %d (was %d term %d)", c.leader(), c.cores[c.leader()].Term(), lead, term)
	}
	if got := c.cores[old].Committed(); got != c.cores[lead].Committed() {
		t.Fatalf("rejoined member commit %d, leader %d", got, c.cores[lead].Committed())
	}
}
