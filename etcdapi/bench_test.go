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
