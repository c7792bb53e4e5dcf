package client

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkTxn3Compares3Puts: transactions of 3 compares and 3 puts
// (keys drawn from 1,000) from 64 concurrent callers against an
// in-process three-member cluster over loopback; reports txn/s.
func BenchmarkTxn3Compares3Puts(b *testing.B) {
	ss := startCluster(&testing.T{})
	defer func() {
		for _, s := range ss {
			s.Close()
		}
	}()
	c, err := New(Config{Endpoints: endpoints(ss)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cx := ctx(&testing.T{}, 10*time.Minute)
	if _, err := c.Put(cx, "warm", nil); err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	value := make([]byte, 64)
	b.SetParallelism(32) // x GOMAXPROCS callers
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			var cmps []Cmp
			var ops []Op
			for j := range int64(3) {
				k := fmt.Sprintf("txn/%03d", (i*7+j*331)%1000)
				cmps = append(cmps, Compare(ModRevision(k), "<", int64(1)<<60))
				ops = append(ops, OpPut(k, value))
			}
			if r, err := c.Txn(cx, cmps, ops, nil); err != nil || !r.Succeeded {
				b.Errorf("txn: %+v %v", r, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "txn/s")
}

// BenchmarkLeaseKeepAlive10000: keep-alives of 10,000 leases, round robin
// from 64 concurrent callers, against the leader of an in-process
// three-member cluster; reports keep-alives/s.
func BenchmarkLeaseKeepAlive10000(b *testing.B) {
	ss := startCluster(&testing.T{})
	defer func() {
		for _, s := range ss {
			s.Close()
		}
	}()
	c, err := New(Config{Endpoints: endpoints(ss)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cx := ctx(&testing.T{}, 10*time.Minute)
	const leases = 10000
	ids := make([]int64, leases)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= leases {
					return
				}
				id, _, err := c.GrantID(cx, i+1, 600)
				if err != nil {
					b.Error(err)
					return
				}
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	next.Store(0)
	b.SetParallelism(32)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			if _, err := c.KeepAliveOnce(cx, ids[i%leases]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "keepalives/s")
}
