//go:build cluster

package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
)

// Binaries built once by TestMain: the product, and its powerloss build.
var (
	serverBin    string
	powerLossBin string
	resultsRoot  string
)

// Timing of every member. Generous for a loaded 2-core box.
const (
	heartbeat       = "50ms"
	electionTimeout = "500ms"
	exitWaitMax     = 10 * time.Second
)

type options struct {
	members         int // initial voters, ids 1..members
	spares          int // namespaces for members added later
	powerLoss       bool
	snapshotEntries int
}

// cluster is a set of `raftkv server` processes, each in its namespace.
type cluster struct {
	t       testing.TB
	opts    options
	nw      *network
	dir     string // results: logs, data, histories
	hc      *http.Client
	mu      sync.Mutex
	members map[int]*member
	mon     *monitor
}

type member struct {
	id      int
	c       *cluster
	ns      netNS
	dataDir string
	logPath string
	proxy   *proxy

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	paused  bool
	removed bool // removed from the configuration: no restarts, no clients
	gen     int  // starts so far
}

func (m *member) isRemoved() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.removed
}

func (m *member) started() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gen > 0
}

func (m *member) clientAddr() string { return fmt.Sprintf("%s:%d", memberIP(m.id), clientPort) }
func (m *member) peerAddr() string   { return fmt.Sprintf("%s:%d", memberIP(m.id), proxyPort) }

func newCluster(t testing.TB, opts options) *cluster {
	t.Helper()
	if opts.snapshotEntries == 0 {
		opts.snapshotEntries = 2000
	}
	dir := filepath.Join(resultsRoot, strings.ReplaceAll(t.Name(), "/", "_"))
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	nw, err := newNetwork()
	if err != nil {
		t.Fatalf("network: %v", err)
	}
	c := &cluster{t: t, opts: opts, nw: nw, dir: dir, members: map[int]*member{}}
	c.hc = &http.Client{Transport: &http.Transport{
		DialContext:         nw.hub.dial,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     30 * time.Second,
	}}
	t.Cleanup(c.close)
	for id := 1; id <= opts.members+opts.spares; id++ {
		if err := c.prepare(id); err != nil {
			t.Fatalf("member %d namespace: %v", id, err)
		}
	}
	var spec []string
	for id := 1; id <= opts.members; id++ {
		spec = append(spec, fmt.Sprintf("%d=%s", id, c.members[id].peerAddr()))
	}
	for id := 1; id <= opts.members; id++ {
		c.members[id].start("--cluster", strings.Join(spec, ","))
	}
	c.mon = startMonitor(c)
	return c
}

// prepare makes member id's namespace, directories and proxy.
func (c *cluster) prepare(id int) error {
	if err := c.nw.addMember(id); err != nil {
		return err
	}
	m := &member{id: id, c: c, ns: c.nw.members[id],
		dataDir: filepath.Join(c.dir, "data", fmt.Sprint(id)),
		logPath: filepath.Join(c.dir, fmt.Sprintf("member-%d.log", id))}
	p, err := startProxy(m.ns, m.peerAddr(), fmt.Sprintf("127.0.0.1:%d", peerPort))
	if err != nil {
		return err
	}
	m.proxy = p
	c.mu.Lock()
	c.members[id] = m
	c.mu.Unlock()
	return nil
}

func (c *cluster) close() {
	if c.mon != nil {
		c.mon.stop()
	}
	for _, m := range c.all() {
		m.kill()
		m.proxy.close()
	}
	c.nw.destroy()
	c.hc.CloseIdleConnections()
	if c.t.Failed() {
		fmt.Printf("results of %s (member logs, histories): %s\n", c.t.Name(), c.dir)
		c.t.Logf("results (member logs, histories): %s", c.dir)
		return
	}
	if os.Getenv("RAFTKV_KEEP") == "" {
		os.RemoveAll(filepath.Join(c.dir, "data"))
	}
}

// all returns the prepared members in id order.
func (c *cluster) all() []*member {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*member, 0, len(c.members))
	for _, m := range c.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func (c *cluster) member(id int) *member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[id]
}

// running returns the members whose process is up.
func (c *cluster) running() []*member {
	var out []*member
	for _, m := range c.all() {
		if m.running() {
			out = append(out, m)
		}
	}
	return out
}

// start runs the member's process with extra flags (--cluster or --join;
// none for a restart).
func (m *member) start(extra ...string) {
	m.c.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil && !m.exitedLocked() {
		m.c.t.Fatalf("member %d is already running", m.id)
	}
	bin := serverBin
	if m.c.opts.powerLoss {
		bin = powerLossBin
	}
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		m.c.t.Fatal(err)
	}
	m.gen++
	fmt.Fprintf(logf, "=== test harness: start %d of member %d at %s with %v\n", m.gen, m.id, time.Now().Format(time.RFC3339Nano), extra)
	args := append([]string{"netns", "exec", string(m.ns), bin, "server",
		"--id", fmt.Sprint(m.id), "--data-dir", m.dataDir,
		"--listen-peer", fmt.Sprintf("127.0.0.1:%d", peerPort), "--advertise-peer", m.peerAddr(),
		"--listen-client", m.clientAddr(), "--listen-etcd", m.etcdAddr(),
		"--heartbeat-interval", heartbeat, "--election-timeout", electionTimeout,
		"--snapshot-entries", fmt.Sprint(m.c.opts.snapshotEntries),
		"--log-level", "info",
	}, extra...)
	cmd := exec.Command("ip", args...) // ip netns exec execs the server: same pid
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		m.c.t.Fatalf("starting member %d: %v", m.id, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(exited)
	}()
	m.cmd, m.exited, m.paused = cmd, exited, false
}

func (m *member) exitedLocked() bool {
	select {
	case <-m.exited:
		return true
	default:
		return false
	}
}

func (m *member) running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil && !m.exitedLocked()
}

// signal sends sig and, for a fatal one, waits for the exit.
func (m *member) signal(sig syscall.Signal) {
	m.mu.Lock()
	cmd, exited, paused := m.cmd, m.exited, m.paused
	if cmd == nil || m.exitedLocked() {
		m.mu.Unlock()
		return
	}
	if paused && sig != syscall.SIGSTOP {
		cmd.Process.Signal(syscall.SIGCONT)
		m.paused = false
	}
	switch sig {
	case syscall.SIGSTOP:
		m.paused = true
	case syscall.SIGCONT:
		m.paused = false
	}
	cmd.Process.Signal(sig)
	m.mu.Unlock()
	if sig == syscall.SIGSTOP || sig == syscall.SIGCONT {
		return
	}
	select {
	case <-exited:
	case <-time.After(exitWaitMax):
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
}

func (m *member) kill() { m.signal(syscall.SIGKILL) }

// powerLoss makes a powerloss build drop its unsynced writes and exit.
func (m *member) powerLoss() {
	if !m.c.opts.powerLoss {
		m.c.t.Fatal("powerLoss needs options.powerLoss")
	}
	m.signal(syscall.SIGUSR1)
}

func (m *member) pause()  { m.signal(syscall.SIGSTOP) }
func (m *member) resume() { m.signal(syscall.SIGCONT) }

// HTTP helpers, from the hub namespace.

func (c *cluster) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, v)
}

// sendJSON sends an admin request to the member at addr (following
// redirects) and returns the status and body.
func (c *cluster) sendJSON(ctx context.Context, method, addr, path string, body any) (int, string, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), nil
}

func (c *cluster) clusterView(ctx context.Context, m *member) (*api.Cluster, error) {
	var v api.Cluster
	if err := c.getJSON(ctx, "http://"+m.clientAddr()+api.PathCluster, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// leader waits until the running members that answer agree on one
// leader, which is running and has published its client address.
func (c *cluster) leader(within time.Duration) (*member, error) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if m := c.agreedLeader(); m != nil {
			return m, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("no agreed leader within %v", within)
}

func (c *cluster) agreedLeader() *member {
	var lead uint64
	for _, m := range c.running() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		v, err := c.clusterView(ctx, m)
		cancel()
		if err != nil {
			continue // paused or cut off: it does not vote here
		}
		if v.Self.Role == api.RoleRemoved || v.Self.Role == api.RoleLearner {
			continue
		}
		if v.Leader == 0 || (lead != 0 && v.Leader != lead) {
			return nil
		}
		if mm, _ := v.Member(v.Leader); mm.ClientAddr == "" {
			return nil
		}
		lead = v.Leader
	}
	if m := c.member(int(lead)); m != nil && m.running() {
		return m
	}
	return nil
}

// mustLeader is leader() that fails the test.
func (c *cluster) mustLeader() *member {
	c.t.Helper()
	m, err := c.leader(30 * time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}
