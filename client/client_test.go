package client

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/node"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/server"
)

// startCluster runs three in-process members over loopback.
func startCluster(t *testing.T) []*server.Server {
	t.Helper()
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
		boot = append(boot, node.Member{ID: pb.NodeID(id), PeerAddr: pl.Addr().String()})
	}
	var out []*server.Server
	for i, l := range ls {
		s, err := server.Start(server.Config{
			ID: uint64(i + 1), DataDir: t.TempDir(), PeerListener: l[0], ClientListener: l[1], Cluster: boot,
			HeartbeatInterval: 20 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
		t.Cleanup(s.Close)
	}
	return out
}

func endpoints(ss []*server.Server) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.ClientAddr())
	}
	return out
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctx(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

// TestClientKV runs every key-value call and checks the typed errors.
func TestClientKV(t *testing.T) {
	ss := startCluster(t)
	c := newClient(t, Config{Endpoints: endpoints(ss)})
	cx := ctx(t, 20*time.Second)
	idx, err := c.Put(cx, "a/b", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := c.Get(cx, "a/b")
	if err != nil || string(kv.Value) != "1" || kv.Rev != idx {
		t.Fatalf("get a/b = %+v, %v (put at %d)", kv, err, idx)
	}
	for _, level := range []string{api.Lease, api.Stale} {
		if _, err := c.Get(cx, "a/b", WithConsistency(level)); err != nil && !(level == api.Stale && IsNotFound(err)) {
			t.Fatalf("get %s: %v", level, err)
		}
	}
	if _, err := c.Put(cx, "a/b", []byte("2"), IfMatch(idx+1)); !IsPreconditionFailed(err) {
		t.Fatalf("put with wrong If-Match: %v", err)
	}
	if _, err := c.Put(cx, "a/b", []byte("2"), IfMatch(idx)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(cx, "a/b", []byte("3"), IfNoneMatch()); !IsPreconditionFailed(err) {
		t.Fatalf("create of an existing key: %v", err)
	}
	if _, err := c.Append(cx, "a/c", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Append(cx, "a/c", []byte("y")); err != nil {
		t.Fatal(err)
	}
	items, more, err := c.List(cx, "a/", 0)
	if err != nil || more || len(items) != 2 || string(items[1].Value) != "xy" {
		t.Fatalf("list a/: %+v more=%v err=%v", items, more, err)
	}
	if _, err := c.Delete(cx, "a/c"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(cx, "a/c"); !IsNotFound(err) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := c.Delete(cx, "a/c"); !IsNotFound(err) {
		t.Fatalf("delete of an absent key: %v", err)
	}
	if _, err := c.Put(cx, strings.Repeat("k", 5000), nil); Code(err) != api.CodeBadKey {
		t.Fatalf("over-long key: %v", err)
	}
	cl, err := c.Cluster(cx)
	if err != nil || cl.Self.Role != api.RoleLeader || len(cl.Members) != 3 {
		t.Fatalf("cluster: %+v %v", cl, err)
	}
}

// TestClientFollowsRedirects shows a client that only knows a follower
// writing through it and learning the leader.
func TestClientFollowsRedirects(t *testing.T) {
	ss := startCluster(t)
	c0 := newClient(t, Config{Endpoints: endpoints(ss)})
	cl, err := c0.Cluster(ctx(t, 10*time.Second))
	for err == nil && leaderAddr(cl) == "" {
		time.Sleep(20 * time.Millisecond)
		cl, err = c0.Cluster(ctx(t, 10*time.Second))
	}
	if err != nil {
		t.Fatal(err)
	}
	var follower *server.Server
	for _, s := range ss {
		if m, _ := cl.Member(cl.Leader); m.ClientAddr != s.ClientAddr() {
			follower = s
		}
	}
	c := newClient(t, Config{Endpoints: []string{follower.ClientAddr()}})
	if _, err := c.Put(ctx(t, 10*time.Second), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if lead, _ := cl.Member(cl.Leader); c.Leader() != "http://"+lead.ClientAddr {
		t.Fatalf("client learned leader %q, want %s", c.Leader(), lead.ClientAddr)
	}
}

func leaderAddr(cl *api.Cluster) string {
	m, _ := cl.Member(cl.Leader)
	return m.ClientAddr
}

// TestClientFailover kills the leader and shows writes continuing on the
// others.
func TestClientFailover(t *testing.T) {
	ss := startCluster(t)
	c := newClient(t, Config{Endpoints: endpoints(ss)})
	cx := ctx(t, 30*time.Second)
	if _, err := c.Put(cx, "k", []byte("1")); err != nil {
		t.Fatal(err)
	}
	lead := c.Leader()
	for _, s := range ss {
		if "http://"+s.ClientAddr() == lead {
			s.Close()
		}
	}
	for i := 0; i < 20; i++ {
		if _, err := c.Append(cx, "log", []byte("x")); err != nil {
			t.Fatalf("append %d after the leader died: %v", i, err)
		}
	}
	kv, err := c.Get(cx, "log")
	if err != nil || string(kv.Value) != strings.Repeat("x", 20) {
		t.Fatalf("log = %q, %v; want 20 x (each append once)", kv.Value, err)
	}
	if c.Leader() == lead {
		t.Fatal("client still names the dead leader")
	}
}

// loseAnswers forwards requests but reports a network error instead of the
// answer for the first n writes: the write reached the server, the client
// does not know.
type loseAnswers struct {
	rt   http.RoundTripper
	left atomic.Int32
}

func (l *loseAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(r)
	if err == nil && r.Method != http.MethodGet && l.left.Add(-1) >= 0 {
		resp.Body.Close()
		return nil, errors.New("connection reset (injected)")
	}
	return resp, err
}

// TestClientRetryAppliesOnce loses the answers of a write's first
// attempts: the retries carry the same Idempotency-Key, so the append is
// applied once.
func TestClientRetryAppliesOnce(t *testing.T) {
	ss := startCluster(t)
	lose := &loseAnswers{rt: http.DefaultTransport}
	c := newClient(t, Config{Endpoints: endpoints(ss), Transport: lose})
	cx := ctx(t, 20*time.Second)
	if _, err := c.Append(cx, "ctr", []byte("x")); err != nil {
		t.Fatal(err)
	}
	lose.left.Store(3)
	if _, err := c.Append(cx, "ctr", []byte("y")); err != nil {
		t.Fatal(err)
	}
	if kv, err := c.Get(cx, "ctr"); err != nil || string(kv.Value) != "xy" {
		t.Fatalf("ctr = %q, %v; want xy", kv.Value, err)
	}
	// Every answer lost until the deadline: the outcome is unknown.
	lose.left.Store(1 << 30)
	_, err := c.Append(ctx(t, 300*time.Millisecond), "ctr", []byte("z"))
	if !IsUnknownOutcome(err) {
		t.Fatalf("append with every answer lost: %v, want unknown outcome", err)
	}
	lose.left.Store(0)
	if kv, err := c.Get(cx, "ctr"); err != nil || string(kv.Value) != "xyz" {
		t.Fatalf("ctr = %q, %v; want xyz (applied once despite the retries)", kv.Value, err)
	}
}

// TestClientNoEndpoint shows a call to nothing failing with ErrNoEndpoint
// (definitely not applied) by its deadline.
func TestClientNoEndpoint(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	c := newClient(t, Config{Endpoints: []string{addr}})
	start := time.Now()
	_, err := c.Put(ctx(t, 300*time.Millisecond), "k", []byte("v"))
	if !errors.Is(err, ErrNoEndpoint) || IsUnknownOutcome(err) {
		t.Fatalf("put to a closed port: %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("gave up after %v, deadline was 300ms", time.Since(start))
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without endpoints succeeded")
	}
}
