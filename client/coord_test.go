package client

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/raftkv/raftkv/node"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/server"
)

// restartable is a three-member cluster whose members can be stopped and
// started again on the same addresses and data.
type restartable struct {
	t    *testing.T
	cfgs []server.Config
	ss   []*server.Server
	addr [][2]string
}

func startRestartable(t *testing.T) *restartable {
	rc := &restartable{t: t}
	var boot []node.Member
	var ls [][2]net.Listener
	for id := 1; id <= 3; id++ {
		pl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, [2]net.Listener{pl, cl})
		rc.addr = append(rc.addr, [2]string{pl.Addr().String(), cl.Addr().String()})
		boot = append(boot, node.Member{ID: pb.NodeID(id), PeerAddr: pl.Addr().String()})
	}
	for i, l := range ls {
		cfg := server.Config{ID: uint64(i + 1), DataDir: t.TempDir(), Cluster: boot,
			HeartbeatInterval: 20 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		rc.cfgs = append(rc.cfgs, cfg)
		cfg.PeerListener, cfg.ClientListener = l[0], l[1]
		s, err := server.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		rc.ss = append(rc.ss, s)
	}
	t.Cleanup(func() {
		for _, s := range rc.ss {
			if s != nil {
				s.Close()
			}
		}
	})
	return rc
}

func relisten(t *testing.T, addr string) net.Listener {
	for range 100 {
		if l, err := net.Listen("tcp", addr); err == nil {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("cannot listen on %s again", addr)
	return nil
}

// restartMembers stops each member in turn, runs between while it is
// down, and starts it again.
func restartMembers(t *testing.T, rc *restartable, between func()) {
	for i := range rc.ss {
		rc.ss[i].Close()
		rc.ss[i] = nil
		between()
		cfg := rc.cfgs[i]
		cfg.PeerListener, cfg.ClientListener = relisten(t, rc.addr[i][0]), relisten(t, rc.addr[i][1])
		s, err := server.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		rc.ss[i] = s
	}
}

// TestClientTxnRangeCompact runs the coordination calls end to end:
// optimistic concurrency over two keys, ranges at past revisions, a range
// delete, compaction and its error.
func TestClientTxnRangeCompact(t *testing.T) {
	ss := startCluster(t)
	c := newClient(t, Config{Endpoints: endpoints(ss)})
	cx := ctx(t, 20*time.Second)
	r, err := c.Txn(cx, []Cmp{Compare(CreateRevision("acct/a"), "=", 0), Compare(CreateRevision("acct/b"), "=", 0)},
		[]Op{OpPut("acct/a", []byte("10")), OpPut("acct/b", []byte("\xff\x00"))}, nil)
	if err != nil || !r.Succeeded {
		t.Fatalf("create: %+v %v", r, err)
	}
	created := r.Revision
	// Move 5 from a to b only if neither changed since it was read.
	r, err = c.Txn(cx, []Cmp{Compare(ModRevision("acct/a"), "=", created), Compare(ModRevision("acct/b"), "=", created)},
		[]Op{OpPut("acct/a", []byte("5")), OpPut("acct/b", []byte("5")), OpGet("acct/", WithPrefix())},
		[]Op{OpGet("acct/", WithPrefix())})
	if err != nil || !r.Succeeded || r.Revision != created+1 || len(r.Results[2].Range.KVs) != 2 {
		t.Fatalf("transfer: %+v %v", r, err)
	}
	old, err := c.Range(cx, "acct/", []OpOption{WithPrefix(), WithRev(created)})
	if err != nil || len(old.KVs) != 2 || string(old.KVs[1].Value) != "\xff\x00" || old.KVs[0].Version != 1 {
		t.Fatalf("range at %d: %+v %v", created, old, err)
	}
	n, prev, _, err := c.DeleteRange(cx, "acct/", WithPrefix(), WithPrevKV())
	if err != nil || n != 2 || len(prev) != 2 {
		t.Fatalf("delete range: %d %+v %v", n, prev, err)
	}
	if err := c.Compact(cx, created+1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Range(cx, "acct/", []OpOption{WithPrefix(), WithRev(created)}); Code(err) != "compacted" {
		t.Fatalf("range below the compaction: %v", err)
	}
}

// TestClientWatchResumesAcrossMemberRestarts watches a prefix while every
// member in turn is stopped and started again, with writes in between:
// the watch reconnects by itself and delivers each write once, in order.
func TestClientWatchResumesAcrossMemberRestarts(t *testing.T) {
	rc := startRestartable(t)
	c := newClient(t, Config{Endpoints: endpoints(rc.ss), RequestTimeout: 20 * time.Second})
	cx := ctx(t, 60*time.Second)
	w := c.Watch(cx, "w/", WithWatchPrefix(), WithWatchRev(1), WithProgressInterval(50*time.Millisecond))
	var want []string
	write := func(n int) {
		for range n {
			v := fmt.Sprint(len(want))
			if _, err := c.Put(cx, "w/k", []byte(v)); err != nil {
				t.Fatal(err)
			}
			want = append(want, v)
		}
	}
	write(5)
	restartMembers(t, rc, func() { write(5) })
	write(5)
	var got []string
	var last int64
	for len(got) < len(want) {
		select {
		case wr, ok := <-w:
			if !ok || wr.Err != nil {
				t.Fatalf("watch ended: %+v after %v", wr, got)
			}
			for _, e := range wr.Events {
				if e.KV.ModRevision <= last {
					t.Fatalf("event at %d after %d", e.KV.ModRevision, last)
				}
				last = e.KV.ModRevision
				got = append(got, string(e.KV.Value))
			}
		case <-cx.Done():
			t.Fatalf("saw %v of %v", got, want)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("watch saw %v, wrote %v", got, want)
	}
}

// TestClientLeaseKeepAlive keeps a short lease alive in the background
// past its TTL, then lets it go: its key lives exactly as long.
func TestClientLeaseKeepAlive(t *testing.T) {
	ss := startCluster(t)
	c := newClient(t, Config{Endpoints: endpoints(ss)})
	cx := ctx(t, 30*time.Second)
	id, ttl, err := c.Grant(cx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Txn(cx, nil, []Op{OpPut("svc/me", []byte("up"), WithLease(id))}, nil); err != nil {
		t.Fatal(err)
	}
	kctx, stop := context.WithCancel(cx)
	if _, err := c.KeepAlive(kctx, id); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Duration(ttl)*time.Second + time.Second)
	if _, err := c.Get(cx, "svc/me"); err != nil {
		t.Fatalf("key of a lease kept alive: %v", err)
	}
	st, err := c.TimeToLive(cx, id, true)
	if err != nil || st.GrantedTTL != ttl || len(st.Keys) != 1 {
		t.Fatalf("time to live %+v %v", st, err)
	}
	stop()
	deadline := time.Now().Add(time.Duration(ttl)*time.Second + 3*time.Second)
	for {
		_, err := c.Get(cx, "svc/me")
		if IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("key still there after the lease's TTL: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ids, err := c.Leases(cx); err != nil || len(ids) != 0 {
		t.Fatalf("leases after expiry: %v %v", ids, err)
	}
	if _, err := c.KeepAliveOnce(cx, id); !IsLeaseNotFound(err) {
		t.Fatalf("keep-alive of an expired lease: %v", err)
	}
}
