// Command raftlibs runs one workload on three Raft implementations in one
// process each time — raftkv's node, hashicorp/raft and etcd-io/raft — and
// prints each one's throughput and latency and raftkv's ratio against it.
//
//	cd bench && go run ./raftlibs [-proposals 5000] [-proposers 1,16,64,256]
//
// The workload is the one of node's BenchmarkPropose: a 3-member cluster in
// this process, members talking over loopback TCP, each with its own log
// on disk made durable with fdatasync before it acknowledges, 256-byte
// commands, a state machine that does nothing, and P goroutines that each
// propose on the leader and wait until their command is applied there.
// A fresh cluster serves each (implementation, P) pair.
//
// What each implementation brings: raftkv's node is used as it ships
// (its WAL, its transport). hashicorp/raft uses its own TCP transport and
// raft-boltdb (bbolt, which fdatasyncs every commit) as log and stable
// store. etcd-io/raft is a core only: this program gives it the classic
// Ready loop of its documentation (persist entries and hard state to an
// append-only file and fdatasync, then send, then apply, then Advance),
// MemoryStorage for reads and a length-prefixed protobuf stream per peer.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// cluster is a running 3-member cluster of one implementation.
type cluster interface {
	// propose replicates cmd and returns once the leader has applied it.
	propose(ctx context.Context, cmd []byte) error
	stop()
}

type impl struct {
	name  string
	start func(dir string) (cluster, error)
}

func main() {
	proposals := flag.Int("proposals", 5000, "proposals per run")
	levels := flag.String("proposers", "1,16,64,256", "concurrent proposers, comma-separated")
	only := flag.String("only", "", "run only this implementation (raftkv, hashicorp, etcd)")
	flag.Parse()
	var ps []int
	for _, f := range strings.Split(*levels, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p < 1 {
			fmt.Fprintf(os.Stderr, "raftlibs: -proposers %q: want positive integers\n", *levels)
			os.Exit(2)
		}
		ps = append(ps, p)
	}
	impls := []impl{
		{"raftkv", startRaftkv},
		{"hashicorp", startHashicorp},
		{"etcd", startEtcd},
	}
	results := map[string]map[int]result{}
	for _, im := range impls {
		if *only != "" && im.name != *only {
			continue
		}
		results[im.name] = map[int]result{}
		for _, p := range ps {
			r, err := measure(im, p, *proposals)
			if err != nil {
				fmt.Fprintf(os.Stderr, "raftlibs: %s at %d proposers: %v\n", im.name, p, err)
				os.Exit(1)
			}
			results[im.name][p] = r
			fmt.Fprintf(os.Stderr, "%-9s %4d proposers: %8.0f/s p50 %6.2f ms p99 %6.2f ms\n",
				im.name, p, r.perSecond, ms(r.p50), ms(r.p99))
		}
	}
	report(results, ps)
}

type result struct {
	perSecond float64
	p50, p99  time.Duration
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func measure(im impl, proposers, n int) (result, error) {
	dir, err := os.MkdirTemp("", "raftlibs-"+im.name+"-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	c, err := im.start(dir)
	if err != nil {
		return result{}, err
	}
	defer c.stop()
	cmd := make([]byte, 256)
	// One proposal first, so that the leader's first commit (and any
	// start-up work) is not timed.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.propose(ctx, cmd); err != nil {
		return result{}, fmt.Errorf("first proposal: %w", err)
	}
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := time.Now()
	for range proposers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				t0 := time.Now()
				pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := c.propose(pctx, cmd)
				pcancel()
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					next.Store(int64(n))
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, ok := firstErr.Load().(error); ok {
		return result{}, err
	}
	slices.Sort(lat)
	return result{perSecond: float64(n) / elapsed.Seconds(), p50: lat[n/2], p99: lat[n*99/100]}, nil
}

func report(results map[string]map[int]result, ps []int) {
	fmt.Println()
	fmt.Println("| proposers | raftkv/s | p50 | p99 | hashicorp/raft/s | p50 | p99 | etcd-io/raft/s | p50 | p99 | raftkv ÷ hashicorp | raftkv ÷ etcd |")
	fmt.Println("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	cell := func(name string, p int) string {
		r, ok := results[name][p]
		if !ok {
			return "– | – | –"
		}
		return fmt.Sprintf("%.0f | %.2f ms | %.2f ms", r.perSecond, ms(r.p50), ms(r.p99))
	}
	ratio := func(other string, p int) string {
		a, okA := results["raftkv"][p]
		b, okB := results[other][p]
		if !okA || !okB || b.perSecond == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f×", a.perSecond/b.perSecond)
	}
	for _, p := range ps {
		fmt.Printf("| %d | %s | %s | %s | %s | %s |\n", p, cell("raftkv", p), cell("hashicorp", p), cell("etcd", p),
			ratio("hashicorp", p), ratio("etcd", p))
	}
}
