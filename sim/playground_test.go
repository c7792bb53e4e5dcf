package sim

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func newTestPlayground(t *testing.T, opt PlaygroundOptions) *Playground {
	t.Helper()
	p, err := NewPlayground(opt)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func leaders(st PlaygroundState) []uint64 {
	var out []uint64
	for _, m := range st.Members {
		if m.Role == "leader" {
			out = append(out, m.ID)
		}
	}
	return out
}

func mustAct(t *testing.T, p *Playground, actions ...Action) {
	t.Helper()
	for _, a := range actions {
		if err := p.Act(a); err != nil {
			t.Fatalf("%+v: %v", a, err)
		}
	}
}

// TestPlaygroundElectsOneLeader shows that a fresh cluster, stepped event
// by event, elects exactly one leader and keeps it while nothing fails.
func TestPlaygroundElectsOneLeader(t *testing.T) {
	for _, n := range []int{3, 5, 7} {
		p := newTestPlayground(t, PlaygroundOptions{Seed: 1, Voters: n})
		if got := leaders(p.State()); len(got) != 0 {
			t.Fatalf("%d voters: leaders %v before any tick", n, got)
		}
		mustAct(t, p, Action{Op: "step", N: 400})
		if got := leaders(p.State()); len(got) != 1 {
			t.Fatalf("%d voters: leaders %v after 400 events, want one", n, got)
		}
		mustAct(t, p, Action{Op: "run", N: 5 * PlaygroundElectionTicks})
		if st := p.State(); len(leaders(st)) != 1 || st.Violation != "" {
			t.Fatalf("%d voters: leaders %v, violation %q after a quiet run", n, leaders(st), st.Violation)
		}
	}
}

// TestPlaygroundLeaderCrash shows that when the leader crashes, the others
// elect a new one: within 2E+4D (a timeout and a PreVote and vote round)
// on most seeds, and within LivenessTicks on every one tried. The crashed
// member keeps its durable term, vote and log.
func TestPlaygroundLeaderCrash(t *testing.T) {
	const seeds = 100
	bound := uint64(2*PlaygroundElectionTicks + 4*PlaygroundMaxDelay)
	within := 0
	for seed := uint64(1); seed <= seeds; seed++ {
		p := newTestPlayground(t, PlaygroundOptions{Seed: seed, Voters: 5})
		mustAct(t, p, until("leader", 0, 400), Action{Op: "propose", N: 2}, Action{Op: "run", N: 30})
		before := p.State()
		lead := before.Leader
		mustAct(t, p, Action{Op: "crash", ID: lead})
		t0 := p.State().Now
		mustAct(t, p, Action{Op: "until", What: "leader", N: LivenessTicks})
		st := p.State()
		if st.Leader == lead || st.Leader == 0 {
			t.Fatalf("seed %d: leader %d after %d crashed", seed, st.Leader, lead)
		}
		if st.Now-t0 <= bound {
			within++
		}
		old, was := st.Members[lead-1], before.Members[lead-1]
		if old.Up || old.Term != was.Term || old.Vote != was.Vote || old.Last != was.Last {
			t.Fatalf("seed %d: crashed leader shows up=%v term %d vote %d last %d; before the crash %d %d %d",
				seed, old.Up, old.Term, old.Vote, old.Last, was.Term, was.Vote, was.Last)
		}
		if st.Violation != "" {
			t.Fatalf("seed %d: %s", seed, st.Violation)
		}
	}
	if within < seeds*3/4 {
		t.Errorf("a new leader within %d ticks on %d of %d seeds; want most", bound, within, seeds)
	}
	t.Logf("new leader within %d ticks on %d of %d seeds", bound, within, seeds)
}

// TestPlaygroundReplay shows that the recorded actions, replayed on a
// fresh cluster of the same options, give an identical State.
func TestPlaygroundReplay(t *testing.T) {
	opt := PlaygroundOptions{Seed: 7, Voters: 5, Spares: 2}
	p := newTestPlayground(t, opt)
	script := []Action{
		{Op: "run", N: 45}, {Op: "propose", N: 3}, {Op: "step", N: 7}, {Op: "cut", ID: 1, To: 2},
		{Op: "run", N: 10}, {Op: "crash", ID: 3}, {Op: "run", N: 30}, {Op: "learners", IDs: []uint64{6}},
		{Op: "run", N: 20}, {Op: "restart", ID: 3}, {Op: "heal"}, {Op: "propose"}, {Op: "run", N: 3},
	}
	for _, a := range script {
		_ = p.Act(a) // some may be refused (no leader yet); refusals are not recorded
	}
	if st := p.State(); len(st.Messages) > 0 {
		mustAct(t, p, Action{Op: "dup", Msg: st.Messages[0].ID})
		mustAct(t, p, Action{Op: "drop", Msg: st.Messages[len(st.Messages)-1].ID})
	}
	mustAct(t, p, Action{Op: "snapshot"}, Action{Op: "run", N: 25})
	q, err := ReplayPlayground(p.Options(), p.Actions())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(p.State())
	b, _ := json.Marshal(q.State())
	if string(a) != string(b) {
		t.Fatalf("replay differs:\n%s\n%s", a, b)
	}
	if !reflect.DeepEqual(p.Actions(), q.Actions()) {
		t.Fatalf("replayed actions differ: %+v vs %+v", p.Actions(), q.Actions())
	}
}

// whatIfBreaks names the property each what-if scene breaks.
var whatIfBreaks = map[string]string{
	"whatif-lost-log": "Leader Completeness",
	"whatif-figure8":  "commitment rule",
}

// TestPlaygroundScenes plays every stage of every scene: none fails, and
// the checkers find nothing, except in a what-if scene, where they must
// name the property its broken rule breaks.
func TestPlaygroundScenes(t *testing.T) {
	for _, sc := range PlaygroundScenes(1) {
		p := newTestPlayground(t, sc.Options)
		for i := 0; i < sc.Stages; i++ {
			if err := p.Act(Action{Op: "stage", Scene: sc.Name, N: i}); err != nil && p.Violation() == nil {
				t.Fatalf("%s stage %d: %v", sc.Name, i, err)
			}
		}
		st := p.State()
		if want, ok := whatIfBreaks[sc.Name]; ok {
			// A what-if breaks a rule on purpose: the checkers must say which.
			if !strings.HasPrefix(st.Violation, want) {
				t.Fatalf("%s: violation %q, want %s", sc.Name, st.Violation, want)
			}
			continue
		}
		if st.Violation != "" || len(leaders(st)) == 0 {
			t.Fatalf("%s: violation %q, leaders %v", sc.Name, st.Violation, leaders(st))
		}
	}
}

func logTermAt(m PlaygroundMember, i uint64) uint64 {
	for _, c := range m.Log {
		if c.Index == i {
			return c.Term
		}
	}
	return 0
}

// TestPlaygroundFigure8 shows the scene reaching the states of Figure 8:
// in (c) index 3 of term 2 is on a majority (S1, S2, S3) and the term-4
// leader S1 does not count it committed; in (d) S5 leads and index 3 holds
// its term-3 entry on every running member.
func TestPlaygroundFigure8(t *testing.T) {
	opt := PlaygroundScenes(1)[5].Options
	p := newTestPlayground(t, opt)
	for i := 0; i <= 2; i++ {
		mustAct(t, p, Action{Op: "stage", Scene: "figure8", N: i})
	}
	st := p.State()
	s1 := st.Members[0]
	if s1.Role != "leader" || s1.Term != 4 {
		t.Fatalf("(c): S1 is %s in term %d, want leader of term 4", s1.Role, s1.Term)
	}
	for _, id := range []int{1, 2, 3} {
		if got := logTermAt(st.Members[id-1], 3); got != 2 {
			t.Fatalf("(c): S%d holds index 3 of term %d, want 2", id, got)
		}
	}
	if s1.Commit >= 3 {
		t.Fatalf("(c): S1 commits %d: it counted replicas of an entry of an older term", s1.Commit)
	}
	mustAct(t, p, Action{Op: "stage", Scene: "figure8", N: 3})
	st = p.State()
	if st.Leader != 5 || st.Violation != "" {
		t.Fatalf("(d): leader %d, violation %q; want S5 and none", st.Leader, st.Violation)
	}
	for _, m := range st.Members[1:] {
		if got := logTermAt(m, 3); got != 3 {
			t.Fatalf("(d): S%d holds index 3 of term %d, want S5's term 3", m.ID, got)
		}
	}
}

// TestPlaygroundRefusals shows bad options and actions answered with an
// error that names the problem, and nothing recorded.
func TestPlaygroundRefusals(t *testing.T) {
	for _, opt := range []PlaygroundOptions{{Voters: 2}, {Voters: 8}, {Voters: 3, Spares: 3}} {
		if _, err := NewPlayground(opt); err == nil {
			t.Errorf("%+v accepted", opt)
		}
	}
	p := newTestPlayground(t, PlaygroundOptions{Seed: 1, Voters: 3})
	for _, c := range []struct {
		a    Action
		want string
	}{
		{Action{Op: "fly"}, "no leader"},
		{Action{Op: "fly", ID: 1}, "unknown action"},
		{Action{Op: "crash", ID: 9}, "no member 9"},
		{Action{Op: "propose"}, "no leader"},
		{Action{Op: "propose", ID: 2}, "not the leader"},
		{Action{Op: "step", N: 0}, "want 1 to"},
		{Action{Op: "drop", Msg: 99}, "no message 99"},
		{Action{Op: "restart", ID: 1}, "is running"},
		{Action{Op: "stage", Scene: "nope"}, "no scene"},
		{Action{Op: "stage", Scene: "joint"}, "needs its own options"},
		{Action{Op: "until", What: "rain", N: 5}, "want leader"},
	} {
		err := p.Act(c.a)
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), c.want) {
			t.Errorf("%+v: got %v, want an error with %q", c.a, err, c.want)
		}
	}
	if n := len(p.Actions()); n != 0 {
		t.Errorf("refused actions recorded: %+v", p.Actions())
	}
}

// TestPlaygroundAmnesia shows the "what if" of a server restarting with
// an empty disk: the checkers stop the run and say which property broke,
// and the cluster refuses to move on.
func TestPlaygroundAmnesia(t *testing.T) {
	p := newTestPlayground(t, PlaygroundOptions{Seed: 3, Voters: 3})
	mustAct(t, p, until("leader", 0, 400), Action{Op: "propose", N: 2}, Action{Op: "run", N: 20})
	lead := p.State().Leader
	mustAct(t, p, Action{Op: "crash", ID: lead})
	if err := p.Act(Action{Op: "amnesia", ID: lead}); err == nil {
		t.Fatal("amnesia: no error")
	}
	st := p.State()
	if st.Violation == "" {
		t.Fatal("no violation reported")
	}
	var broken []string
	for _, c := range st.Checks {
		if !c.OK {
			broken = append(broken, c.Name)
		}
	}
	if len(broken) != 1 || !strings.HasPrefix(st.Violation, broken[0]) {
		t.Fatalf("broken checks %v for violation %q", broken, st.Violation)
	}
	if err := p.Step(1); err == nil {
		t.Fatal("a stopped run took a step")
	}
	t.Logf("%s: %s", broken[0], st.Violation)
}

// TestPlaygroundSceneStates shows that the scenes reach the states their
// narration describes, stage by stage.
func TestPlaygroundSceneStates(t *testing.T) {
	play := func(name string, upTo int) *Playground {
		for _, sc := range PlaygroundScenes(1) {
			if sc.Name != name {
				continue
			}
			p := newTestPlayground(t, sc.Options)
			for i := 0; i <= upTo; i++ {
				mustAct(t, p, Action{Op: "stage", Scene: name, N: i})
			}
			return p
		}
		t.Fatalf("no scene %s", name)
		return nil
	}
	role := func(st PlaygroundState, role string) (ids []uint64, terms []uint64) {
		for _, m := range st.Members {
			if m.Role == role {
				ids, terms = append(ids, m.ID), append(terms, m.Term)
			}
		}
		return ids, terms
	}

	// Split vote: two candidates of one term, nobody wins it.
	st := play("split-vote", 1).State()
	if ids, terms := role(st, "candidate"); len(ids) != 2 || terms[0] != terms[1] || st.Leader != 0 {
		t.Errorf("split vote: candidates %v of terms %v, leader %d", ids, terms, st.Leader)
	}

	// InstallSnapshot: in flight after the restart; then the follower's
	// log starts after the snapshot and it has applied what the leader has.
	p := play("snapshot", 2)
	st = p.State()
	inFlight := false
	for _, m := range st.Messages {
		inFlight = inFlight || m.Type == "InstallSnapshot"
	}
	if !inFlight {
		t.Errorf("snapshot scene: no InstallSnapshot in flight")
	}
	mustAct(t, p, Action{Op: "stage", Scene: "snapshot", N: 3})
	st = p.State()
	lead := st.Members[st.Leader-1]
	installed := 0
	for _, m := range st.Members {
		if m.Applied != lead.Applied {
			t.Errorf("snapshot scene: S%d applied %d; leader applied %d", m.ID, m.Applied, lead.Applied)
		}
		if m.ID != lead.ID && m.Snapshot > 0 && m.LogStart == m.Snapshot {
			installed++
		}
	}
	if installed != 1 {
		t.Errorf("snapshot scene: %d followers' logs start after an installed snapshot, want 1", installed)
	}

	// Joint consensus: C_old,new in force, then C_new without the old leader.
	p = play("joint", 2)
	st = p.State()
	old := st.Leader
	if c := st.Members[old-1].Conf; len(c.Outgoing) == 0 || slices.Contains(c.Voters, old) {
		t.Errorf("joint scene: configuration %+v, leader %d", c, old)
	}
	mustAct(t, p, Action{Op: "stage", Scene: "joint", N: 3}, Action{Op: "stage", Scene: "joint", N: 4})
	st = p.State()
	if c := st.Members[st.Leader-1].Conf; len(c.Outgoing) > 0 || !slices.Contains(c.Voters, st.Leader) || st.Leader == old {
		t.Errorf("joint scene, end: configuration %+v, leader %d (was %d)", c, st.Leader, old)
	}

	// Disruption: without PreVote the isolated server's term runs ahead
	// and unseats the leader; with PreVote neither happens.
	for _, c := range []struct {
		scene    string
		disrupts bool
	}{{"disrupt", true}, {"disrupt-prevote", false}} {
		p := play(c.scene, 0)
		before := p.State()
		mustAct(t, p, Action{Op: "stage", Scene: c.scene, N: 1})
		var isolated PlaygroundMember
		for _, m := range p.State().Members {
			if m.Term > isolated.Term || isolated.ID == 0 {
				isolated = m
			}
		}
		mustAct(t, p, Action{Op: "stage", Scene: c.scene, N: 2}, Action{Op: "stage", Scene: c.scene, N: 3})
		after := p.State()
		raised := isolated.Term > before.Members[before.Leader-1].Term
		changed := after.Members[after.Leader-1].Term != before.Members[before.Leader-1].Term
		if raised != c.disrupts || changed != c.disrupts {
			t.Errorf("%s: isolated server's term raised %v, leader's term changed %v; want %v",
				c.scene, raised, changed, c.disrupts)
		}
	}
}

// FuzzPlaygroundActions applies arbitrary actions: whatever they are, the
// playground answers with an error or applies them, never panics, and the
// recorded actions replay to the same state.
func FuzzPlaygroundActions(f *testing.F) {
	f.Add([]byte(`[{"op":"run","n":40},{"op":"propose","n":3},{"op":"crash"},{"op":"step","n":9}]`))
	f.Add([]byte(`[{"op":"voters","ids":[1,9,0]},{"op":"learners","ids":[4]},{"op":"dup","msg":3},{"op":"cut","id":1,"to":1}]`))
	f.Add([]byte(`[{"op":"until","what":"leader","n":300},{"op":"snapshot"},{"op":"transfer","id":2},{"op":"amnesia","id":1}]`))
	f.Add([]byte(`[{"op":"stage","scene":"figure8","n":7},{"op":"timeout","id":3},{"op":"remove","id":2},{"op":"heal"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var actions []Action
		if json.Unmarshal(data, &actions) != nil || len(actions) > 40 {
			return
		}
		p, err := NewPlayground(PlaygroundOptions{Seed: 5, Voters: 3, Spares: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range actions {
			a.N = min(a.N, 500) // keep each input quick
			_ = p.Act(a)
		}
		q, err := ReplayPlayground(p.Options(), p.Actions())
		if err != nil {
			t.Fatalf("replay: %v", err)
		}
		a, _ := json.Marshal(p.State())
		b, _ := json.Marshal(q.State())
		if string(a) != string(b) {
			t.Fatalf("replay differs:\n%s\n%s", a, b)
		}
	})
}

// TestPlaygroundActions shows the learner's other actions doing what they
// say: leadership moves to the member named; a learner added, promoted and
// removed; two snapshots compact the log to the first; a duplicated message
// is in flight twice; one member's timeout makes it campaign.
func TestPlaygroundActions(t *testing.T) {
	p := newTestPlayground(t, PlaygroundOptions{Seed: 2, Voters: 3, Spares: 1})
	mustAct(t, p, until("leader", 0, 400), Action{Op: "run", N: 10})
	st := p.State()
	to := uint64(1)
	if st.Leader == 1 {
		to = 2
	}
	mustAct(t, p, Action{Op: "transfer", ID: to}, Action{Op: "until", What: "leader", ID: to, N: 100})

	conf := func() PlaygroundConf { st := p.State(); return st.Members[st.Leader-1].Conf }
	mustAct(t, p, Action{Op: "learner", ID: 4}, Action{Op: "run", N: 20})
	if c := conf(); !slices.Equal(c.Learners, []uint64{4}) {
		t.Fatalf("after adding learner 4: %+v", c)
	}
	mustAct(t, p, Action{Op: "promote", ID: 4}, Action{Op: "run", N: 30})
	if c := conf(); !slices.Contains(c.Voters, 4) || len(c.Learners) > 0 || len(c.Outgoing) > 0 {
		t.Fatalf("after promoting 4: %+v", c)
	}
	mustAct(t, p, Action{Op: "remove", ID: 4}, Action{Op: "run", N: 30})
	if c := conf(); slices.Contains(c.Voters, 4) {
		t.Fatalf("after removing 4: %+v", c)
	}

	lead := p.State().Leader
	mustAct(t, p, Action{Op: "propose", N: 3}, Action{Op: "run", N: 10}, Action{Op: "snapshot", ID: lead})
	first := p.State().Members[lead-1].Snapshot
	mustAct(t, p, Action{Op: "propose", N: 3}, Action{Op: "run", N: 10}, Action{Op: "snapshot", ID: lead})
	m := p.State().Members[lead-1]
	if m.Snapshot <= first || m.LogStart != first {
		t.Fatalf("two snapshots at %d then %d: log starts after %d, want the first", first, m.Snapshot, m.LogStart)
	}
	if err := p.Act(Action{Op: "snapshot", ID: lead}); err == nil {
		t.Fatal("a snapshot with nothing new applied was taken")
	}

	mustAct(t, p, Action{Op: "run", N: PlaygroundHeartbeatTicks})
	st = p.State()
	if len(st.Messages) == 0 {
		t.Fatal("no message in flight")
	}
	orig := st.Messages[0]
	mustAct(t, p, Action{Op: "dup", Msg: orig.ID})
	copies := 0
	for _, msg := range p.State().Messages {
		if msg.Type == orig.Type && msg.From == orig.From && msg.To == orig.To && msg.Index == orig.Index && msg.Term == orig.Term {
			copies++
		}
	}
	if copies < 2 {
		t.Fatalf("after dup: %d copies of message %d", copies, orig.ID)
	}

	follower := p.followers()[0]
	term := p.State().Members[follower-1].Term
	mustAct(t, p, Action{Op: "isolate", ID: follower}, Action{Op: "timeout", ID: follower})
	if m := p.State().Members[follower-1]; m.Role != "precandidate" || m.Term != term {
		t.Fatalf("after timing out with PreVote: %s in term %d (was %d)", m.Role, m.Term, term)
	}
}
