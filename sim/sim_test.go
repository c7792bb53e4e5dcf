package sim

import (
	"flag"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

var (
	flagSeed      = flag.Uint64("seed", 0, "run only this seed (and print its trace with -v)")
	flagSeeds     = flag.Int("seeds", 1000, "number of seeds to run, starting at -seedstart")
	flagSeedStart = flag.Uint64("seedstart", 1, "first seed of a -seeds run")
	flagSteps     = flag.Int("steps", DefaultSteps, "ticks of the safety phase")
	flagTraceLen  = flag.Int("tracelen", TraceLen, "events shown when a -seed run fails")
	flagStore     = flag.String("store", "auto", "replica store: wal (storage.Log and snapshot files on a faulty vfs), mem, "+
		"or auto (wal on every seed; under the race detector wal on odd seeds and mem on even ones)")
	flagFSM = flag.String("fsm", "auto", "state machine: kv, hash, or auto (kv on half the seeds)")
)

// storeOf names the store seed runs on under the -store flag.
func storeOf(seed uint64) string {
	if *flagStore != "auto" {
		return *flagStore
	}
	// The WAL store costs about three times the memory store; under the
	// race detector it runs on every other seed so that the default
	// go test -race ./sim stays well under two minutes on two cores.
	if raceEnabled && seed%2 == 0 {
		return "mem"
	}
	return "wal"
}

// options builds the Options of seed from the flags, which checkFlags has
// checked.
func options(seed uint64) Options {
	opt := Options{Seed: seed, Steps: *flagSteps, Store: NewWALStore}
	if storeOf(seed) == "mem" {
		opt.Store = NewMemStore
	}
	opt.FSM, _ = ParseFSM(*flagFSM)
	return opt
}

func checkFlags(t *testing.T) {
	t.Helper()
	switch *flagStore {
	case "wal", "mem", "auto":
	default:
		t.Fatalf("-store=%s: want wal, mem or auto", *flagStore)
	}
	if _, ok := ParseFSM(*flagFSM); !ok {
		t.Fatalf("-fsm=%s: want kv, hash or auto", *flagFSM)
	}
}

func report(t *testing.T, res Result) {
	t.Helper()
	t.Errorf("seed %d failed: %v\n--- last events ---\n%s--- replay: go test ./sim -run TestSimulation -seed=%d -steps=%d -store=%s -fsm=%s -v",
		res.Seed, res.Err, res.Trace, res.Seed, *flagSteps, storeOf(res.Seed), *flagFSM)
}

// TestSimulation shows that random faults never break a safety property
// and that a healed cluster always commits again, for many seeds; one seed
// with -seed replays a run exactly.
func TestSimulation(t *testing.T) {
	if *flagSeed != 0 {
		checkFlags(t)
		opt := options(*flagSeed)
		opt.TraceLen = *flagTraceLen
		res := New(opt).Run()
		t.Logf("seed %d: digest %016x stats %+v", res.Seed, res.Digest, res.Stats)
		if res.Err != nil {
			report(t, res)
		}
		return
	}
	checkFlags(t)
	seeds := *flagSeeds
	if testing.Short() {
		seeds = min(seeds, 50)
	}
	var (
		next     atomic.Int64
		mu       sync.Mutex
		failures []Result
		total    Stats
		wg       sync.WaitGroup
	)
	workers := runtime.GOMAXPROCS(0)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(seeds) {
					return
				}
				mu.Lock()
				stop := len(failures) >= 3
				mu.Unlock()
				if stop {
					return
				}
				res := New(options(*flagSeedStart + uint64(i))).Run()
				mu.Lock()
				total.add(res.Stats)
				if res.Err != nil {
					failures = append(failures, res)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d seeds from %d, store %s, fsm %s: %s", seeds, *flagSeedStart, *flagStore, *flagFSM, total)
	if len(failures) == 0 && seeds >= coverageSeeds {
		checkCoverage(t, total)
	}
	// Report the smallest failing seeds, so that reports do not depend on
	// goroutine scheduling more than they must.
	for len(failures) > 0 {
		k := 0
		for i := range failures {
			if failures[i].Seed < failures[k].Seed {
				k = i
			}
		}
		report(t, failures[k])
		failures = append(failures[:k], failures[k+1:]...)
	}
}

// coverageSeeds is the fewest seeds a run must have for checkCoverage: every
// window of that many seeds has shown every kind of event.
const coverageSeeds = 50

// checkCoverage fails a run of many seeds in which some fault or operation
// the safety argument relies on never happened: passing checkers prove
// nothing about what was not exercised.
func checkCoverage(t *testing.T, s Stats) {
	t.Helper()
	for _, what := range missingCoverage(s, *flagStore != "mem") {
		t.Errorf("coverage: no %s in the whole run", what)
	}
}

// missingCoverage names what a run's stats show never happened. Only the
// WAL store tears writes, so torn says whether some seed ran on it.
func missingCoverage(s Stats, torn bool) []string {
	var missing []string
	for _, c := range []struct {
		what string
		n    uint64
	}{
		{"ReadIndex reads asked at the leader", s.Reads - s.LeaseReads - s.ForwardedReads},
		{"ReadIndex reads asked at a follower", s.ForwardedReads},
		{"lease reads", s.LeaseReads},
		{"snapshots taken", s.Snapshots},
		{"snapshots installed from a leader", s.Installs},
		{"membership changes", s.ConfChanges},
		{"crashes", s.Crashes},
		{"leadership transfers (TimeoutNow sent)", s.Transfers},
		{"leader changes", s.Leaders},
		{"closed connections to a followed leader reported", s.ClosedLeader},
		{"commit indexes sent by the commit-notice timer", s.CommitNotices},
	} {
		if c.n == 0 {
			missing = append(missing, c.what)
		}
	}
	if torn && s.TornCrashes == 0 {
		missing = append(missing, "crashes that tore a write")
	}
	return missing
}

// TestCoverageCheck shows the coverage check fails a run that did nothing
// of a kind, and passes one that did a little of everything.
func TestCoverageCheck(t *testing.T) {
	if got := missingCoverage(Stats{}, true); len(got) != 12 {
		t.Fatalf("an idle run misses %d kinds (%q), want all 12", len(got), got)
	}
	all := Stats{Reads: 3, LeaseReads: 1, ForwardedReads: 1, Snapshots: 1, Installs: 1, ConfChanges: 1,
		Crashes: 1, TornCrashes: 1, Transfers: 1, Leaders: 1, ClosedLeader: 1, CommitNotices: 1}
	if got := missingCoverage(all, true); len(got) != 0 {
		t.Fatalf("a full run misses %q", got)
	}
	all.LeaseReads, all.Reads = 0, 2
	if got := missingCoverage(all, true); len(got) != 1 || got[0] != "lease reads" {
		t.Fatalf("a run without lease reads misses %q", got)
	}
}

func (s *Stats) add(o Stats) {
	s.Ticks += o.Ticks
	s.Messages += o.Messages
	s.Crashes += o.Crashes
	s.Snapshots += o.Snapshots
	s.Installs += o.Installs
	s.Leaders += o.Leaders
	s.ConfChanges += o.ConfChanges
	s.Acked += o.Acked
	s.Reads += o.Reads
	s.LeaseReads += o.LeaseReads
	s.ForwardedReads += o.ForwardedReads
	s.TornCrashes += o.TornCrashes
	s.Transfers += o.Transfers
	s.LivenessTicks = max(s.LivenessTicks, o.LivenessTicks)
	s.GroupCommits += o.GroupCommits
	s.PipelineFull += o.PipelineFull
	s.StallHandOvers += o.StallHandOvers
	s.LeaseGaps += o.LeaseGaps
	s.ClosedReports += o.ClosedReports
	s.ClosedLeader += o.ClosedLeader
	s.DoubleTicks += o.DoubleTicks
	s.CommitNotices += o.CommitNotices
}

func (s Stats) String() string {
	return fmt.Sprintf("ticks=%d msgs=%d crashes=%d torn-crashes=%d snapshots=%d installs=%d leaders=%d transfers=%d confchanges=%d acked=%d reads=%d lease-reads=%d forwarded-reads=%d max-liveness-ticks=%d group-commits=%d pipeline-full=%d stall-handovers=%d lease-gaps=%d closed-reports=%d closed-leader=%d double-ticks=%d commit-notices=%d",
		s.Ticks, s.Messages, s.Crashes, s.TornCrashes, s.Snapshots, s.Installs, s.Leaders, s.Transfers, s.ConfChanges, s.Acked,
		s.Reads, s.LeaseReads, s.ForwardedReads, s.LivenessTicks,
		s.GroupCommits, s.PipelineFull, s.StallHandOvers, s.LeaseGaps, s.ClosedReports, s.ClosedLeader, s.DoubleTicks, s.CommitNotices)
}

// TestDeterminism shows that a seed replays exactly, with either store and
// either state machine: two runs of the same seed produce the same trace
// digest and the same counts, and a different seed a different digest.
func TestDeterminism(t *testing.T) {
	stores := []struct {
		name    string
		factory StoreFactory
	}{{"wal", NewWALStore}, {"mem", NewMemStore}}
	for _, st := range stores {
		for _, fsm := range []FSM{FSMHash, FSMKV} {
			for _, seed := range []uint64{1, 7, 12345} {
				opt := Options{Seed: seed, Store: st.factory, FSM: fsm}
				a, b := New(opt).Run(), New(opt).Run()
				if a.Digest != b.Digest || a.Stats != b.Stats {
					t.Fatalf("%s/%s: seed %d ran twice differently: digest %016x vs %016x, stats %+v vs %+v",
						st.name, fsm, seed, a.Digest, b.Digest, a.Stats, b.Stats)
				}
				if a.Err != nil {
					t.Fatalf("%s/%s: seed %d: %v", st.name, fsm, seed, a.Err)
				}
				opt.Seed++
				if c := New(opt).Run(); c.Digest == a.Digest {
					t.Fatalf("%s/%s: seeds %d and %d have the same digest %016x", st.name, fsm, seed, seed+1, a.Digest)
				}
			}
		}
	}
}

// TestSeedsThatFoundBugs replays the seeds that found bugs, with the store
// and state machine they found them on, so that each stays fixed even if
// the default seed range moves on. The bug each found has its own
// regression test where it was fixed.
func TestSeedsThatFoundBugs(t *testing.T) {
	for _, c := range []struct {
		seed  uint64
		store StoreFactory
		fsm   FSM
		bug   string
	}{
		{87, NewWALStore, FSMAuto, "raft.TestNewWithCommitBehindApplicationSnapshot"},
		{60, NewWALStore, FSMAuto, "raft.TestRegressionLeaseReadAfterVoterRestart"},
		{100, NewWALStore, FSMAuto, "raft.TestRegressionLeaseReadAfterVoterRestart"},
		{252, NewWALStore, FSMAuto, "raft.TestRegressionLeaseReadAfterVoterRestart"},
		{150, NewWALStore, FSMAuto, "raft.TestRegressionLeaseTimedFromLateAnswer"},
		{205, NewWALStore, FSMAuto, "raft.TestRegressionLeaseTimedFromLateAnswer"},
		{209, NewWALStore, FSMAuto, "raft.TestRegressionLeaseTimedFromLateAnswer"},
		{140700, NewWALStore, FSMAuto, "sim.TestForgetUndurableElection (a false alarm of the lease check)"},
	} {
		if res := New(Options{Seed: c.seed, Store: c.store, FSM: c.fsm}).Run(); res.Err != nil {
			t.Errorf("seed %d (%s) fails again: %v\n%s", c.seed, c.bug, res.Err, res.Trace)
		}
	}
}
