package etcdapi_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/raftkv/raftkv/etcdapi"
	"github.com/raftkv/raftkv/node"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/server"
)

// ecluster is a three-member raftkv cluster in this process, each member
// serving etcd's v3 API on its own loopback port.
type ecluster struct {
	t       testing.TB
	servers []*server.Server
	etcds   []*etcdapi.Server
	addrs   []string
	cfgs    []server.Config // each member's, for a restart
}

func newECluster(t *testing.T) *ecluster { return newEClusterWith(t, nil, nil) }

// newEClusterTLS starts the cluster with tlsCfg for peers, HTTP clients
// and etcd clients.
func newEClusterTLS(t *testing.T, tlsCfg *tls.Config) *ecluster {
	return newEClusterWith(t, tlsCfg, nil)
}

// newEClusterWith starts the cluster with tlsCfg (nil: none), each
// member's configuration passed through tune (if not nil).
func newEClusterWith(t testing.TB, tlsCfg *tls.Config, tune func(*server.Config)) *ecluster {
	t.Helper()
	const n = 3
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var pls, cls, els []net.Listener
	var boot []node.Member
	for i := 0; i < n; i++ {
		pl, _ := net.Listen("tcp", "127.0.0.1:0")
		cl, _ := net.Listen("tcp", "127.0.0.1:0")
		el, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pls, cls, els = append(pls, pl), append(cls, cl), append(els, el)
		boot = append(boot, node.Member{ID: pb.NodeID(i + 1), PeerAddr: pl.Addr().String()})
	}
	c := &ecluster{t: t}
	for i := 0; i < n; i++ {
		cfg := server.Config{ID: uint64(i + 1), DataDir: t.TempDir(), PeerListener: pls[i], ClientListener: cls[i], Cluster: boot,
			HeartbeatInterval: 20 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond, Logger: logger, TLS: tlsCfg}
		if tune != nil {
			tune(&cfg)
		}
		s, err := server.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		e := startEtcd(t, s, cfg, els[i])
		c.servers, c.etcds, c.addrs, c.cfgs = append(c.servers, s), append(c.etcds, e), append(c.addrs, e.Addr()), append(c.cfgs, cfg)
	}
	t.Cleanup(func() {
		for i := range c.servers {
			c.etcds[i].Stop()
			c.servers[i].Close()
		}
	})
	c.waitPublished()
	return c
}

// startEtcd serves etcd's API for member s on l.
func startEtcd(t testing.TB, s *server.Server, cfg server.Config, l net.Listener) *etcdapi.Server {
	t.Helper()
	e, err := etcdapi.New(etcdapi.Config{ID: cfg.ID, Node: s.Node(), Store: s.Store(), Lessor: s, ReadBarrier: s.LinearizableBarrier, Logger: cfg.Logger, TLS: cfg.TLS,
		RequestTimeout: 3 * time.Second, ProgressInterval: 200 * time.Millisecond, ElectionTimeout: cfg.ElectionTimeout})
	if err != nil {
		t.Fatal(err)
	}
	e.Serve(l)
	return e
}

// restart stops member i and starts it again from its data directory,
// listening for peers on peer and for clients on fresh ports.
func (c *ecluster) restart(i int, peer net.Listener) {
	c.t.Helper()
	c.etcds[i].Stop()
	c.servers[i].Close()
	cl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	el, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := c.cfgs[i]
	cfg.PeerListener, cfg.ClientListener, cfg.AdvertisePeer, cfg.AdvertiseClient = peer, cl, "", ""
	s, err := server.Start(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	e := startEtcd(c.t, s, cfg, el)
	c.servers[i], c.etcds[i], c.addrs[i], c.cfgs[i] = s, e, e.Addr(), cfg
}

// leader returns the index of the leading member.
func (c *ecluster) leader() int {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, s := range c.servers {
			if _, _, role := s.Node().Leader(); role == raft.Leader {
				return i
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("no leader")
	return -1
}

// waitPublished waits until every member's etcd address is in the
// member table.
func (c *ecluster) waitPublished() {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n := 0
		for _, m := range c.servers[c.leader()].Node().Status().Members {
			if m.EtcdAddr == c.addrs[m.ID-1] {
				n++
			}
		}
		if n == len(c.servers) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("the members' etcd addresses were never all published")
}

func (c *ecluster) client(eps ...string) *clientv3.Client {
	c.t.Helper()
	if len(eps) == 0 {
		eps = c.addrs
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// follower returns the index of a member that does not lead.
func (c *ecluster) follower() int { return (c.leader() + 1) % len(c.servers) }

// TestEtcdKV drives Put, Range, DeleteRange, Txn and Compact through the
// etcd client against a follower (writes forwarded to the leader) and
// checks each answer as etcd gives it.
func TestEtcdKV(t *testing.T) {
	c := newECluster(t)
	f := c.follower()
	cli := c.client(c.addrs[f])
	ctx := ctxT(t)

	p1, err := cli.Put(ctx, "a/1", "one")
	if err != nil {
		t.Fatal(err)
	}
	if p1.Header.MemberId != uint64(f+1) || p1.Header.ClusterId == 0 || p1.Header.RaftTerm == 0 || p1.Header.Revision < 2 {
		t.Fatalf("put header %+v", p1.Header)
	}
	p2, err := cli.Put(ctx, "a/1", "uno", clientv3.WithPrevKV())
	if err != nil || p2.PrevKv == nil || string(p2.PrevKv.Value) != "one" || p2.Header.Revision != p1.Header.Revision+1 {
		t.Fatalf("put with prev_kv: %+v %v", p2, err)
	}
	for _, k := range []string{"a/2", "a/3", "b/1"} {
		if _, err := cli.Put(ctx, k, "v-"+k); err != nil {
			t.Fatal(err)
		}
	}
	g, err := cli.Get(ctx, "a/", clientv3.WithPrefix())
	if err != nil || g.Count != 3 || len(g.Kvs) != 3 || string(g.Kvs[0].Value) != "uno" || g.Kvs[0].Version != 2 {
		t.Fatalf("prefix get: %+v %v", g, err)
	}
	g, err = cli.Get(ctx, "a/", clientv3.WithPrefix(), clientv3.WithLimit(2), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	if err != nil || !g.More || len(g.Kvs) != 2 || string(g.Kvs[0].Key) != "a/3" || g.Count != 3 {
		t.Fatalf("limited sorted get: %+v %v", g, err)
	}
	g, err = cli.Get(ctx, "a/1", clientv3.WithRev(p1.Header.Revision))
	if err != nil || len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "one" {
		t.Fatalf("get at revision: %+v %v", g, err)
	}
	g, err = cli.Get(ctx, "a/", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithSerializable())
	if err != nil || g.Count != 3 || len(g.Kvs) != 0 {
		t.Fatalf("count only: %+v %v", g, err)
	}
	g, err = cli.Get(ctx, "a/", clientv3.WithFromKey(), clientv3.WithKeysOnly())
	if err != nil || g.Count != 4 || len(g.Kvs[3].Value) != 0 {
		t.Fatalf("from key, keys only: %+v %v", g, err)
	}
	gs, err := cli.GetStream(ctx, "a/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if g, err := clientv3.GetStreamToGetResponse(gs); err != nil || g.Count != 3 || len(g.Kvs) != 3 || string(g.Kvs[2].Key) != "a/3" {
		t.Fatalf("get stream: %+v %v", g, err)
	}
	if _, err := cli.Get(ctx, "a/1", clientv3.WithRev(1<<40)); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Fatalf("future revision: %v", err)
	}

	// Txn: create-if-absent, then update guarded by mod revision.
	tr, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision("t"), "=", 0)).
		Then(clientv3.OpPut("t", "x"), clientv3.OpGet("a/", clientv3.WithPrefix())).Else(clientv3.OpGet("t")).Commit()
	if err != nil || !tr.Succeeded || len(tr.Responses) != 2 || tr.Responses[1].GetResponseRange().Count != 3 {
		t.Fatalf("txn create: %+v %v", tr, err)
	}
	tr, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision("t"), "=", 0)).
		Then(clientv3.OpPut("t", "y")).Else(clientv3.OpGet("t")).Commit()
	if err != nil || tr.Succeeded || string(tr.Responses[0].GetResponseRange().Kvs[0].Value) != "x" {
		t.Fatalf("txn else branch: %+v %v", tr, err)
	}
	tr, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.Value("t"), "=", "x"), clientv3.Compare(clientv3.Version("a/1"), ">", 1)).
		Then(clientv3.OpDelete("b/", clientv3.WithPrefix(), clientv3.WithPrevKV())).Commit()
	if err != nil || !tr.Succeeded || tr.Responses[0].GetResponseDeleteRange().Deleted != 1 {
		t.Fatalf("txn delete: %+v %v", tr, err)
	}
	var ops []clientv3.Op
	for i := 0; i < 129; i++ {
		ops = append(ops, clientv3.OpPut(fmt.Sprint("many/", i), "v"))
	}
	if _, err := cli.Txn(ctx).Then(ops...).Commit(); !errors.Is(err, rpctypes.ErrTooManyOps) {
		t.Fatalf("too many ops: %v", err)
	}
	if _, err := cli.Txn(ctx).Then(clientv3.OpPut("d", "1"), clientv3.OpPut("d", "2")).Commit(); !errors.Is(err, rpctypes.ErrDuplicateKey) {
		t.Fatalf("duplicate key: %v", err)
	}

	d, err := cli.Delete(ctx, "a/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	if err != nil || d.Deleted != 3 || len(d.PrevKvs) != 3 {
		t.Fatalf("delete prefix: %+v %v", d, err)
	}
	if _, err := cli.Put(ctx, "nokey", "", clientv3.WithIgnoreValue()); !errors.Is(err, rpctypes.ErrKeyNotFound) {
		t.Fatalf("ignore_value on a missing key: %v", err)
	}
	if _, err := cli.Put(ctx, "k", "v", clientv3.WithLease(12345)); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("put with unknown lease: %v", err)
	}

	if _, err := cli.Compact(ctx, d.Header.Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Get(ctx, "a/1", clientv3.WithRev(p1.Header.Revision)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("read below compaction: %v", err)
	}
	if _, err := cli.Compact(ctx, p1.Header.Revision); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("compact again below: %v", err)
	}
}

// TestEtcdWatch checks watches from a past revision with prev_kv and
// filters, progress notifications and requests, cancel, and a watch on a
// compacted revision, on a follower.
func TestEtcdWatch(t *testing.T) {
	c := newECluster(t)
	cli := c.client(c.addrs[c.follower()])
	ctx := ctxT(t)
	first, _ := cli.Put(ctx, "w/a", "1")
	cli.Put(ctx, "w/a", "2")
	cli.Delete(ctx, "w/a")

	wc := cli.Watch(ctx, "w/", clientv3.WithPrefix(), clientv3.WithRev(first.Header.Revision), clientv3.WithPrevKV())
	var evs []*clientv3.Event
	for len(evs) < 3 {
		r := <-wc
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, r.Events...)
	}
	if !evs[0].IsCreate() || !evs[1].IsModify() || string(evs[1].PrevKv.Value) != "1" || evs[2].Type != clientv3.EventTypeDelete ||
		string(evs[2].PrevKv.Value) != "2" || evs[2].Kv.ModRevision != first.Header.Revision+2 {
		t.Fatalf("history events: %v", evs)
	}

	// Live, with the delete filter; the progress notify arrives while idle.
	wctx, cancel := context.WithCancel(ctx)
	live := cli.Watch(wctx, "w/b", clientv3.WithFilterDelete(), clientv3.WithProgressNotify())
	time.Sleep(50 * time.Millisecond)
	cli.Put(ctx, "w/b", "x")
	cli.Delete(ctx, "w/b")
	p, _ := cli.Put(ctx, "w/b", "y")
	var got []string
	sawProgress := false
	for len(got) < 2 || !sawProgress {
		r := <-live
		if r.Err() != nil {
			t.Fatal(r.Err())
		}
		if r.IsProgressNotify() {
			sawProgress = len(got) == 2 && r.Header.Revision >= p.Header.Revision
		}
		for _, e := range r.Events {
			if e.Type != clientv3.EventTypePut {
				t.Fatalf("filtered delete delivered: %v", e)
			}
			got = append(got, string(e.Kv.Value))
		}
	}
	if got[0] != "x" || got[1] != "y" {
		t.Fatalf("live events %v", got)
	}
	if err := cli.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	for r := range live {
		if r.IsProgressNotify() && r.Header.Revision >= p.Header.Revision {
			break
		}
	}
	cancel()

	if _, err := cli.Compact(ctx, p.Header.Revision); err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	cr := <-cli.Watch(cctx, "w/", clientv3.WithPrefix(), clientv3.WithRev(first.Header.Revision))
	if !errors.Is(cr.Err(), rpctypes.ErrCompacted) || cr.CompactRevision != p.Header.Revision || cr.CancelReason != "etcdserver: mvcc: required revision has been compacted" {
		t.Fatalf("watch on a compacted revision: %v (compact revision %d)", cr.Err(), cr.CompactRevision)
	}
}

// TestEtcdWatchManyOnOneStream: one stream serves all its watches with
// one goroutine; a watch reading a long history (more than one turn's
// batches) and watches of one live key all get every event of theirs,
// in order, and a progress request is answered after them.
func TestEtcdWatchManyOnOneStream(t *testing.T) {
	c := newECluster(t)
	cli := c.client(c.addrs[c.follower()])
	ctx := ctxT(t)
	// 9,000 events in 90 revisions: catching up on them takes more than
	// one turn's reads of 1,000 events (whole revisions) each.
	const history, perTxn = 9000, 100
	first, err := cli.Put(ctx, "h/start", "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range history/perTxn - 1 {
		ops := make([]clientv3.Op, perTxn)
		for j := range ops {
			ops[j] = clientv3.OpPut(fmt.Sprintf("h/%d/%d", i, j), "v")
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	for j := range perTxn - 1 {
		if _, err := cli.Put(ctx, fmt.Sprintf("h/last/%d", j), "v"); err != nil {
			t.Fatal(err)
		}
	}
	// The same context: one stream for every watch.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hist := cli.Watch(wctx, "h/", clientv3.WithPrefix(), clientv3.WithRev(first.Header.Revision))
	const lives, puts = 10, 20
	var lv []clientv3.WatchChan
	for range lives {
		lv = append(lv, cli.Watch(wctx, "live", clientv3.WithCreatedNotify()))
	}
	for _, ch := range lv {
		if r := <-ch; !r.Created {
			t.Fatalf("first response of a live watch: %+v", r)
		}
	}
	var last int64
	for i := range puts {
		r, err := cli.Put(ctx, "live", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		last = r.Header.Revision
	}
	for j, ch := range lv {
		for i := 0; i < puts; {
			r, ok := <-ch
			if !ok {
				t.Fatalf("live watch %d closed after %d events", j, i)
			}
			if r.Err() != nil {
				t.Fatal(r.Err())
			}
			for _, e := range r.Events {
				if string(e.Kv.Value) != fmt.Sprint(i) {
					t.Fatalf("live watch %d: event %d is %q", j, i, e.Kv.Value)
				}
				i++
			}
		}
	}
	n, rev := 0, first.Header.Revision-1
	for n < history {
		r, ok := <-hist
		if !ok {
			t.Fatalf("history watch closed after %d events", n)
		}
		if r.Err() != nil {
			t.Fatal(r.Err())
		}
		for _, e := range r.Events {
			if e.Kv.ModRevision < rev {
				t.Fatalf("history event at revision %d after %d", e.Kv.ModRevision, rev)
			}
			rev = e.Kv.ModRevision
			n++
		}
	}
	if err := cli.RequestProgress(wctx); err != nil {
		t.Fatal(err)
	}
	for {
		r, ok := <-hist
		if !ok {
			t.Fatal("history watch closed before the progress answer")
		}
		if len(r.Events) > 0 {
			t.Fatalf("history watch got %d events past its %d", len(r.Events), history)
		}
		if r.IsProgressNotify() {
			if r.Header.Revision < last {
				t.Fatalf("progress at revision %d, before the last put's %d", r.Header.Revision, last)
			}
			return
		}
	}
}

// TestEtcdLease grants, attaches, keeps alive, asks the TTL and keys of,
// lists and revokes a lease through a follower.
func TestEtcdLease(t *testing.T) {
	c := newECluster(t)
	cli := c.client(c.addrs[c.follower()])
	ctx := ctxT(t)
	g, err := cli.Grant(ctx, 5)
	if err != nil || g.ID == 0 || g.TTL != 5 {
		t.Fatalf("grant: %+v %v", g, err)
	}
	if _, err := cli.Put(ctx, "l/k", "v", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	ka, err := cli.KeepAliveOnce(ctx, g.ID)
	if err != nil || ka.TTL != 5 {
		t.Fatalf("keep-alive: %+v %v", ka, err)
	}
	ttl, err := cli.TimeToLive(ctx, g.ID, clientv3.WithAttachedKeys())
	if err != nil || ttl.TTL <= 0 || ttl.TTL > 5 || ttl.GrantedTTL != 5 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "l/k" {
		t.Fatalf("time to live: %+v %v", ttl, err)
	}
	ls, err := cli.Leases(ctx)
	if err != nil || len(ls.Leases) != 1 || ls.Leases[0].ID != g.ID {
		t.Fatalf("leases: %+v %v", ls, err)
	}
	ch, err := cli.KeepAlive(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r := <-ch; r == nil || r.TTL != 5 {
		t.Fatalf("keep-alive stream: %+v", r)
	}
	if _, err := cli.Revoke(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if r, _ := cli.Get(ctx, "l/k"); len(r.Kvs) != 0 {
		t.Fatal("revoke left its key")
	}
	ttl, err = cli.TimeToLive(ctx, g.ID)
	if err != nil || ttl.TTL != -1 {
		t.Fatalf("time to live of a revoked lease: %+v %v", ttl, err)
	}
	if _, err := cli.Revoke(ctx, g.ID); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("revoke twice: %v", err)
	}
	// A short lease that is not kept alive expires and takes its key.
	short, _ := cli.Grant(ctx, 1)
	cli.Put(ctx, "l/short", "v", clientv3.WithLease(short.ID))
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := cli.Get(ctx, "l/short")
		if err == nil && len(r.Kvs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("lease never expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEtcdClusterMaintenance lists, adds (learner), promotes (refused: not
// caught up) and removes members, and calls every maintenance RPC.
func TestEtcdClusterMaintenance(t *testing.T) {
	c := newECluster(t)
	cli := c.client()
	ctx := ctxT(t)
	ml, err := cli.MemberList(ctx)
	if err != nil || len(ml.Members) != 3 {
		t.Fatalf("member list: %+v %v", ml, err)
	}
	lead := c.leader()
	for _, m := range ml.Members {
		if m.IsLearner || len(m.PeerURLs) != 1 {
			t.Fatalf("member %+v", m)
		}
		if len(m.ClientURLs) != 1 || m.ClientURLs[0] != "http://"+c.addrs[m.ID-1] {
			t.Fatalf("member %d's client URLs %v", m.ID, m.ClientURLs)
		}
	}
	add, err := cli.MemberAddAsLearner(ctx, []string{"http://127.0.0.1:1"})
	if err != nil || !add.Member.IsLearner || len(add.Members) != 4 {
		t.Fatalf("member add: %+v %v", add, err)
	}
	if _, err := cli.MemberPromote(ctx, add.Member.ID); !errors.Is(err, rpctypes.ErrMemberLearnerNotReady) {
		t.Fatalf("promote of a learner never started: %v", err)
	}
	if _, err := cli.MemberPromote(ctx, ml.Members[0].ID); !errors.Is(err, rpctypes.ErrMemberNotLearner) {
		t.Fatalf("promote of a voter: %v", err)
	}
	rm, err := cli.MemberRemove(ctx, add.Member.ID)
	if err != nil || len(rm.Members) != 3 {
		t.Fatalf("member remove: %+v %v", rm, err)
	}
	if _, err := cli.MemberRemove(ctx, add.Member.ID); !errors.Is(err, rpctypes.ErrMemberNotFound) {
		t.Fatalf("remove twice: %v", err)
	}

	cli.Put(ctx, "h", "v")
	var hashes []uint32
	for i, a := range c.addrs {
		st, err := cli.Status(ctx, a)
		if err != nil || st.Leader != uint64(lead+1) || st.Header.MemberId != uint64(i+1) || st.RaftTerm == 0 {
			t.Fatalf("status of %s: %+v %v", a, st, err)
		}
		// Wait for the member to apply the put, then hash it.
		for j := 0; j < 100; j++ {
			if g, _ := c.client(a).Get(ctx, "h", clientv3.WithSerializable()); len(g.Kvs) == 1 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		h, err := cli.HashKV(ctx, a, 0)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, h.Hash)
	}
	if hashes[0] != hashes[1] || hashes[1] != hashes[2] {
		t.Fatalf("members' hashes differ: %v", hashes)
	}
	if al, err := cli.AlarmList(ctx); err != nil || len(al.Alarms) != 0 {
		t.Fatalf("alarms: %+v %v", al, err)
	}
	if _, err := cli.Defragment(ctx, c.addrs[0]); err != nil {
		t.Fatal(err)
	}
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	if err != nil || len(b) == 0 {
		t.Fatalf("snapshot: %d bytes, %v", len(b), err)
	}
	to := (lead + 1) % 3
	lc := c.client(c.addrs[lead])
	if _, err := lc.MoveLeader(ctx, uint64(to+1)); err != nil {
		t.Fatal(err)
	}
	if c.leader() != to {
		t.Fatalf("leader is %d after move to %d", c.leader()+1, to+1)
	}
	if as, err := cli.AuthStatus(ctx); err != nil || as.Enabled {
		t.Fatalf("auth status: %+v %v", as, err)
	}
}

// TestEtcdConcurrency runs the etcd client's Mutex, Election and STM
// against the cluster, with a leader failover in the middle.
func TestEtcdConcurrency(t *testing.T) {
	c := newECluster(t)
	ctx := ctxT(t)
	const workers, rounds = 3, 5
	var mu sync.Mutex
	holders, maxHolders := 0, 0
	counter := 0
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cli := c.client()
			sess, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
			if err != nil {
				errc <- err
				return
			}
			defer sess.Close()
			m := concurrency.NewMutex(sess, "/lock")
			for r := 0; r < rounds; r++ {
				if err := m.Lock(ctx); err != nil {
					errc <- err
					return
				}
				mu.Lock()
				holders++
				maxHolders = max(maxHolders, holders)
				counter++
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				mu.Lock()
				holders--
				mu.Unlock()
				if err := m.Unlock(ctx); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	// Move leadership away while the mutex is contended.
	time.Sleep(50 * time.Millisecond)
	lead := c.leader()
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	c.servers[lead].Node().TransferLeadership(tctx, pb.NodeID((lead+1)%3+1))
	cancel()
	wg.Wait()
	for w := 0; w < workers; w++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if maxHolders != 1 || counter != workers*rounds {
		t.Fatalf("mutex: %d holders at once, %d rounds", maxHolders, counter)
	}

	// Election: one campaigns, an observer sees it lead, then a second
	// takes over after the first resigns.
	cli := c.client()
	s1, _ := concurrency.NewSession(cli, concurrency.WithTTL(5))
	s2, _ := concurrency.NewSession(c.client(), concurrency.WithTTL(5))
	e1, e2 := concurrency.NewElection(s1, "/elect"), concurrency.NewElection(s2, "/elect")
	if err := e1.Campaign(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	obs := e2.Observe(ctx)
	if r := <-obs; string(r.Kvs[0].Value) != "one" {
		t.Fatalf("observed %q", r.Kvs[0].Value)
	}
	done := make(chan error, 1)
	go func() { done <- e2.Campaign(ctx, "two") }()
	time.Sleep(50 * time.Millisecond)
	if err := e1.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if l, err := e1.Leader(ctx); err != nil || string(l.Kvs[0].Value) != "two" {
		t.Fatalf("leader after resign: %v %v", l, err)
	}

	// STM: concurrent transfers between two accounts keep the total.
	cli.Put(ctx, "acct/a", "100")
	cli.Put(ctx, "acct/b", "100")
	var swg sync.WaitGroup
	for i := 0; i < 4; i++ {
		swg.Add(1)
		go func() {
			defer swg.Done()
			for j := 0; j < 5; j++ {
				_, err := concurrency.NewSTM(cli, func(stm concurrency.STM) error {
					var a, b int
					fmt.Sscan(stm.Get("acct/a"), &a)
					fmt.Sscan(stm.Get("acct/b"), &b)
					stm.Put("acct/a", fmt.Sprint(a-1))
					stm.Put("acct/b", fmt.Sprint(b+1))
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	swg.Wait()
	ra, _ := cli.Get(ctx, "acct/a")
	rb, _ := cli.Get(ctx, "acct/b")
	if string(ra.Kvs[0].Value) != "80" || string(rb.Kvs[0].Value) != "120" {
		t.Fatalf("STM transfers: a=%s b=%s", ra.Kvs[0].Value, rb.Kvs[0].Value)
	}
}

// TestEtcdWatchFragment reads 4 MB of history through a watch that asks
// for fragments (the raw stream shows them, and the etcd client puts them
// back together) and through one that does not.
func TestEtcdWatchFragment(t *testing.T) {
	c := newECluster(t)
	cli := c.client(c.addrs[c.leader()])
	ctx := ctxT(t)
	val := strings.Repeat("x", 20<<10)
	var first int64
	for i := 0; i < 200; i++ {
		r, err := cli.Put(ctx, fmt.Sprintf("frag/%03d", i), val)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = r.Header.Revision
		}
	}
	rs, err := etcdserverpb.NewKVClient(cli.ActiveConnection()).RangeStream(ctx, &etcdserverpb.RangeRequest{Key: []byte("frag/"), RangeEnd: []byte("frag0")})
	if err != nil {
		t.Fatal(err)
	}
	chunks, keys := 0, 0
	for {
		r, err := rs.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		chunks++
		keys += len(r.RangeResponse.Kvs)
		if r.RangeResponse.Header != nil && r.RangeResponse.Count != 200 {
			t.Fatalf("range stream's last chunk counts %d", r.RangeResponse.Count)
		}
	}
	if chunks < 4 || keys != 200 {
		t.Fatalf("range stream: %d keys in %d chunks", keys, chunks)
	}
	raw, err := etcdserverpb.NewWatchClient(cli.ActiveConnection()).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw.Send(&etcdserverpb.WatchRequest{RequestUnion: &etcdserverpb.WatchRequest_CreateRequest{CreateRequest: &etcdserverpb.WatchCreateRequest{
		Key: []byte("frag/"), RangeEnd: []byte("frag0"), StartRevision: first, Fragment: true}}})
	events, fragments := 0, 0
	for events < 200 {
		r, err := raw.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r.Fragment {
			fragments++
		}
		events += len(r.Events)
	}
	if fragments == 0 {
		t.Fatal("4 MB of events came without a fragment")
	}
	for _, opts := range [][]clientv3.OpOption{{clientv3.WithFragment()}, nil} {
		wctx, cancel := context.WithCancel(ctx)
		wc := cli.Watch(wctx, "frag/", append(opts, clientv3.WithPrefix(), clientv3.WithRev(first))...)
		n := 0
		for n < 200 {
			r := <-wc
			if r.Err() != nil {
				t.Fatal(r.Err())
			}
			n += len(r.Events)
		}
		cancel()
		if n != 200 {
			t.Fatalf("%d events, want 200", n)
		}
	}
}

// TestEtcdNoSpace fills a small state quota through the etcd client: the
// write past it fails with etcd's "database space exceeded", and Alarm
// lists the NOSPACE alarm the members raise.
func TestEtcdNoSpace(t *testing.T) {
	c := newEClusterWith(t, nil, func(cfg *server.Config) { cfg.KV.QuotaBytes = 256 << 10 })
	cli := c.client()
	ctx := ctxT(t)
	val := strings.Repeat("v", 16<<10)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = cli.Put(ctx, fmt.Sprint("big/", i), val)
	}
	if !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("put past the quota: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		al, err := cli.AlarmList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(al.Alarms) > 0 {
			if al.Alarms[0].Alarm != etcdserverpb.AlarmType_NOSPACE {
				t.Fatalf("alarms %v", al.Alarms)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no NOSPACE alarm listed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEtcdKeepAliveStreamFollowsLeader keeps one keep-alive stream open
// on a follower while leadership moves to the third member and then to
// that follower: every renewal is answered with the lease's TTL, and the
// leader of the moment renewed it (its time to live is back near the TTL
// after the lease has aged).
func TestEtcdKeepAliveStreamFollowsLeader(t *testing.T) {
	c := newECluster(t)
	ctx := ctxT(t)
	lead := c.leader()
	f := (lead + 1) % 3
	other := (lead + 2) % 3
	cli := c.client(c.addrs[f])
	const ttl = 5
	g, err := cli.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	st, err := etcdserverpb.NewLeaseClient(cli.ActiveConnection()).LeaseKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	renew := func(when string) {
		t.Helper()
		for i := range 5 {
			if err := st.Send(&etcdserverpb.LeaseKeepAliveRequest{ID: int64(g.ID)}); err != nil {
				t.Fatalf("%s: send %d: %v", when, i, err)
			}
			r, err := st.Recv()
			if err != nil || r.ID != int64(g.ID) || r.TTL != ttl {
				t.Fatalf("%s: keep-alive %d: %+v %v", when, i, r, err)
			}
		}
	}
	aged := func(when string) {
		t.Helper()
		time.Sleep(2200 * time.Millisecond) // the lease ages below its TTL
		renew(when)
		r, err := cli.TimeToLive(ctx, g.ID)
		if err != nil || r.TTL < ttl-1 {
			t.Fatalf("%s: time to live after renewing an aged lease: %+v %v", when, r, err)
		}
	}
	renew("follower of the first leader")
	for _, to := range []int{other, f} {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.servers[c.leader()].Node().TransferLeadership(tctx, pb.NodeID(to+1))
		cancel()
		if err != nil {
			t.Fatalf("transfer to member %d: %v", to+1, err)
		}
		aged(fmt.Sprintf("leader now member %d", to+1))
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
}

// lateLessor answers the first renewal of lease hide as unknown, as a
// leader that has not yet applied the lease's grant would.
type lateLessor struct {
	*server.Server
	hide  int64
	calls atomic.Int32
}

func (l *lateLessor) RenewLease(ctx context.Context, id int64) (int64, bool, error) {
	if id == l.hide && l.calls.Add(1) == 1 {
		return 0, false, nil
	}
	return l.Server.RenewLease(ctx, id)
}

// TestEtcdKeepAliveLooksAgainAfterBarrier: a keep-alive the leader finds
// no lease for is looked up again after a read barrier, so a lease whose
// grant the leader has yet to apply is renewed, not reported gone.
func TestEtcdKeepAliveLooksAgainAfterBarrier(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	pl, _ := net.Listen("tcp", "127.0.0.1:0")
	cl, _ := net.Listen("tcp", "127.0.0.1:0")
	el, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{ID: 1, DataDir: t.TempDir(), PeerListener: pl, ClientListener: cl,
		Cluster:           []node.Member{{ID: 1, PeerAddr: pl.Addr().String()}},
		HeartbeatInterval: 20 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond, Logger: logger}
	s, err := server.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lessor := &lateLessor{Server: s}
	e, err := etcdapi.New(etcdapi.Config{ID: 1, Node: s.Node(), Store: s.Store(), Lessor: lessor, Logger: logger,
		RequestTimeout: 3 * time.Second, ElectionTimeout: cfg.ElectionTimeout})
	if err != nil {
		t.Fatal(err)
	}
	e.Serve(el)
	t.Cleanup(func() { e.Stop(); s.Close() })
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Addr()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := ctxT(t)
	g, err := cli.Grant(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	lessor.hide = int64(g.ID)
	ka, err := cli.KeepAliveOnce(ctx, g.ID)
	if err != nil || ka.TTL != 5 {
		t.Fatalf("keep-alive of a lease the leader first did not find: %+v %v", ka, err)
	}
	if n := lessor.calls.Load(); n != 2 {
		t.Fatalf("renewals asked of the lessor: %d, want 2", n)
	}
}

// TestEtcdMemberUpdate changes a follower's peer URL through another
// follower (forwarded to the leader): MemberList shows the new URL on
// the others, an unknown member, another member's URL and two URLs are
// refused with etcd's errors, and the member restarted to listen on the
// new address is reached there (its old one is gone) and catches up.
func TestEtcdMemberUpdate(t *testing.T) {
	c := newECluster(t)
	lead := c.leader()
	target, via := (lead+1)%3, (lead+2)%3
	cli := c.client(c.addrs[via])
	ctx := ctxT(t)
	id := uint64(target + 1)
	other := c.servers[lead].Node().Status().Members[lead].PeerAddr
	for _, tc := range []struct {
		id   uint64
		urls []string
		want error
	}{
		{99, []string{"http://127.0.0.1:1"}, rpctypes.ErrMemberNotFound},
		{id, []string{"http://" + other}, rpctypes.ErrPeerURLExist},
		{id, []string{"http://127.0.0.1:1", "http://127.0.0.1:2"}, rpctypes.ErrMemberBadURLs},
	} {
		if _, err := cli.MemberUpdate(ctx, tc.id, tc.urls); !errors.Is(err, tc.want) {
			t.Fatalf("update of %d to %v: %v, want %v", tc.id, tc.urls, err, tc.want)
		}
	}
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + nl.Addr().String()
	up, err := cli.MemberUpdate(ctx, id, []string{url})
	if err != nil {
		t.Fatal(err)
	}
	peerURL := func(ms []*etcdserverpb.Member) string {
		for _, m := range ms {
			if m.ID == id && len(m.PeerURLs) == 1 {
				return m.PeerURLs[0]
			}
		}
		return ""
	}
	if got := peerURL(up.Members); got != url {
		t.Fatalf("the update's answer shows member %d at %q, want %q", id, got, url)
	}
	// The others apply it; the member itself hears of it once it is
	// reachable at the new address.
	listShows := func(a string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			ml, err := c.client(a).MemberList(ctx, clientv3.WithSerializable())
			if err == nil && peerURL(ml.Members) == url {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("member list from %s: %v %v, want member %d at %s", a, ml, err, id, url)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	listShows(c.addrs[lead])
	listShows(c.addrs[via])
	c.restart(target, nl)
	put, err := c.client(c.addrs[lead]).Put(ctx, "after-move", "v")
	if err != nil {
		t.Fatal(err)
	}
	moved := c.client(c.addrs[target])
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, err := moved.Get(ctx, "after-move", clientv3.WithSerializable())
		if err == nil && len(g.Kvs) == 1 && g.Kvs[0].ModRevision == put.Header.Revision {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the member restarted at its new peer address never got the put: %v %v", g, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	listShows(c.addrs[target])
}

// TestEtcdTxnRetryAfterCompaction sends one transaction twice with the
// same idempotency key, as a member forwarding a retry does: the second is
// answered from the exactly-once table with the first's read, and once
// compaction has removed the revision that read saw, it is refused as
// compacted rather than answered with an empty range.
func TestEtcdTxnRetryAfterCompaction(t *testing.T) {
	c := newECluster(t)
	cli := c.client()
	ctx := ctxT(t)
	if _, err := cli.Put(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(c.addrs[c.leader()], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kvc := etcdserverpb.NewKVClient(conn)
	req := &etcdserverpb.TxnRequest{
		Compare: []*etcdserverpb.Compare{{Key: []byte("k"), Target: etcdserverpb.Compare_MOD, Result: etcdserverpb.Compare_EQUAL,
			TargetUnion: &etcdserverpb.Compare_ModRevision{ModRevision: 999}}},
		Success: []*etcdserverpb.RequestOp{{Request: &etcdserverpb.RequestOp_RequestPut{RequestPut: &etcdserverpb.PutRequest{Key: []byte("k"), Value: []byte("x")}}}},
		Failure: []*etcdserverpb.RequestOp{{Request: &etcdserverpb.RequestOp_RequestRange{RequestRange: &etcdserverpb.RangeRequest{Key: []byte("k")}}}},
	}
	fctx := metadata.AppendToOutgoingContext(ctx, "raftkv-forwarded", "1", "raftkv-idempotency-key", "retry-after-compaction")
	read := func() (string, error) {
		r, err := kvc.Txn(fctx, req)
		if err != nil {
			return "", err
		}
		kvs := r.Responses[0].GetResponseRange().Kvs
		if r.Succeeded || len(kvs) != 1 {
			return "", fmt.Errorf("answer %v", r)
		}
		return string(kvs[0].Value), nil
	}
	for try := range 2 {
		if v, err := read(); err != nil || v != "v1" {
			t.Fatalf("attempt %d: %q %v, want the failure branch's read of v1", try, v, err)
		}
	}
	p, err := cli.Put(ctx, "k", "v2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, p.Header.Revision); err != nil {
		t.Fatal(err)
	}
	if v, err := read(); !errors.Is(rpctypes.Error(err), rpctypes.ErrCompacted) {
		t.Fatalf("a retry after compaction: %q %v, want %v", v, err, rpctypes.ErrCompacted)
	}
}

// TestEtcdIdempotencyKeyOnlyWhenForwarded checks which writes take an
// entry in the store's exactly-once table: one forwarded by a follower
// does (its retries after an unknown outcome must apply at most once), one
// the leader serves itself does not (at most once, as etcd).
func TestEtcdIdempotencyKeyOnlyWhenForwarded(t *testing.T) {
	c := newECluster(t)
	ctx := ctxT(t)
	l := c.leader()
	store := c.servers[l].Store()
	direct, viaFollower := c.client(c.addrs[l]), c.client(c.addrs[c.follower()])
	before := store.Sessions()
	if _, err := direct.Put(ctx, "a", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Txn(ctx).Then(clientv3.OpPut("b", "1")).Commit(); err != nil {
		t.Fatal(err)
	}
	if got := store.Sessions(); got != before {
		t.Fatalf("writes served by the leader took %d exactly-once entries, want none", got-before)
	}
	if _, err := viaFollower.Put(ctx, "a", "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := viaFollower.Txn(ctx).Then(clientv3.OpPut("b", "2")).Commit(); err != nil {
		t.Fatal(err)
	}
	if got := store.Sessions(); got != before+2 {
		t.Fatalf("forwarded writes took %d exactly-once entries, want 2", got-before)
	}
}
