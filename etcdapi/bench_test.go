package etcdapi_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
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
	c := newEClusterWith(b, nil, nil)
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
				var failed atomic.Int64
				var wg sync.WaitGroup
				b.ReportAllocs()
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
								failed.Add(1)
							}
						}
					}(clis[g%len(clis)])
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64((cpuTime()-before).Microseconds())/float64(b.N), "cpu-µs/op")
				if n := failed.Load(); n > 0 {
					b.Fatalf("%d of %d requests failed", n, b.N)
				}
			})
		}
	}
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
