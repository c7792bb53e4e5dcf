// Command pairs compares two raftkv builds on one workload in alternating
// runs, so that the machine's drift between minutes falls on both alike:
// each round starts a fresh 3-member cluster of build A, measures it,
// stops it, then does the same for build B (the order alternates from
// round to round). The load is bench/compare's independent-clients row:
// -clients connections to the leader, one plain HTTP/1.1 request per
// operation. Each run prints ops/s, p50 and p99, the members' CPU per
// operation by member (the leader marked), and each member's Raft
// messages sent and WAL fsyncs per operation. Build the two binaries
// first (go build -o /tmp/a ./cmd/raftkv on each tree), then, from the
// bench module:
//
//	cd bench && go run ./pairs -a /tmp/a -b /tmp/b -op put -clients 64 -rounds 5
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
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
	clients  int
	rounds   int
	duration time.Duration
	warmup   time.Duration
}

type result struct {
	loadgen.Result
	cpuPerOp  []time.Duration
	leader    int
	raftPerOp []cluster.RaftCounts
}

func main() {
	var o options
	flag.StringVar(&o.a, "a", "", "raftkv binary A")
	flag.StringVar(&o.b, "b", "", "raftkv binary B")
	flag.StringVar(&o.op, "op", "put", "put or get (linearizable)")
	flag.IntVar(&o.clients, "clients", 64, "independent clients, each its own connection")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds, each one run of A and one of B")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each run")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured run before each measurement")
	flag.Parse()
	if o.a == "" || o.b == "" || (o.op != "put" && o.op != "get") || o.clients < 1 || o.rounds < 1 {
		fmt.Fprintln(os.Stderr, "pairs: want -a, -b, -op put|get, -clients ≥ 1 and -rounds ≥ 1")
		os.Exit(2)
	}
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
	for _, name := range []string{"A", "B"} {
		fmt.Printf("median %s: %.0f ops/s, members' CPU %.1f µs/op, p50 %v\n", name,
			median(got[name], func(r result) float64 { return r.OpsPerSec }),
			median(got[name], func(r result) float64 { return float64(sum(r.cpuPerOp).Nanoseconds()) / 1e3 }),
			time.Duration(median(got[name], func(r result) float64 { return float64(r.P50) })).Round(time.Microsecond))
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
	s := loadgen.NewRaftkvPlain(c.ClientAddrs[li], "linearizable")
	defer s.Close()
	cfg := loadgen.Config{Op: loadgen.Op(o.op), Clients: o.clients, Duration: o.warmup}
	if cfg.Op == loadgen.OpGet {
		if err := loadgen.Fill(ctx, s, cfg); err != nil {
			return result{}, fmt.Errorf("filling: %w", err)
		}
	}
	if _, err := loadgen.Run(ctx, s, cfg); err != nil {
		return result{}, fmt.Errorf("warm-up: %w", err)
	}
	cpu0 := c.MemberCPUTimes()
	raft0, err := c.RaftCounts(ctx)
	if err != nil {
		return result{}, err
	}
	cfg.Duration = o.duration
	r, err := loadgen.Run(ctx, s, cfg)
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
	return fmt.Sprintf("%.0f ops/s  p50 %v  p99 %v  errors %d  members' CPU %.1f µs/op (%s)  Raft messages/op %s  fsyncs/op %s",
		r.OpsPerSec, r.P50, r.P99, r.Errors, float64(sum(r.cpuPerOp).Nanoseconds())/1e3,
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
