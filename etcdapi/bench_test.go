package etcdapi_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/raftkv/raftkv/server"
)

// BenchmarkEtcdKV drives a three-member cluster in this process as etcd's
// benchmark tool does (--conns 16 --clients 64 over every endpoint): 16
// client connections, connection i to member i mod 3, so two thirds of
// the requests reach a follower, and 64 goroutines, each with one request
// in flight on connection j mod 16. Rows: put (256-byte values over 10,000
// keys), a linearizable range of one key, and a txn of one put, as the
// tool sends them; "leader" rows send everything to the leader. Besides
// ns/op it reports the process's CPU per request (members and clients
// together, cpu-µs/op); run with -benchtime=5000x or more, the per-op
// figures include the cluster's idle work.
func BenchmarkEtcdKV(b *testing.B) {
	// etcd's default heartbeat and election timeout, which etcd's tool
	// meets, rather than the tests' shorter ones: the members share this
	// process's CPU with the clients, and a leader starved of it for
	// 200 ms loses leadership, which a default member survives.
	c := newEClusterWith(b, nil, func(cfg *server.Config) {
		cfg.HeartbeatInterval, cfg.ElectionTimeout = 100*time.Millisecond, time.Second
	})
	ctx := context.Background()
	val := string(make([]byte, 256))
	ops := map[string]func(cli *clientv3.Client, i int) error{
		"put": func(cli *clientv3.Client, i int) error {
			_, err := cli.Put(ctx, fmt.Sprintf("key%d", i%10000), val)
			return err
		},
		"range": func(cli *clientv3.Client, i int) error {
			_, err := cli.Get(ctx, "k")
			return err
		},
		"txn-put": func(cli *clientv3.Client, i int) error {
			_, err := cli.Txn(ctx).Then(clientv3.OpPut(fmt.Sprintf("key%d", i%10000), val)).Commit()
			return err
		},
	}
	for _, target := range []string{"all", "leader"} {
		clis := make([]*clientv3.Client, 16)
		for i := range clis {
			ep := c.addrs[i%len(c.addrs)]
			if target == "leader" {
				ep = c.addrs[c.leader()]
			}
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
			if err != nil {
				b.Fatal(err)
			}
			defer cli.Close()
			clis[i] = cli
		}
		for _, name := range []string{"put", "range", "txn-put"} {
			op := ops[name]
			b.Run(name+"/"+target, func(b *testing.B) {
				var next atomic.Int64
				var fails failures
				var wg sync.WaitGroup
				b.ReportAllocs()
				termBefore := c.maxTerm()
				before := cpuTime()
				b.ResetTimer()
				for g := 0; g < 64; g++ {
					wg.Add(1)
					go func(cli *clientv3.Client) {
						defer wg.Done()
						for {
							i := int(next.Add(1))
							if i > b.N {
								return
							}
							if err := op(cli, i); err != nil {
								fails.add(err)
							}
						}
					}(clis[g%len(clis)])
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64((cpuTime()-before).Microseconds())/float64(b.N), "cpu-µs/op")
				if n, why := fails.summary(); n > 0 {
					b.Fatalf("%d of %d requests failed (raft term %d before, %d after): %s", n, b.N, termBefore, c.maxTerm(), why)
				}
			})
		}
	}
}

// failures counts a benchmark's failed requests by error text, so a run
// that fails says why.
type failures struct {
	mu    sync.Mutex
	n     int
	byErr map[string]int
}

func (f *failures) add(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byErr == nil {
		f.byErr = make(map[string]int)
	}
	f.n++
	f.byErr[err.Error()]++
}

// summary returns the number of failures and their errors, most frequent
// first, each with its count.
func (f *failures) summary() (int, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	errs := make([]string, 0, len(f.byErr))
	for e := range f.byErr {
		errs = append(errs, e)
	}
	sort.Slice(errs, func(i, j int) bool {
		if f.byErr[errs[i]] != f.byErr[errs[j]] {
			return f.byErr[errs[i]] > f.byErr[errs[j]]
		}
		return errs[i] < errs[j]
	})
	parts := make([]string, len(errs))
	for i, e := range errs {
		parts[i] = fmt.Sprintf("%d× %q", f.byErr[e], e)
	}
	return f.n, strings.Join(parts, ", ")
}

// maxTerm is the highest raft term a member has seen: a change during a
// row means an election happened.
func (c *ecluster) maxTerm() uint64 {
	var max uint64
	for _, s := range c.servers {
		if _, term, _ := s.Node().Leader(); uint64(term) > max {
			max = uint64(term)
		}
	}
	return max
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEtcdWatchFanOut is the fan-out of etcd's watch-latency
// workload (--streams 10 --watchers-per-stream 10): 100 watches of one
// key on 10 streams, stream i on member i mod 3, and one client putting
// that key (256-byte values) on a follower, one put at a time, each op
// waiting until every watch has its event. ns/op is from the put to the
// last event; cpu-µs/op is the process's CPU per put (members and
// clients together).
func BenchmarkEtcdWatchFanOut(b *testing.B) {
	c := newEClusterWith(b, nil, nil)
	ctx := context.Background()
	const streams, perStream = 10, 10
	dial := func(ep string) *clientv3.Client {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cli.Close() })
		return cli
	}
	var got atomic.Int64
	wake := make(chan struct{}, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := range streams {
		w := clientv3.NewWatcher(dial(c.addrs[i%len(c.addrs)]))
		b.Cleanup(func() { w.Close() })
		for range perStream {
			wch := w.Watch(wctx, "watched")
			go func() {
				for r := range wch {
					if got.Add(int64(len(r.Events))) >= streams*perStream {
						select {
						case wake <- struct{}{}:
						default:
						}
					}
				}
			}()
		}
	}
	put := dial(c.addrs[(c.leader()+1)%len(c.addrs)])
	val := string(make([]byte, 256))
	// Every watch is created once a put reaches all of them.
	for got.Load() < streams*perStream {
		got.Store(0)
		if _, err := put.Put(ctx, "watched", val); err != nil {
			b.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-wake:
	default:
	}
	b.ReportAllocs()
	before := cpuTime()
	b.ResetTimer()
	for range b.N {
		got.Store(0)
		if _, err := put.Put(ctx, "watched", val); err != nil {
			b.Fatal(err)
		}
		select {
		case <-wake:
		case <-time.After(10 * time.Second):
			b.Fatalf("%d of %d events after 10s", got.Load(), streams*perStream)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-before).Microseconds())/float64(b.N), "cpu-µs/op")
}
