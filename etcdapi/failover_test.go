package etcdapi_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestEtcdFailover kills the leader while the etcd client writes, watches
// and keeps a lease alive: writes go on through the others, the watch
// (resumed by the client on another member) sees every acknowledged put
// exactly once and in order, and the lease survives.
func TestEtcdFailover(t *testing.T) {
	c := newECluster(t)
	lead := c.leader()
	// Clients on the leader first, so their streams must move.
	eps := []string{c.addrs[lead], c.addrs[(lead+1)%3], c.addrs[(lead+2)%3]}
	cli := c.client(eps...)
	wcli := c.client(eps...)
	ctx := ctxT(t)

	g, err := cli.Grant(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "lk", "v", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	ka, err := cli.KeepAlive(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range ka {
		}
	}()

	start, _ := cli.Get(ctx, "f/", clientv3.WithPrefix())
	wc := wcli.Watch(clientv3.WithRequireLeader(ctx), "f/", clientv3.WithPrefix(), clientv3.WithRev(start.Header.Revision+1))

	acked := map[string]int64{} // key -> revision of the acknowledged put
	var order []string
	put := func(i int) {
		k := fmt.Sprintf("f/%04d", i)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		r, err := cli.Put(pctx, k, "v")
		if err != nil {
			t.Logf("put %s: %v", k, err)
		}
		if err == nil {
			acked[k] = r.Header.Revision
			order = append(order, k)
		}
	}
	for i := 0; i < 20; i++ {
		put(i)
	}
	c.etcds[lead].Stop()
	c.servers[lead].Close()
	for i := 20; i < 60; i++ {
		put(i)
	}
	if len(acked) < 40 {
		t.Fatalf("only %d of 60 puts acknowledged across the failover", len(acked))
	}
	if _, ok := acked["f/0059"]; !ok {
		t.Fatal("the last put failed: writes did not resume")
	}

	// The watch sees every acknowledged put once, in revision order.
	seen := map[string]bool{}
	last := int64(0)
	deadline := time.After(15 * time.Second)
	for len(seen) < len(acked) || !seen["f/0059"] {
		select {
		case r, ok := <-wc:
			if !ok {
				t.Fatal("watch closed")
			}
			if r.Err() != nil {
				t.Fatalf("watch: %v", r.Err())
			}
			for _, e := range r.Events {
				k := string(e.Kv.Key)
				if seen[k] || e.Kv.ModRevision <= last {
					t.Fatalf("event %s at %d repeated or out of order (last %d)", k, e.Kv.ModRevision, last)
				}
				seen[k], last = true, e.Kv.ModRevision
				if rev, ok := acked[k]; ok && rev != e.Kv.ModRevision {
					t.Fatalf("%s acknowledged at %d, watched at %d", k, rev, e.Kv.ModRevision)
				}
			}
		case <-deadline:
			t.Fatalf("watch saw %d of %d acknowledged puts", len(seen), len(acked))
		}
	}

	// The lease, kept alive through the failover, outlives its TTL.
	time.Sleep(4 * time.Second)
	r, err := cli.Get(ctx, "lk")
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("leased key after the failover: %+v %v", r, err)
	}
	ttl, err := cli.TimeToLive(ctx, g.ID)
	if err != nil || ttl.TTL <= 0 {
		t.Fatalf("lease after the failover: %+v %v", ttl, err)
	}
	t.Logf("%d of 60 puts acknowledged; the watch saw them in order", len(order))
}

// TestEtcdWatchRequiresLeader shows that a watch stream opened with
// WithRequireLeader ends with etcd's "no leader" once its member has had
// no leader for three election timeouts (the others stopped), so the
// client can move on.
func TestEtcdWatchRequiresLeader(t *testing.T) {
	c := newECluster(t)
	f := c.follower()
	cli := c.client(c.addrs[f])
	ctx := ctxT(t)
	if _, err := cli.Put(ctx, "x", "1"); err != nil {
		t.Fatal(err)
	}
	wc := cli.Watch(clientv3.WithRequireLeader(ctx), "x")
	time.Sleep(100 * time.Millisecond)
	for i := range c.servers {
		if i != f {
			c.etcds[i].Stop()
			c.servers[i].Close()
		}
	}
	select {
	case r, ok := <-wc:
		if ok && !errors.Is(r.Err(), rpctypes.ErrNoLeader) {
			t.Fatalf("watch answered %+v (%v), want no leader", r, r.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch stream outlived its leader by 10s")
	}
}
