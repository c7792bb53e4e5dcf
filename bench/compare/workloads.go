package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/bench/cluster"
	"github.com/raftkv/raftkv/bench/loadgen"
	"github.com/raftkv/raftkv/client"
)

// workload is one row of the table, run against both stores.
type workload struct {
	name    string // row label
	slug    string // profile file name
	op      loadgen.Op
	clients int
	// raftkvRead and etcdSerializable are the read levels of a get.
	raftkvRead       string
	etcdSerializable bool
	// independent: every load client has its own connection and sends one
	// plain request per operation (loadgen.RaftkvPlain, loadgen.EtcdPlain);
	// otherwise the load clients share one Go client, which for raftkv
	// coalesces concurrent calls into POST /v1/batch.
	independent bool
	// single runs on a 1-member raftkv cluster (raftkv only): the floor
	// of HTTP plus fsync without replication, beside the 3-member figure.
	single bool
}

// Modes of -modes.
const (
	modeBatched     = "batched"
	modeIndependent = "independent"
)

// allWorkloads are the rows: the comparison through the shared
// (batching) Go client, then independent clients. etcd has no lease
// read; its serializable read (a member's local state, no leader
// contact) is shown beside raftkv's lease read for context only.
var allWorkloads = []workload{
	{name: "put", slug: "put", op: loadgen.OpPut, clients: 1},
	{name: "put", slug: "put", op: loadgen.OpPut, clients: 16},
	{name: "put", slug: "put", op: loadgen.OpPut, clients: 64},
	{name: "put", slug: "put", op: loadgen.OpPut, clients: 256},
	{name: "get linearizable", slug: "get-linearizable", op: loadgen.OpGet, clients: 64, raftkvRead: "linearizable"},
	{name: "get lease (raftkv) / serializable (etcd)", slug: "get-lease", op: loadgen.OpGet, clients: 64, raftkvRead: "lease", etcdSerializable: true},
	{name: "txn (3 compares + 3 puts)", slug: "txn", op: loadgen.OpTxn3, clients: 64},
	{name: "put, independent", slug: "ind-put", op: loadgen.OpPut, clients: 1, independent: true},
	{name: "put, independent", slug: "ind-put", op: loadgen.OpPut, clients: 64, independent: true},
	{name: "put, independent", slug: "ind-put", op: loadgen.OpPut, clients: 256, independent: true},
	{name: "get linearizable, independent", slug: "ind-get-linearizable", op: loadgen.OpGet, clients: 64, raftkvRead: "linearizable", independent: true},
	{name: "get lease / serializable, independent", slug: "ind-get-lease", op: loadgen.OpGet, clients: 64, raftkvRead: "lease", etcdSerializable: true, independent: true},
	{name: "put, independent, 1-member raftkv", slug: "single-put", op: loadgen.OpPut, clients: 1, independent: true, single: true},
	// The 1-member rows at 64 clients bound what any 3-member cluster of
	// this build can reach here: it serves the same requests on the same
	// cores, and adds replication.
	{name: "put, independent, 1-member raftkv", slug: "single-put", op: loadgen.OpPut, clients: 64, independent: true, single: true},
	{name: "get linearizable, independent, 1-member raftkv", slug: "single-get-linearizable", op: loadgen.OpGet, clients: 64, raftkvRead: "linearizable", independent: true, single: true},
}

// id names a row for -rows, as its profile file does: slug-clients.
func (w workload) id() string { return fmt.Sprintf("%s-%d", w.slug, w.clients) }

// selectWorkloads returns the rows of the modes named (comma-separated),
// and of those only the rows whose ids ids names, unless it is empty.
func selectWorkloads(modes, ids string) ([]workload, error) {
	want := map[string]bool{}
	for _, m := range strings.Split(modes, ",") {
		m = strings.TrimSpace(m)
		if m != modeBatched && m != modeIndependent {
			return nil, fmt.Errorf("-modes: %q: want %s and/or %s", m, modeBatched, modeIndependent)
		}
		want[m] = true
	}
	pick := map[string]bool{}
	for _, id := range strings.Split(ids, ",") {
		if id = strings.TrimSpace(id); id != "" {
			pick[id] = false
		}
	}
	var out []workload
	for _, w := range allWorkloads {
		if (w.independent && want[modeIndependent]) || (!w.independent && want[modeBatched]) {
			if _, ok := pick[w.id()]; ok || len(pick) == 0 {
				pick[w.id()] = true
				out = append(out, w)
			}
		}
	}
	for id, found := range pick {
		if !found {
			return nil, fmt.Errorf("-rows: no row %q in modes %s", id, modes)
		}
	}
	return out, nil
}

// measurement is one workload's result on one store, with the CPU time
// per operation the members and the load generator spent in the
// measured window: on 2 shared cores, the cost that bounds throughput.
type measurement struct {
	loadgen.Result
	serverCPUPerOp, clientCPUPerOp time.Duration
	// memberCPUPerOp splits serverCPUPerOp by member (member i+1's at
	// index i): a raftkv leader's share against its followers'.
	memberCPUPerOp []time.Duration
	// raftPerOp is each raftkv member's Raft messages sent and WAL fsyncs
	// per operation (nil for etcd): how well replication batches.
	raftPerOp []cluster.RaftCounts
	// serverReadsPerOp and serverWritesPerOp are the members' read and
	// write system calls per operation (sockets and files; fsyncs are not
	// counted): a cost the machine's other load does not move.
	serverReadsPerOp, serverWritesPerOp float64
	// otherCores is the CPU the rest of the machine used meanwhile, in
	// cores: above about 0.1, another job was competing.
	otherCores float64
}

// results holds each store's measurements in the order of the selected
// workloads; nil where a row was not run on that store.
type results map[string][]*measurement

func runRaftkv(ctx context.Context, bin, dir string, o options) (_ []*measurement, err error) {
	out := make([]*measurement, len(o.rows))
	var multi, single []int
	for i, w := range o.rows {
		if w.single {
			single = append(single, i)
		} else {
			multi = append(multi, i)
		}
	}
	for _, part := range []struct {
		members int
		rows    []int
	}{{cluster.Members, multi}, {1, single}} {
		if len(part.rows) == 0 {
			continue
		}
		if err := runRaftkvCluster(ctx, bin, filepath.Join(dir, fmt.Sprint(part.members)), part.members, part.rows, out, o); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func runRaftkvCluster(ctx context.Context, bin, dir string, n int, rows []int, out []*measurement, o options) (err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "starting %d raftkv members\n", n)
	c, err := cluster.StartRaftkv(ctx, bin, dir, n, cluster.RaftkvOptions{Pprof: o.profileDir != ""})
	defer cluster.StopAfter(c, &err)
	if err != nil {
		return err
	}
	li, err := c.Leader(ctx)
	if err != nil {
		return err
	}
	leader := c.ClientAddrs[li]
	ms, err := runAll(ctx, c, o, rows, func(w workload) (loadgen.Store, error) {
		if w.independent {
			return loadgen.NewRaftkvPlain(leader, w.raftkvRead), nil
		}
		return loadgen.NewRaftkv(c.ClientAddrs, w.clients, w.raftkvRead, o.raftkvBatchOps)
	})
	if err != nil {
		return err
	}
	for k, i := range rows {
		out[i] = ms[k]
	}
	if o.tools && n == cluster.Members {
		runTools(ctx, c, leader, o)
	}
	return nil
}

func runEtcd(ctx context.Context, bin, dir string, o options) (_ []*measurement, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var rows []int
	for i, w := range o.rows {
		if !w.single {
			rows = append(rows, i)
		}
	}
	fmt.Fprintln(os.Stderr, "starting 3 etcd members")
	c, err := cluster.StartEtcd(ctx, bin, dir)
	defer cluster.StopAfter(c, &err)
	if err != nil {
		return nil, err
	}
	li, err := c.Leader(ctx)
	if err != nil {
		return nil, err
	}
	leader := c.ClientAddrs[li]
	ms, err := runAll(ctx, c, o, rows, func(w workload) (loadgen.Store, error) {
		if w.independent {
			return loadgen.NewEtcdPlain(leader, w.etcdSerializable), nil
		}
		return loadgen.NewEtcd(c.ClientAddrs, w.clients, w.etcdSerializable)
	})
	if err != nil {
		return nil, err
	}
	out := make([]*measurement, len(o.rows))
	for k, i := range rows {
		out[i] = ms[k]
	}
	if o.tools {
		runTools(ctx, c, leader, o)
	}
	return out, nil
}

// runAll runs every workload on cluster c, filling the key space before
// the first get.
func runAll(ctx context.Context, c *cluster.Cluster, o options, rows []int, open func(workload) (loadgen.Store, error)) ([]*measurement, error) {
	var out []*measurement
	filled := false
	for _, i := range rows {
		w := o.rows[i]
		s, err := open(w)
		if err != nil {
			return nil, err
		}
		cfg := config(o, w)
		if w.op == loadgen.OpGet && !filled {
			fmt.Fprintf(os.Stderr, "%s: writing %d keys for the gets\n", c.Name, cfg.Keys)
			if err := loadgen.Fill(ctx, s, cfg); err != nil {
				s.Close()
				return nil, fmt.Errorf("%s: filling: %w", c.Name, err)
			}
			filled = true
		}
		m, err := measureQuiet(ctx, c, s, w, o)
		s.Close()
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", c.Name, w.name, err)
		}
		fmt.Fprintf(os.Stderr, "%-6s %-42s %3d clients  %8.0f ops/s  p50 %-8v p99 %-8v errors %d  CPU/op members %v (%s) loadgen %v  syscalls/op members %.2f read %.2f write  other load %.2f cores\n",
			c.Name, w.name, w.clients, m.OpsPerSec, m.P50, m.P99, m.Errors, m.serverCPUPerOp, byMember(m.memberCPUPerOp, leaderOf(ctx, c)), m.clientCPUPerOp, m.serverReadsPerOp, m.serverWritesPerOp, m.otherCores)
		if len(m.raftPerOp) > 0 {
			fmt.Fprintf(os.Stderr, "       per op, by member: Raft messages sent %s; WAL fsyncs %s\n",
				raftColumn(m.raftPerOp, func(rc cluster.RaftCounts) float64 { return rc.MessagesSent }),
				raftColumn(m.raftPerOp, func(rc cluster.RaftCounts) float64 { return rc.Fsyncs }))
		}
		if m.FirstErr != nil {
			fmt.Fprintf(os.Stderr, "       first error: %v\n", m.FirstErr)
		}
		out = append(out, &m)
	}
	return out, nil
}

// measureQuiet waits until other processes leave the CPU alone (at most
// o.quietWait), measures w, and measures again up to o.retries times while
// other processes competed for the CPU; it keeps the quietest run.
func measureQuiet(ctx context.Context, c *cluster.Cluster, s loadgen.Store, w workload, o options) (measurement, error) {
	var best measurement
	for attempt := 0; ; attempt++ {
		if err := waitQuiet(ctx, c, o.quietWait); err != nil {
			return measurement{}, err
		}
		m, err := measure(ctx, c, s, w, o)
		if err != nil {
			return measurement{}, err
		}
		if attempt == 0 || m.otherCores < best.otherCores {
			best = m
		}
		if best.otherCores <= otherCoresQuiet || attempt >= o.retries {
			return best, nil
		}
		fmt.Fprintf(os.Stderr, "%s %s %d clients: other processes used %.2f cores; measuring again\n",
			c.Name, w.name, w.clients, m.otherCores)
	}
}

// quietWindow is how long waitQuiet watches the machine at a time.
const quietWindow = 3 * time.Second

// waitQuiet returns once other processes used at most otherCoresQuiet over
// a quietWindow, or after limit.
func waitQuiet(ctx context.Context, c *cluster.Cluster, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for said := false; ; said = true {
		ours, sys := c.CPUTime()+cluster.SelfCPU(), cluster.SystemBusy()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(quietWindow):
		}
		other := (cluster.SystemBusy() - sys - (c.CPUTime() + cluster.SelfCPU() - ours)).Seconds() / quietWindow.Seconds()
		if other <= otherCoresQuiet {
			return nil
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "other processes still use %.2f cores after %v; measuring anyway\n", other, limit)
			return nil
		}
		if !said {
			fmt.Fprintf(os.Stderr, "other processes use %.2f cores; waiting up to %v for them\n", other, limit)
		}
	}
}

// measure runs one workload, sampling CPU times when the warm-up ends and
// when the run does, and profiling the raftkv leader if asked.
func measure(ctx context.Context, c *cluster.Cluster, s loadgen.Store, w workload, o options) (measurement, error) {
	type sample struct {
		server, client, system time.Duration
		members                []time.Duration
		io                     cluster.IOCounts
		raft                   []cluster.RaftCounts
	}
	raftCounts := func() []cluster.RaftCounts {
		if c.Name != "raftkv" {
			return nil
		}
		rc, err := c.RaftCounts(ctx)
		if err != nil {
			return nil
		}
		return rc
	}
	started := make(chan sample, 1)
	go func() {
		select {
		case <-ctx.Done():
		case <-time.After(o.warmup):
		}
		started <- sample{c.CPUTime(), cluster.SelfCPU(), cluster.SystemBusy(), c.MemberCPUTimes(), c.IOCounts(), raftCounts()}
	}()
	wait := func() {}
	if c.Name == "raftkv" {
		wait = profileLeader(ctx, c.ClientAddrs, w, o)
	}
	r, err := loadgen.Run(ctx, s, config(o, w))
	end := sample{c.CPUTime(), cluster.SelfCPU(), cluster.SystemBusy(), c.MemberCPUTimes(), c.IOCounts(), raftCounts()}
	wait()
	begin := <-started
	if err != nil {
		return measurement{}, err
	}
	m := measurement{Result: r}
	ours := end.server - begin.server + end.client - begin.client
	m.otherCores = max(0, (end.system-begin.system-ours).Seconds()) / o.duration.Seconds()
	if r.Ops > 0 {
		m.serverCPUPerOp = (end.server - begin.server) / time.Duration(r.Ops)
		m.clientCPUPerOp = (end.client - begin.client) / time.Duration(r.Ops)
		for i := range end.members {
			m.memberCPUPerOp = append(m.memberCPUPerOp, (end.members[i]-begin.members[i])/time.Duration(r.Ops))
		}
		m.raftPerOp = cluster.PerOp(begin.raft, end.raft, r.Ops)
		m.serverReadsPerOp = float64(end.io.Reads-begin.io.Reads) / float64(r.Ops)
		m.serverWritesPerOp = float64(end.io.Writes-begin.io.Writes) / float64(r.Ops)
	}
	return m, nil
}

// profileLeader, when -profile is set, fetches a CPU profile of the
// raftkv members over the measured part of w into the profile directory.
func profileLeader(ctx context.Context, endpoints []string, w workload, o options) func() {
	if o.profileDir == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fetchProfile(ctx, endpoints, w, o); err != nil {
			fmt.Fprintf(os.Stderr, "warning: profile of %s: %v\n", w.name, err)
		}
	}()
	return func() { <-done }
}

func fetchProfile(ctx context.Context, endpoints []string, w workload, o options) error {
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		return err
	}
	defer c.Close()
	cl, err := c.Cluster(ctx)
	if err != nil {
		return err
	}
	// Member i+1 listens on endpoints[i] (startRaftkv); a fresh member
	// may not have published its client address yet.
	if cl.Leader < 1 || cl.Leader > uint64(len(endpoints)) {
		return fmt.Errorf("no leader known (leader %d)", cl.Leader)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.warmup):
	}
	// Every member at once: the leader's file is raftkv-<row>.pprof, a
	// follower's raftkv-<row>-follower<id>.pprof.
	var wg sync.WaitGroup
	errs := make([]error, len(endpoints))
	for i, addr := range endpoints {
		name := fmt.Sprintf("raftkv-%s-%d.pprof", w.slug, w.clients)
		if uint64(i+1) != cl.Leader {
			name = fmt.Sprintf("raftkv-%s-%d-follower%d.pprof", w.slug, w.clients, i+1)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = cluster.FetchProfile(ctx, addr, filepath.Join(o.profileDir, name), o.duration)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// leaderOf is the index of c's leader now, or -1 if it cannot be told.
func leaderOf(ctx context.Context, c *cluster.Cluster) int {
	li, err := c.Leader(ctx)
	if err != nil {
		return -1
	}
	return li
}

// byMember formats each member's CPU per operation, the leader's marked.
func byMember(perOp []time.Duration, leader int) string {
	parts := make([]string, len(perOp))
	for i, d := range perOp {
		parts[i] = fmt.Sprintf("%.0fµs", float64(d.Nanoseconds())/1e3)
		if i == leader {
			parts[i] += " leader"
		}
	}
	return strings.Join(parts, ", ")
}

func raftColumn(rcs []cluster.RaftCounts, f func(cluster.RaftCounts) float64) string {
	parts := make([]string, len(rcs))
	for i, rc := range rcs {
		parts[i] = fmt.Sprintf("%.3f", f(rc))
	}
	return strings.Join(parts, ", ")
}
