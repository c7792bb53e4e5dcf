//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/api"
)

// A fault is injected by calling it; it returns what undoes it (nil when
// nothing needs undoing). Faults pick their targets among the members up
// at the time: the leader (as the members agree on it) or any member.
type fault struct {
	name   string
	hold   time.Duration // how long it stays before being undone
	inject func(r *run) (undo func())
}

var (
	faultKill       = fault{"kill -9", 1500 * time.Millisecond, func(r *run) func() { return r.crash(r.target(), false) }}
	faultPowerLoss  = fault{"power loss", 1500 * time.Millisecond, func(r *run) func() { return r.crash(r.target(), true) }}
	faultPause      = fault{"SIGSTOP leader", 3 * time.Second, (*run).pauseLeader}
	faultIsolate    = fault{"isolate member", 3 * time.Second, (*run).isolate}
	faultSplit      = fault{"leader in minority", 4 * time.Second, (*run).splitLeaderMinority}
	faultOneWay     = fault{"one-way partition", 3 * time.Second, (*run).oneWay}
	faultLossy      = fault{"loss+dup+delay+rate", 6 * time.Second, (*run).lossy}
	faultTransfer   = fault{"leader transfer", 1500 * time.Millisecond, (*run).transfer}
	faultKillAll    = fault{"kill all", 1 * time.Second, (*run).killAll}
	faultsCombining = []fault{faultKill, faultPause, faultIsolate, faultOneWay, faultLossy, faultTransfer}
)

// repeat injects faults drawn by pick, one round after another, until
// the deadline.
func repeat(pick func() []fault) func(r *run, until time.Time) {
	return func(r *run, until time.Time) {
		for time.Now().Before(until) {
			fs := pick()
			var undos []func()
			var hold time.Duration
			var names []string
			for _, f := range fs {
				names = append(names, f.name)
				if u := f.inject(r); u != nil {
					undos = append(undos, u)
				}
				hold = max(hold, f.hold)
			}
			r.fault(strings.Join(names, " + "))
			time.Sleep(hold)
			for i := len(undos) - 1; i >= 0; i-- {
				undos[i]()
			}
			time.Sleep(2 * time.Second) // let the cluster settle and serve
		}
	}
}

func one(f fault) func(r *run, until time.Time) {
	return repeat(func() []fault { return []fault{f} })
}

// combined draws two different faults each round.
func combined() func(r *run, until time.Time) {
	return repeat(func() []fault {
		i := rand.IntN(len(faultsCombining))
		j := (i + 1 + rand.IntN(len(faultsCombining)-1)) % len(faultsCombining)
		return []fault{faultsCombining[i], faultsCombining[j]}
	})
}

// voters returns the running members that are neither removed nor learners
// as far as the harness knows.
func (r *run) voters() []*member {
	var out []*member
	for _, m := range r.c.running() {
		if !m.isRemoved() {
			out = append(out, m)
		}
	}
	return out
}

// target is the leader half the time, else any running member.
func (r *run) target() *member {
	if rand.IntN(2) == 0 {
		if m := r.c.agreedLeader(); m != nil {
			return m
		}
	}
	vs := r.voters()
	return vs[rand.IntN(len(vs))]
}

func (r *run) leaderOrAny() *member {
	if m, err := r.c.leader(5 * time.Second); err == nil {
		return m
	}
	vs := r.voters()
	return vs[rand.IntN(len(vs))]
}

func (r *run) others(m *member) []int {
	var ids []int
	for _, o := range r.voters() {
		if o.id != m.id {
			ids = append(ids, o.id)
		}
	}
	return ids
}

func (r *run) crash(m *member, powerLoss bool) func() {
	if powerLoss {
		m.powerLoss()
	} else {
		m.kill()
	}
	return func() { r.restart(m) }
}

func (r *run) pauseLeader() func() {
	m := r.leaderOrAny()
	m.pause()
	return m.resume
}

func (r *run) healNetwork() {
	if err := r.c.nw.heal(); err != nil {
		r.fail("heal: %v", err)
	}
	for _, m := range r.c.all() {
		m.proxy.healAll()
	}
}

func (r *run) isolate() func() {
	m := r.target()
	if err := r.c.nw.partition([]int{m.id}, r.others(m)); err != nil {
		r.fail("isolate %d: %v", m.id, err)
	}
	return r.healNetwork
}

// oneWay blocks messages in one direction only (the proxy holds them):
// either the leader's to one follower, or every follower's to the leader.
func (r *run) oneWay() func() {
	lead := r.leaderOrAny()
	others := r.others(lead)
	if rand.IntN(2) == 0 {
		f := r.c.member(others[rand.IntN(len(others))])
		f.proxy.block(memberIP(lead.id), true)
	} else {
		for _, id := range others {
			lead.proxy.block(memberIP(id), true)
		}
	}
	return r.healNetwork
}

func (r *run) lossy() func() {
	if err := r.c.nw.lossy(0.1, 0.05); err != nil {
		r.fail("lossy: %v", err)
	}
	if err := r.c.nw.rateLimit("8mbit"); err != nil {
		r.fail("tbf: %v", err)
	}
	for _, m := range r.c.all() {
		m.proxy.setDelay(10*time.Millisecond, 30*time.Millisecond)
		m.proxy.dupPerMille.Store(50)
	}
	return r.healNetwork
}

func (r *run) transfer() func() {
	lead := r.c.agreedLeader()
	if lead == nil {
		return nil
	}
	others := r.others(lead)
	to := others[rand.IntN(len(others))]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.c.sendJSON(ctx, http.MethodPost, lead.clientAddr(), api.PathTransfer, map[string]uint64{"id": uint64(to)})
	return nil
}

func (r *run) killAll() func() {
	ms := r.voters()
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Add(1)
		go func() { defer wg.Done(); m.kill() }()
	}
	wg.Wait()
	return func() {
		for _, m := range ms {
			r.restart(m)
		}
	}
}

// splitLeaderMinority puts the leader and one follower on the minority
// side of a five-member cluster and sends requests there: no write and no
// linearizable read may succeed. After healing, the writes (retried with
// their Idempotency-Key) complete, once each.
func (r *run) splitLeaderMinority() func() {
	lead := r.leaderOrAny()
	others := r.others(lead)
	rand.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
	minority := []int{lead.id, others[0]}
	if err := r.c.nw.partition(minority, others[1:]); err != nil {
		r.fail("split: %v", err)
	}
	type pending struct{ key, idem, token string }
	var writes []pending
	deadline := time.Now().Add(2 * time.Second)
	for n := 0; time.Now().Before(deadline); n++ {
		m := r.c.member(minority[n%2])
		p := pending{fmt.Sprintf("minority/%d", rand.Uint64()), fmt.Sprintf("%x", rand.Uint64()), fmt.Sprintf("m%d;", n)}
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		res := send(ctx, r.w.hc, http.MethodPost, m.clientAddr(), p.key, "op=append", []byte(p.token),
			map[string]string{api.HeaderIdempotencyKey: p.idem})
		cancel()
		if res.err == nil && res.status == http.StatusOK {
			r.fail("a write sent to member %d in the minority %v succeeded: %s", m.id, minority, res.body)
		}
		writes = append(writes, p)
		ctx, cancel = context.WithTimeout(context.Background(), 700*time.Millisecond)
		res = send(ctx, r.w.hc, http.MethodGet, m.clientAddr(), p.key, "consistency=linearizable", nil, nil)
		cancel()
		if res.err == nil && (res.status == http.StatusOK || res.status == http.StatusNotFound) {
			r.fail("a linearizable read sent to member %d in the minority %v answered %d", m.id, minority, res.status)
		}
		// Paced: a minority that refuses at once would otherwise take
		// hundreds of writes, each completed one by one after healing.
		time.Sleep(100 * time.Millisecond)
	}
	return func() {
		r.healNetwork()
		for _, p := range writes {
			r.completeAfterHeal(p.key, p.idem, p.token)
		}
	}
}

// completeAfterHeal retries a write until it succeeds, then reads the key:
// it must hold the token exactly once.
func (r *run) completeAfterHeal(key, idem, token string) {
	deadline := time.Now().Add(recoveryMax)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		res := send(ctx, r.w.hc, http.MethodPost, r.w.endpoint(), key, "op=append", []byte(token),
			map[string]string{api.HeaderIdempotencyKey: idem})
		cancel()
		if res.err == nil && res.status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			r.fail("write to %s sent into the minority did not complete within %v of healing", key, recoveryMax)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	var res result
	for try := 0; try < 50; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		res = send(ctx, r.w.hc, http.MethodGet, r.w.endpoint(), key, "", nil, nil)
		cancel()
		if res.err == nil && (res.status == http.StatusOK || res.status == http.StatusNotFound) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if res.err != nil || res.status != http.StatusOK || string(res.body) != token {
		r.fail("after healing %s holds %q (status %d, err %v), want %q once", key, res.body, res.status, res.err, token)
	}
}

// Membership changes under load: add a learner and start it with --join,
// promote it, remove an original member, add two more learners, and
// replace a majority of the voters in one joint-consensus change.
func membershipChanges(r *run, until time.Time) {
	c := r.c
	steps := []struct {
		name string
		do   func() error
	}{
		{"add learner 4", func() error { return r.addMember(4) }},
		{"promote 4", func() error { return r.admin(http.MethodPost, api.PathMembers+"/4/promote", nil) }},
		{"remove 1", func() error { return r.removeMember(1) }},
		{"add learner 5", func() error { return r.addMember(5) }},
		{"add learner 6", func() error { return r.addMember(6) }},
		{"replace voters {2,3,4} by {4,5,6}", func() error {
			if err := r.admin(http.MethodPut, api.PathVoters, api.VotersRequest{Voters: []uint64{4, 5, 6}}); err != nil {
				return err
			}
			r.retire(2)
			r.retire(3)
			return nil
		}},
	}
	for _, s := range steps {
		r.fault("membership: " + s.name)
		if err := s.do(); err != nil {
			r.fail("membership %s: %v", s.name, err)
			return
		}
		time.Sleep(time.Second)
	}
	for _, m := range c.all() {
		if m.isRemoved() {
			m.kill() // it stays up answering /v1/cluster; we need the CPU
		}
	}
	for time.Now().Before(until) { // a fault on the new configuration too
		r.fault("leader transfer")
		r.transfer()
		time.Sleep(2 * time.Second)
	}
}

// admin sends an admin request (to any member; redirects followed) until
// it succeeds, for up to 30s.
func (r *run) admin(method, path string, body any) error {
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		status, text, err := r.c.sendJSON(ctx, method, r.w.endpoint(), path, body)
		cancel()
		if err == nil && status/100 == 2 {
			return nil
		}
		if err == nil && method == http.MethodDelete && status == http.StatusNotFound && last != "" {
			return nil // an earlier attempt whose answer was lost removed it
		}
		last = fmt.Sprintf("%d %s %v", status, strings.TrimSpace(text), err)
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Errorf("%s %s: %s", method, path, last)
}

func (r *run) addMember(id int) error {
	m := r.c.member(id)
	if err := r.admin(http.MethodPost, api.PathMembers, api.Member{ID: uint64(id), PeerAddr: m.peerAddr(),
		ClientAddr: m.clientAddr()}); err != nil {
		return err
	}
	m.start("--join")
	return nil
}

func (r *run) removeMember(id int) error {
	if err := r.admin(http.MethodDelete, fmt.Sprintf("%s/%d", api.PathMembers, id), nil); err != nil {
		return err
	}
	r.retire(id)
	return nil
}

// retire marks a member removed: clients stop using it, it is not restarted.
func (r *run) retire(id int) {
	m := r.c.member(id)
	m.mu.Lock()
	m.removed = true
	m.mu.Unlock()
}
