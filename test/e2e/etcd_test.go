package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestEtcdListener runs three `raftkv server` processes with
// --listen-etcd (one of them given it through RAFTKV_LISTEN_ETCD instead)
// and drives them with the etcd client: a put and a linearizable get, then
// the leader's process is killed and the client goes on with the others.
func TestEtcdListener(t *testing.T) {
	c := &cluster{t: t, procs: map[uint64]*proc{}}
	var spec []string
	etcdAddrs := map[uint64]string{}
	for id := uint64(1); id <= 3; id++ {
		p := c.add(id)
		spec = append(spec, p.peerSpec())
		etcdAddrs[id] = freeAddr(t)
	}
	c.spec = strings.Join(spec, ",")
	t.Cleanup(func() {
		for _, p := range c.procs {
			p.kill()
		}
		if t.Failed() {
			for id, p := range c.procs {
				t.Logf("member %d log tail:\n%s", id, tail(p.logs.String(), 3000))
			}
		}
	})
	for id := uint64(1); id <= 3; id++ {
		if id == 3 {
			t.Setenv("RAFTKV_LISTEN_ETCD", etcdAddrs[id])
			c.start(id, "--cluster", c.spec)
			continue
		}
		c.start(id, "--cluster", c.spec, "--listen-etcd", etcdAddrs[id])
	}
	eps := []string{etcdAddrs[1], etcdAddrs[2], etcdAddrs[3]}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 10; i++ {
		if _, err := cli.Put(ctx, fmt.Sprint("k", i), "v"); err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	if g, err := cli.Get(ctx, "k", clientv3.WithPrefix()); err != nil || g.Count != 10 {
		t.Fatalf("get: %+v %v", g, err)
	}
	st, err := cli.Status(ctx, etcdAddrs[3])
	if err != nil || st.Header.MemberId != 3 || st.Leader == 0 {
		t.Fatalf("status of the member configured from the environment: %+v %v", st, err)
	}
	for id, p := range c.procs {
		if !p.running() {
			t.Fatalf("member %d is not running before the leader is killed: %v", id, p.exitErr)
		}
	}
	lead := st.Leader
	c.procs[lead].kill()
	// A put in flight to the killed member fails as the connection breaks
	// (the etcd client does not retry writes), and one sent while the
	// election outlasts the member's retry window gets etcd's "no leader":
	// both are Unavailable, and the same put again lands.
	for i := 10; i < 20; i++ {
		if _, err := cli.Put(ctx, fmt.Sprint("k", i), "v"); err != nil {
			if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
				t.Fatalf("put after the leader's process died: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
			i--
		}
	}
	if g, err := cli.Get(ctx, "k", clientv3.WithPrefix()); err != nil || g.Count != 20 {
		t.Fatalf("get after the failover: %+v %v", g, err)
	}
}
