// Command pairs compares two raftkv builds on one workload in alternating
// runs, so that the machine's drift between minutes falls on both alike:
// each round starts a fresh 3-member cluster of build A, measures it,
// stops it, then does the same for build B (the order alternates from
// round to round). The load is bench/compare's independent-clients row:
// -clients connections to the leader, one plain HTTP/1.1 request per
// operation. Each run prints ops/s, p50 and p99, the members' CPU per
// operation by member (the leader marked), and each member's Raft
// messages sent and WAL fsyncs per operation. With -tool wrk or -tool
// h2load the same requests come from that load generator instead
// (-clients connections, and with h2load -streams concurrent streams on
// each); h2load reports no percentiles. Build the two binaries first (go
// build -o /tmp/a ./cmd/raftkv on each tree), then, from the bench
// module:
//
//	cd bench && go run ./pairs -a /tmp/a -b /tmp/b -op put -clients 64 -rounds 5
//	cd bench && go run ./pairs -a /tmp/a -b /tmp/b -op get -tool h2load -clients 4 -streams 16
//
// -b etcd runs etcd (the version pinned in bench/go.mod, built first)
// as build B, so that a raftkv build and etcd alternate minute by minute
// and the machine's drift falls on both stores alike, where bench/compare
// measures one store for minutes and then the other. Its clients reach
// etcd's leader as bench/compare's independent rows do: loadgen through
// etcd's Go client (gRPC), wrk through etcd's JSON gateway.
//
//	cd bench && go run ./pairs -a /tmp/a -b etcd -op put -tool wrk -clients 1 -rounds 8
//
// After the medians, each round's ratio A ÷ B (ops/s, p50 and members'
// CPU per operation), and their medians: a ratio taken within a round,
// minutes apart at most.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/bench/cluster"
	"github.com/raftkv/raftkv/bench/loadgen"
)

type options struct {
	a, b     string
	op       string
	tool     string
	clients  int
	streams  int
	rounds   int
	duration time.Duration
	warmup   time.Duration
	benchDir string
}

type result struct {
	loadgen.Result
	mean      time.Duration // h2load reports a mean, not percentiles
	cpuPerOp  []time.Duration
	leader    int
	raftPerOp []cluster.RaftCounts
}

func main() {
	var o options
	flag.StringVar(&o.a, "a", "", "raftkv binary A")
	flag.StringVar(&o.b, "b", "", "raftkv binary B")
	flag.StringVar(&o.op, "op", "put", "put or get (linearizable)")
	flag.StringVar(&o.tool, "tool", "loadgen", "load generator: loadgen (bench/loadgen), wrk or h2load")
	flag.IntVar(&o.clients, "clients", 64, "independent clients, each its own connection")
	flag.IntVar(&cluster.MemberProcs, "member-procs", 0, "GOMAXPROCS of every member of both clusters (0: Go's default, every core)")
	flag.IntVar(&o.streams, "streams", 1, "h2load: concurrent streams on each connection")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds, each one run of A and one of B")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each run")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured run before each measurement")
	flag.Parse()
	if o.a == "" || o.b == "" || (o.op != "put" && o.op != "get") || o.clients < 1 || o.rounds < 1 ||
		(o.tool != "loadgen" && o.tool != "wrk" && o.tool != "h2load") || o.streams < 1 || (o.streams > 1 && o.tool != "h2load") {
		fmt.Fprintln(os.Stderr, "pairs: want -a, -b, -op put|get, -tool loadgen|wrk|h2load, -clients ≥ 1, -streams ≥ 1 (h2load only) and -rounds ≥ 1")
		os.Exit(2)
	}
	if o.b == etcdBuild && o.tool == "h2load" {
		fmt.Fprintln(os.Stderr, "pairs: etcd serves no HTTP/2 key-value API: -b etcd takes -tool loadgen or wrk")
		os.Exit(2)
	}
	if o.tool != "loadgen" {
		if _, err := exec.LookPath(o.tool); err != nil {
			fmt.Fprintf(os.Stderr, "pairs: %s is not installed (Debian: apt-get install -y wrk nghttp2-client)\n", o.tool)
			os.Exit(2)
		}
	}
	dir, err := cluster.ModuleDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pairs:", err)
		os.Exit(1)
	}
	o.benchDir = dir
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "pairs:", err)
		os.Exit(1)
	}
}

// etcdBuild, given as -b, makes build B etcd.
const etcdBuild = "etcd"

func run(ctx context.Context, o options) error {
	bins := map[string]string{"A": o.a, "B": o.b}
	if o.b == etcdBuild {
		dir, err := os.MkdirTemp("", "raftkv-pairs-etcd-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		built, err := cluster.Build(ctx, o.benchDir, dir, "etcd")
		if err != nil {
			return err
		}
		bins["B"] = built["etcd"]
	}
	got := map[string][]result{}
	for round := range o.rounds {
		order := []string{"A", "B"}
		if round%2 == 1 {
			order = []string{"B", "A"}
		}
		for _, name := range order {
			r, err := once(ctx, bins[name], name == "B" && o.b == etcdBuild, o)
			if err != nil {
				return fmt.Errorf("round %d, build %s: %w", round+1, name, err)
			}
			got[name] = append(got[name], r)
			fmt.Printf("round %d %s: %s\n", round+1, name, r)
		}
	}
	lat, latOf := "p50", func(r result) float64 { return float64(r.P50) }
	if o.tool == "h2load" {
		lat, latOf = "mean", func(r result) float64 { return float64(r.mean) }
	}
	for _, name := range []string{"A", "B"} {
		fmt.Printf("median %s: %.0f ops/s, members' CPU %.1f µs/op, %s %v\n", name,
			median(got[name], func(r result) float64 { return r.OpsPerSec }),
			median(got[name], func(r result) float64 { return float64(sum(r.cpuPerOp).Nanoseconds()) / 1e3 }),
			lat, time.Duration(median(got[name], latOf)).Round(time.Microsecond))
	}
	printRatios(got["A"], got["B"], lat, latOf)
	return nil
}

// printRatios prints each round's A ÷ B and the median of those ratios.
func printRatios(a, b []result, lat string, latOf func(result) float64) {
	cols := []struct {
		name string
		f    func(result) float64
	}{
		{"ops/s", func(r result) float64 { return r.OpsPerSec }},
		{lat, latOf},
		{"members' CPU/op", func(r result) float64 { return float64(sum(r.cpuPerOp)) }},
	}
	for _, c := range cols {
		var rs []float64
		var shown []string
		for i := range a {
			if c.f(b[i]) == 0 {
				continue
			}
			r := c.f(a[i]) / c.f(b[i])
			rs = append(rs, r)
			shown = append(shown, fmt.Sprintf("%.2f", r))
		}
		if len(rs) == 0 {
			continue
		}
		fmt.Printf("A ÷ B, %s, by round: %s; median %.2f\n", c.name, strings.Join(shown, ", "), medianOf(rs))
	}
}

// once starts a fresh cluster of bin (an etcd binary if etcd), measures
// o's workload on it and stops it.
func once(ctx context.Context, bin string, etcd bool, o options) (_ result, err error) {
	dir, err := os.MkdirTemp("", "raftkv-pairs-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	start := func() (*cluster.Cluster, error) {
		return cluster.StartRaftkv(ctx, bin, dir, cluster.Members, cluster.RaftkvOptions{})
	}
	if etcd {
		start = func() (*cluster.Cluster, error) { return cluster.StartEtcd(ctx, bin, dir) }
	}
	c, err := start()
	defer cluster.StopAfter(c, &err)
	if err != nil {
		return result{}, err
	}
	li, err := c.Leader(ctx)
	if err != nil {
		return result{}, err
	}
	addr := c.ClientAddrs[li]
	var s loadgen.Store = loadgen.NewRaftkvPlain(addr, "linearizable")
	if etcd {
		s = loadgen.NewEtcdPlain(addr, false)
	}
	defer s.Close()
	cfg := loadgen.Config{Op: loadgen.Op(o.op), Clients: o.clients, Duration: o.warmup}
	if cfg.Op == loadgen.OpGet {
		if err := loadgen.Fill(ctx, s, cfg); err != nil {
			return result{}, fmt.Errorf("filling: %w", err)
		}
	}
	load := func(d time.Duration) (loadgen.Result, error) {
		cfg.Duration = d
		return loadgen.Run(ctx, s, cfg)
	}
	var tl *toolLoad
	if o.tool != "loadgen" {
		if tl, err = newToolLoad(dir, c.Name, addr, o); err != nil {
			return result{}, err
		}
		load = func(d time.Duration) (loadgen.Result, error) { return tl.run(ctx, d) }
	}
	if _, err := load(o.warmup); err != nil {
		return result{}, fmt.Errorf("warm-up: %w", err)
	}
	// etcd publishes no such counters: its rows go without them.
	counts := c.RaftCounts
	if etcd {
		counts = func(context.Context) ([]cluster.RaftCounts, error) { return nil, nil }
	}
	cpu0 := c.MemberCPUTimes()
	raft0, err := counts(ctx)
	if err != nil {
		return result{}, err
	}
	r, err := load(o.duration)
	if err != nil {
		return result{}, err
	}
	if r.Ops == 0 {
		return result{}, errors.New("no operation succeeded")
	}
	cpu1 := c.MemberCPUTimes()
	raft1, err := counts(ctx)
	if err != nil {
		return result{}, err
	}
	out := result{Result: r, leader: li, raftPerOp: cluster.PerOp(raft0, raft1, r.Ops)}
	if tl != nil {
		out.mean = tl.mean
	}
	if !etcd && len(out.raftPerOp) != len(cpu1) {
		return result{}, fmt.Errorf("metrics of %d members, CPU of %d", len(out.raftPerOp), len(cpu1))
	}
	for i := range cpu1 {
		out.cpuPerOp = append(out.cpuPerOp, (cpu1[i]-cpu0[i])/time.Duration(r.Ops))
	}
	return out, nil
}

func (r result) String() string {
	var cpu, msgs, fsyncs []string
	for i := range r.cpuPerOp {
		c := fmt.Sprintf("%.1f", float64(r.cpuPerOp[i].Nanoseconds())/1e3)
		if i == r.leader {
			c += " leader"
		}
		cpu = append(cpu, c)
		if i < len(r.raftPerOp) {
			msgs = append(msgs, fmt.Sprintf("%.3f", r.raftPerOp[i].MessagesSent))
			fsyncs = append(fsyncs, fmt.Sprintf("%.3f", r.raftPerOp[i].Fsyncs))
		}
	}
	lat := fmt.Sprintf("p50 %v  p99 %v", r.P50, r.P99)
	if r.mean > 0 {
		lat = fmt.Sprintf("mean %v", r.mean)
	}
	s := fmt.Sprintf("%.0f ops/s  %s  errors %d  members' CPU %.1f µs/op (%s)",
		r.OpsPerSec, lat, r.Errors, float64(sum(r.cpuPerOp).Nanoseconds())/1e3, strings.Join(cpu, ", "))
	if len(msgs) > 0 {
		s += fmt.Sprintf("  Raft messages/op %s  fsyncs/op %s", strings.Join(msgs, ", "), strings.Join(fsyncs, ", "))
	}
	return s
}

func sum(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return medianOf(v)
}

// medianOf sorts v and returns its median.
func medianOf(v []float64) float64 {
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
