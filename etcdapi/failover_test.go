package etcdapi_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	pb "github.com/raftkv/raftkv/raftpb"
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

// unknownOutcome reports whether err is how etcd reports a write that may
// or may not have applied.
func unknownOutcome(err error) bool {
	return errors.Is(err, rpctypes.ErrTimeout) || errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail)
}

// TestEtcdUnderLeaderChanges moves leadership every 150 ms while the
// etcd client runs transactions (a compare-and-swap counter), linearizable
// reads, lease grants, keep-alives and revokes, member lists, statuses,
// elections and STM transfers. Reads never fail; a write fails only as
// "outcome unknown"; the counter is at least every acknowledged increment
// and at most those plus the unknown ones; the STM keeps its total.
func TestEtcdUnderLeaderChanges(t *testing.T) {
	c := newECluster(t)
	cli := c.client()
	ctx := ctxT(t)
	stop := make(chan struct{})
	moved := make(chan int)
	var moves atomic.Int32
	go func() {
		n := 0
		defer func() { moved <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
			l := c.leader()
			tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if c.servers[l].Node().TransferLeadership(tctx, pb.NodeID((l+1)%3+1)) == nil {
				n++
				moves.Add(1)
			}
			cancel()
		}
	}()

	acked, unknown := 0, 0
	cli.Put(ctx, "acct/a", "50")
	cli.Put(ctx, "acct/b", "50")
	for i := 0; i < 2000 && moves.Load() < 8; i++ {
		g, err := cli.Get(ctx, "ctr")
		if err != nil {
			t.Fatalf("linearizable read: %v", err)
		}
		cur, mod := 0, int64(0)
		if len(g.Kvs) == 1 {
			fmt.Sscan(string(g.Kvs[0].Value), &cur)
			mod = g.Kvs[0].ModRevision
		}
		if cur < acked {
			t.Fatalf("read %d after %d acknowledged increments", cur, acked)
		}
		acked, unknown = cur, 0 // what is read is now known
		tr, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision("ctr"), "=", mod)).
			Then(clientv3.OpPut("ctr", fmt.Sprint(cur+1))).Commit()
		switch {
		case unknownOutcome(err):
			unknown++
		case err != nil:
			t.Fatalf("txn: %v", err)
		case tr.Succeeded:
			acked++
		}

		if i%4 == 0 {
			lg, err := cli.Grant(ctx, 10)
			if err != nil && !unknownOutcome(err) {
				t.Fatalf("grant: %v", err)
			}
			if err == nil {
				if _, err := cli.KeepAliveOnce(ctx, lg.ID); err != nil && !unknownOutcome(err) {
					t.Fatalf("keep-alive: %v", err)
				}
				if _, err := cli.Revoke(ctx, lg.ID); err != nil && !unknownOutcome(err) {
					t.Fatalf("revoke: %v", err)
				}
			}
			if _, err := cli.MemberList(ctx); err != nil {
				t.Fatalf("member list: %v", err)
			}
			if _, err := cli.Status(ctx, c.addrs[i%3]); err != nil {
				t.Fatalf("status: %v", err)
			}
			_, err = concurrency.NewSTM(cli, func(stm concurrency.STM) error {
				var a, b int
				fmt.Sscan(stm.Get("acct/a"), &a)
				fmt.Sscan(stm.Get("acct/b"), &b)
				stm.Put("acct/a", fmt.Sprint(a-1))
				stm.Put("acct/b", fmt.Sprint(b+1))
				return nil
			}, concurrency.WithAbortContext(ctx))
			if err != nil && !unknownOutcome(err) {
				t.Fatalf("stm: %v", err)
			}
		}
	}
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		t.Fatal(err)
	}
	e := concurrency.NewElection(s, "/elect-moving")
	for i := 0; i < 3; i++ {
		if err := e.Campaign(ctx, fmt.Sprint(i)); err != nil {
			t.Fatalf("campaign: %v", err)
		}
		if l, err := e.Leader(ctx); err != nil || string(l.Kvs[0].Value) != fmt.Sprint(i) {
			t.Fatalf("leader: %v %v", l, err)
		}
		if err := e.Resign(ctx); err != nil {
			t.Fatalf("resign: %v", err)
		}
	}
	close(stop)
	n := <-moved
	g, err := cli.Get(ctx, "ctr")
	if err != nil {
		t.Fatal(err)
	}
	var final int
	fmt.Sscan(string(g.Kvs[0].Value), &final)
	if final < acked || final > acked+unknown {
		t.Fatalf("counter %d, acknowledged %d, unknown %d", final, acked, unknown)
	}
	ra, _ := cli.Get(ctx, "acct/a")
	rb, _ := cli.Get(ctx, "acct/b")
	var a, b int
	fmt.Sscan(string(ra.Kvs[0].Value), &a)
	fmt.Sscan(string(rb.Kvs[0].Value), &b)
	if a+b != 100 {
		t.Fatalf("STM total %d+%d", a, b)
	}
	if n < 8 {
		t.Fatalf("leadership moved only %d times", n)
	}
	t.Logf("leadership moved %d times; counter %d", n, final)
}

// TestEtcdWritesAcrossLeaderChange moves leadership while clients keep
// writes in flight on every member: every write must succeed. A transfer
// refuses new proposals (retried) and steps down only once the target
// holds, and so the leader has committed, the whole log: nothing in
// flight is left with an unknown outcome.
func TestEtcdWritesAcrossLeaderChange(t *testing.T) {
	c := newECluster(t)
	ctx := ctxT(t)
	clis := make([]*clientv3.Client, len(c.addrs))
	for i := range clis {
		clis[i] = c.client(c.addrs[i])
	}
	stop := make(chan struct{})
	var fails failures
	var writes atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 48; g++ {
		wg.Add(1)
		go func(cli *clientv3.Client, g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := cli.Put(ctx, fmt.Sprintf("w%d/%d", g, i%100), "v"); err != nil {
					fails.add(err)
				}
				writes.Add(1)
			}
		}(clis[g%len(clis)], g)
	}
	moves := 0
	for moves < 6 {
		time.Sleep(150 * time.Millisecond)
		l := c.leader()
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if c.servers[l].Node().TransferLeadership(tctx, pb.NodeID((l+1)%3+1)) == nil {
			moves++
		}
		cancel()
	}
	time.Sleep(150 * time.Millisecond)
	close(stop)
	wg.Wait()
	if n, why := fails.summary(); n > 0 {
		t.Fatalf("%d of %d writes failed across %d leader changes: %s", n, writes.Load(), moves, why)
	}
	t.Logf("%d writes across %d leader changes", writes.Load(), moves)
}
