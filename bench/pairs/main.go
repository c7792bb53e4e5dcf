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

func run(ctx context.Context, o options) error {
	bins := map[string]string{"A": o.a, "B": o.b}
	got := map[string][]result{}
	for round := range o.rounds {
		order := []string{"A", "B"}
		if round%2 == 1 {
			order = []string{"B", "A"}
		}
		for _, name := range order {
			r, err := once(ctx, bins[name], o)
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
	return nil
}

// once starts a fresh cluster of bin, measures o's workload on it and
// stops it.
func once(ctx context.Context, bin string, o options) (_ result, err error) {
	dir, err := os.MkdirTemp("", "raftkv-pairs-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	c, err := cluster.StartRaftkv(ctx, bin, dir, cluster.Members, cluster.RaftkvOptions{})
	defer cluster.StopAfter(c, &err)
	if err != nil {
		return result{}, err
	}
	li, err := c.Leader(ctx)
	if err != nil {
		return result{}, err
	}
	addr := c.ClientAddrs[li]
	s := loadgen.NewRaftkvPlain(addr, "linearizable")
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
		if tl, err = newToolLoad(dir, addr, o); err != nil {
			return result{}, err
		}
		load = func(d time.Duration) (loadgen.Result, error) { return tl.run(ctx, d) }
	}
	if _, err := load(o.warmup); err != nil {
		return result{}, fmt.Errorf("warm-up: %w", err)
	}
	cpu0 := c.MemberCPUTimes()
	raft0, err := c.RaftCounts(ctx)
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
	raft1, err := c.RaftCounts(ctx)
	if err != nil {
		return result{}, err
	}
	out := result{Result: r, leader: li, raftPerOp: cluster.PerOp(raft0, raft1, r.Ops)}
	if tl != nil {
		out.mean = tl.mean
	}
	if len(out.raftPerOp) != len(cpu1) {
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
		msgs = append(msgs, fmt.Sprintf("%.3f", r.raftPerOp[i].MessagesSent))
		fsyncs = append(fsyncs, fmt.Sprintf("%.3f", r.raftPerOp[i].Fsyncs))
	}
	lat := fmt.Sprintf("p50 %v  p99 %v", r.P50, r.P99)
	if r.mean > 0 {
		lat = fmt.Sprintf("mean %v", r.mean)
	}
	return fmt.Sprintf("%.0f ops/s  %s  errors %d  members' CPU %.1f µs/op (%s)  Raft messages/op %s  fsyncs/op %s",
		r.OpsPerSec, lat, r.Errors, float64(sum(r.cpuPerOp).Nanoseconds())/1e3,
		strings.Join(cpu, ", "), strings.Join(msgs, ", "), strings.Join(fsyncs, ", "))
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
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
