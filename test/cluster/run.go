//go:build cluster

package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftkv/raftkv/api"
)

// Bounds of the liveness checks.
const (
	recoveryMax    = 20 * time.Second // healed cluster answers a write
	convergeMax    = 30 * time.Second // every member applies the same index
	linearCheckMax = 90 * time.Second // porcupine's budget
)

// scenario is one nemesis run under a workload.
type scenario struct {
	name     string
	opts     options
	workload workloadConfig
	duration time.Duration
	nemesis  func(r *run, until time.Time)
}

// run is a scenario in progress.
type run struct {
	t      testing.TB
	c      *cluster
	w      *workload
	mu     sync.Mutex
	faults map[string]int
	errs   []string // harness-level failures found by nemeses
}

func (r *run) fault(kind string) {
	r.mu.Lock()
	r.faults[kind]++
	r.mu.Unlock()
	r.t.Logf("%s nemesis: %s", time.Now().Format("15:04:05.000"), kind)
}

func (r *run) fail(format string, args ...any) {
	r.mu.Lock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// row is a line of the summary table.
type row struct {
	name                       string
	ops, ok, failed, unknown   int64
	faults                     int
	windows                    int
	longest, unavailable, took time.Duration
	result                     string
}

var (
	tableMu sync.Mutex
	table   []row
)

func printTable() {
	tableMu.Lock()
	defer tableMu.Unlock()
	if len(table) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-22s %8s %8s %7s %7s %6s %7s %9s %9s %7s  %s\n",
		"fault kind", "ops", "definite", "failed", "unknown", "faults", "unavail", "longest", "total", "run", "result")
	var tot row
	for _, r := range table {
		fmt.Fprintf(&b, "%-22s %8d %8d %7d %7d %6d %7d %9s %9s %7s  %s\n", r.name, r.ops, r.ok, r.failed, r.unknown,
			r.faults, r.windows, r.longest.Round(time.Millisecond), r.unavailable.Round(time.Millisecond), r.took.Round(time.Second), r.result)
		tot.ops += r.ops
		tot.ok += r.ok
		tot.failed += r.failed
		tot.unknown += r.unknown
		tot.faults += r.faults
		tot.windows += r.windows
		tot.unavailable += r.unavailable
		tot.took += r.took
		tot.longest = max(tot.longest, r.longest)
	}
	fmt.Fprintf(&b, "%-22s %8d %8d %7d %7d %6d %7d %9s %9s %7s\n", "TOTAL", tot.ops, tot.ok, tot.failed, tot.unknown,
		tot.faults, tot.windows, tot.longest.Round(time.Millisecond), tot.unavailable.Round(time.Millisecond), tot.took.Round(time.Second))
	b.WriteString("(definite: answered (applied, 412, 404, read); failed: refused or unreachable, nothing applied; unknown: outcome never learned, checked as possibly applied; unavail: gaps over 1s between successful writes)\n")
	fmt.Print(b.String())
	os.WriteFile(filepath.Join(resultsRoot, "summary.txt"), []byte(b.String()), 0o644)
}

// runScenario starts a cluster, runs the workload under the nemesis, heals,
// restarts every member at once, and checks everything.
func runScenario(t *testing.T, sc scenario) {
	began := time.Now()
	c := newCluster(t, sc.opts)
	if _, err := c.leader(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	r := &run{t: t, c: c, faults: map[string]int{}}
	r.w = c.startWorkload(sc.workload)
	time.Sleep(500 * time.Millisecond) // a little history before the faults
	sc.nemesis(r, time.Now().Add(sc.duration))
	r.healAll()
	if d, err := r.awaitWrite(recoveryMax); err != nil {
		r.fail("after healing: %v", err)
	} else {
		t.Logf("after healing, a write succeeded within %v", d.Round(time.Millisecond))
	}
	time.Sleep(time.Second) // some history on the healed cluster
	r.w.finish()
	r.checkConverged()
	r.finalRestart()
	r.finalReads()
	result := r.check()
	windows, longest, total := r.w.unavailability(time.Second)
	nfaults := 0
	for _, n := range r.faults {
		nfaults += n
	}
	tableMu.Lock()
	table = append(table, row{name: sc.name, ops: r.w.stats.ops.Load(), ok: r.w.stats.ok.Load(),
		failed: r.w.stats.failed.Load(), unknown: r.w.stats.unknown.Load(), faults: nfaults,
		windows: windows, longest: longest, unavailable: total, took: time.Since(began), result: result})
	tableMu.Unlock()
}

// healAll undoes every fault: network rules, proxies, paused and stopped
// members (restarted).
func (r *run) healAll() {
	if err := r.c.nw.heal(); err != nil {
		r.fail("heal: %v", err)
	}
	for _, m := range r.c.all() {
		m.proxy.healAll()
		m.mu.Lock()
		paused, started, removed := m.paused, m.gen > 0, m.removed
		m.mu.Unlock()
		if paused {
			m.resume()
		}
		if started && !removed && !m.running() {
			r.restart(m)
		}
	}
}

// restart starts a member that is down, from its data dir.
func (r *run) restart(m *member) {
	r.c.mon.resetCRC(m.id)
	m.start()
}

// awaitWrite retries a linearizable write until one succeeds.
func (r *run) awaitWrite(within time.Duration) (time.Duration, error) {
	start := time.Now()
	for time.Since(start) < within {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		res := send(ctx, r.w.hc, http.MethodPut, r.w.endpoint(), "probe", "", []byte("x"), nil)
		cancel()
		if res.err == nil && res.status == http.StatusOK {
			return time.Since(start), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("no write succeeded within %v", within)
}

// checkConverged waits until every running member applied the same index,
// at least the highest it ever reported, and holds the same keys.
func (r *run) checkConverged() {
	deadline := time.Now().Add(convergeMax)
	var last string
	for time.Now().Before(deadline) {
		if last = r.divergence(); last == "" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.fail("members did not converge within %v: %s", convergeMax, last)
}

// divergence describes how the running members differ, "" when they agree.
func (r *run) divergence() string {
	var applied []uint64
	var states []string
	var ids []int
	for _, m := range r.c.running() {
		if m.isRemoved() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		v, err := r.c.clusterView(ctx, m)
		if err != nil {
			cancel()
			return fmt.Sprintf("member %d: %v", m.id, err)
		}
		var list struct {
			Items []api.Item `json:"items"`
		}
		err = r.c.getJSON(ctx, "http://"+m.clientAddr()+api.PathKV+"?prefix=&limit=1000&consistency=stale", &list)
		cancel()
		if err != nil {
			return fmt.Sprintf("member %d list: %v", m.id, err)
		}
		r.c.mon.mu.Lock()
		maxSeen := r.c.mon.maxApplied[m.id]
		r.c.mon.mu.Unlock()
		if v.Self.AppliedIndex < maxSeen {
			return fmt.Sprintf("member %d applied %d, below the %d it reported before", m.id, v.Self.AppliedIndex, maxSeen)
		}
		b, _ := json.Marshal(list.Items)
		ids = append(ids, m.id)
		applied = append(applied, v.Self.AppliedIndex)
		states = append(states, string(b))
	}
	for i := 1; i < len(ids); i++ {
		if applied[i] != applied[0] || states[i] != states[0] {
			return fmt.Sprintf("member %d applied %d, member %d applied %d (states equal: %v)",
				ids[0], applied[0], ids[i], applied[i], states[i] == states[0])
		}
	}
	return ""
}

// finalRestart kills every member at once (power loss in a powerloss
// cluster) and restarts them all: every acknowledged write must survive.
func (r *run) finalRestart() {
	var wg sync.WaitGroup
	for _, m := range r.c.running() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r.c.opts.powerLoss {
				m.powerLoss()
			} else {
				m.kill()
			}
		}()
	}
	wg.Wait()
	for _, m := range r.c.all() {
		if m.started() && !m.isRemoved() {
			r.restart(m)
		}
	}
	if _, err := r.c.leader(30 * time.Second); err != nil {
		r.fail("after the final restart: %v", err)
	}
	r.checkConverged()
}

// finalReads reads every key linearizably after everything else, into the
// history: the model then demands every acknowledged write be there.
func (r *run) finalReads() {
	w := r.w
	var keys []string
	for i := 0; i < w.cfg.sharedKeys; i++ {
		keys = append(keys, fmt.Sprintf("shared/%d", i))
	}
	for _, oc := range w.own {
		keys = append(keys, oc.key)
	}
	keys = append(keys, appendAllKey)
	for _, key := range keys {
		var out kvOutput
		var call, ret int64
		ok := false
		for try := 0; try < 50 && !ok; try++ {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			call = w.now()
			res := send(ctx, w.hc, http.MethodGet, w.endpoint(), key, "consistency=linearizable", nil, nil)
			ret = w.now()
			cancel()
			if out, ok = readOutcome(res); !ok {
				time.Sleep(200 * time.Millisecond)
			}
		}
		if !ok {
			r.fail("final read of %s never succeeded", key)
			continue
		}
		switch {
		case key == appendAllKey:
			for _, bad := range w.checkAppendAll(out.Value) {
				r.fail("%s", bad)
			}
		default:
			w.record(-1, kvInput{Op: opGet, Key: key, Consistency: api.Linearizable}, out, call, ret)
		}
		for _, oc := range w.own {
			if oc.key == key && !oc.ambiguous && (out.OK != oc.exists || out.Value != oc.expected) {
				r.fail("%s after the final restart holds %q, its client expects %q", key, short(out.Value), short(oc.expected))
			}
		}
	}
}

// check runs every checker; it fails the test and saves the evidence.
func (r *run) check() string {
	t, w, c := r.t, r.w, r.c
	c.mon.stop()
	var problems []string
	problems = append(problems, r.errs...)
	problems = append(problems, c.mon.takeViolations()...)
	terms, bad := leadersFromLogs(c)
	problems = append(problems, bad...)
	problems = append(problems, w.checkStale()...)
	problems = append(problems, w.checkCoord()...)
	problems = append(problems, w.checkK8s()...)
	for _, oc := range w.own {
		problems = append(problems, oc.mismatches...)
	}
	for i := range w.ops {
		if w.ops[i].ClientId < 0 { // final reads: a client of their own
			w.ops[i].ClientId = w.cfg.sharedClients + w.cfg.ownClients
		}
	}
	if w.cfg.batchClients > 0 && w.stats.batches.Load() == 0 {
		problems = append(problems, "the batch clients sent no batch: the batch path was not exercised")
	}
	res, info := porcupine.CheckOperationsVerbose(kvModel, w.ops, linearCheckMax)
	switch res {
	case porcupine.Illegal:
		path := filepath.Join(c.dir, "linearizability.html")
		if err := porcupine.VisualizePath(kvModel, info, path); err != nil {
			t.Logf("writing the visualisation: %v", err)
		}
		problems = append(problems, "history is not linearizable; visualisation: "+path)
		problems = append(problems, diagnose(w.ops)...)
	case porcupine.Unknown:
		// An undecided check proves nothing: it fails like a violation,
		// naming the keys whose histories were too long to decide.
		problems = append(problems, undecided(w.ops)...)
	}
	t.Logf("checked: %d operations (%d stale reads apart; %d batch requests), %d terms with a leader, %d indexes compared across members, faults %v",
		len(w.ops), len(w.stale), w.stats.batches.Load(), terms, c.mon.crcChecked(), r.faults)
	if len(problems) == 0 {
		return "ok"
	}
	r.saveHistory()
	slices.Sort(problems)
	problems = slices.Compact(problems)
	for _, p := range problems {
		t.Errorf("%s", p)
	}
	return fmt.Sprintf("FAIL (%d)", len(problems))
}

func (r *run) saveHistory() {
	if b, err := json.Marshal(r.w.ops); err == nil {
		os.WriteFile(filepath.Join(r.c.dir, "history.json"), b, 0o644)
	}
	f, err := os.Create(filepath.Join(r.c.dir, "history.txt"))
	if err != nil {
		return
	}
	defer f.Close()
	ops := slices.Clone(r.w.ops)
	slices.SortFunc(ops, func(a, b porcupine.Operation) int { return int(a.Call - b.Call) })
	for _, op := range ops {
		fmt.Fprintf(f, "%12.3fms %12.3fms client %2d %s\n", float64(op.Call)/1e6, float64(op.Return)/1e6, op.ClientId,
			kvModel.DescribeOperation(op.Input, op.Output))
	}
}

// undecided explains a linearizability check that ran out of its budget:
// the history's size, and the keys whose own histories porcupine cannot
// decide within a share of it.
func undecided(ops []porcupine.Operation) []string {
	parts := kvModel.Partition(ops)
	longest := 0
	for _, part := range parts {
		longest = max(longest, len(part))
	}
	out := []string{fmt.Sprintf("linearizability not decided within %v: %d operations on %d keys, the longest key history %d; "+
		"shorten the run or spread it over more keys", linearCheckMax, len(ops), len(parts), longest)}
	for _, part := range parts {
		if res := porcupine.CheckOperationsTimeout(kvModel, part, 10*time.Second); res != porcupine.Ok {
			out = append(out, fmt.Sprintf("key %s: %d operations: %s", part[0].Input.(kvInput).Key, len(part), res))
		}
	}
	return out
}

// diagnose names the keys whose history is not linearizable, and whether
// it still is not without lease reads, or without reads at all.
func diagnose(ops []porcupine.Operation) []string {
	var out []string
	for _, part := range kvModel.Partition(ops) {
		if porcupine.CheckOperationsTimeout(kvModel, part, 30*time.Second) != porcupine.Illegal {
			continue
		}
		key := part[0].Input.(kvInput).Key
		keep := func(drop func(kvInput) bool) []porcupine.Operation {
			var kept []porcupine.Operation
			for _, op := range part {
				if !drop(op.Input.(kvInput)) {
					kept = append(kept, op)
				}
			}
			return kept
		}
		noLease := porcupine.CheckOperationsTimeout(kvModel, keep(func(in kvInput) bool { return in.Consistency == "lease" }), 30*time.Second)
		noReads := porcupine.CheckOperationsTimeout(kvModel, keep(func(in kvInput) bool { return in.Op == opGet }), 30*time.Second)
		out = append(out, fmt.Sprintf("key %s: %d operations not linearizable; without lease reads: %s; without any reads: %s",
			key, len(part), noLease, noReads))
	}
	return out
}
