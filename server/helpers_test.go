package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
	pb "github.com/raftkv/raftkv/raftpb"
)

// testValueLimit keeps the 413 tests cheap; the limit logic does not
// depend on its size.
const testValueLimit = 64 << 10

// tcluster is a real cluster of in-process members over loopback.
type tcluster struct {
	t       testing.TB
	servers map[uint64]*Server
	boot    []node.Member
	dirs    map[uint64]string
	addrs   map[uint64][2]string // peer, client
	tune    func(*Config)
	hc      *http.Client
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newCluster(t testing.TB, n int, tune func(*Config)) *tcluster {
	t.Helper()
	c := &tcluster{t: t, servers: map[uint64]*Server{}, dirs: map[uint64]string{},
		addrs: map[uint64][2]string{}, tune: tune,
		hc: &http.Client{
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Timeout:       20 * time.Second,
		}}
	ls := map[uint64][2]net.Listener{}
	for id := uint64(1); id <= uint64(n); id++ {
		pl, cl := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
		ls[id] = [2]net.Listener{pl, cl}
		c.addrs[id] = [2]string{pl.Addr().String(), cl.Addr().String()}
		c.dirs[id] = t.TempDir()
		c.boot = append(c.boot, node.Member{ID: pb.NodeID(id), PeerAddr: pl.Addr().String()})
	}
	for id := uint64(1); id <= uint64(n); id++ {
		c.startWith(id, ls[id][0], ls[id][1], false)
	}
	t.Cleanup(func() {
		for _, s := range c.servers {
			s.Close()
		}
		c.hc.CloseIdleConnections()
	})
	return c
}

func listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	var err error
	for i := 0; i < 50; i++ {
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("listen %s: %v", addr, err)
	return nil
}

func (c *tcluster) config(id uint64, pl, cl net.Listener, join bool) Config {
	cfg := Config{
		ID: id, DataDir: c.dirs[id], PeerListener: pl, ClientListener: cl,
		Cluster: c.boot, Join: join,
		HeartbeatInterval: 20 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		KV: kv.Config{MaxValueBytes: testValueLimit}, Logger: quietLogger(),
	}
	if c.tune != nil {
		c.tune(&cfg)
	}
	return cfg
}

func (c *tcluster) startWith(id uint64, pl, cl net.Listener, join bool) *Server {
	c.t.Helper()
	s, err := Start(c.config(id, pl, cl, join))
	if err != nil {
		c.t.Fatalf("start member %d: %v", id, err)
	}
	c.servers[id] = s
	return s
}

// restart starts a stopped member again on its old addresses and data dir.
func (c *tcluster) restart(id uint64) *Server {
	a := c.addrs[id]
	return c.startWith(id, listen(c.t, a[0]), listen(c.t, a[1]), false)
}

// kill stops a member at once.
func (c *tcluster) kill(id uint64) {
	c.servers[id].Close()
	delete(c.servers, id)
}

// leader waits for a leader that every running member knows, with every
// running member's client address published (so followers can redirect to
// it), and that has committed everything it appended: addresses are
// published by configuration changes (they take effect when appended), and
// an admin change racing one would be refused with 409.
func (c *tcluster) leader() *Server {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range c.servers {
			st := s.node.Status()
			if st.Role.String() == api.RoleLeader && selfAddr(st, s.cfg.ID) == s.ClientAddr() && st.Commit == st.LastIndex {
				if c.allKnow(s) {
					return s
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("no leader with a published client address within 10s")
	return nil
}

// allKnow reports whether every running member knows lead as leader and
// the client address of every running member.
func (c *tcluster) allKnow(lead *Server) bool {
	for _, s := range c.servers {
		st := s.node.Status()
		if uint64(st.Lead) != lead.cfg.ID {
			return false
		}
		for _, o := range c.servers {
			if selfAddr(st, o.cfg.ID) != o.ClientAddr() {
				return false
			}
		}
	}
	return true
}

func (c *tcluster) follower() *Server {
	lead := c.leader()
	for _, s := range c.servers {
		if s != lead {
			return s
		}
	}
	c.t.Fatal("no follower")
	return nil
}

// do sends one request without following redirects.
func (c *tcluster) do(method, url string, body []byte, hdr ...string) *http.Response {
	c.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp
}

func url(s *Server, path string) string { return "http://" + s.ClientAddr() + path }

// expect checks the status and, for errors, the code; it returns the body.
func expect(t testing.TB, resp *http.Response, status int, code string) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", resp.Request.Method, resp.Request.URL, resp.StatusCode, status, b)
	}
	if resp.Header.Get(api.HeaderTerm) == "" || resp.Header.Get(api.HeaderLeader) == "" {
		t.Fatalf("%s %s: missing X-Raft-Term / X-Raft-Leader", resp.Request.Method, resp.Request.URL)
	}
	if code != "" {
		var e api.ErrorBody
		if err := json.Unmarshal(b, &e); err != nil || e.Code != code || e.Error == "" {
			t.Fatalf("%s %s: body %s, want code %q", resp.Request.Method, resp.Request.URL, b, code)
		}
	}
	return b
}

func decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

func put(c *tcluster, s *Server, key, value string, hdr ...string) *http.Response {
	return c.do(http.MethodPut, url(s, api.PathKV+key), []byte(value), hdr...)
}

func etag(rev uint64) string { return api.FormatETag(rev) }

// waitUntil polls cond until it holds; the test fails if it does not
// within d. Tests wait on the condition they need, never on a sleep.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
