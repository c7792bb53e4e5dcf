package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/freeport"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "raftkv-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "raftkv")
	build := exec.Command("go", "build", "-o", binary, "github.com/raftkv/raftkv/cmd/raftkv")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building raftkv:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one `raftkv server` process.
type proc struct {
	id         uint64
	dir        string
	peer, addr string // peer and client addresses
	cmd        *exec.Cmd
	logs       *syncBuffer
	exited     chan struct{}
	exitErr    error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type cluster struct {
	t     *testing.T
	procs map[uint64]*proc
	spec  string // --cluster
}

// freeAddr finds a loopback port for a server process to bind later.
func freeAddr(t *testing.T) string {
	t.Helper()
	a, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newCluster(t *testing.T, n int) *cluster { return newClusterWith(t, n) }

// newClusterWith starts n members with extra flags (which override the
// short test timers).
func newClusterWith(t *testing.T, n int, extra ...string) *cluster {
	c := &cluster{t: t, procs: map[uint64]*proc{}}
	var spec []string
	for id := uint64(1); id <= uint64(n); id++ {
		p := &proc{id: id, dir: t.TempDir(), peer: freeAddr(t), addr: freeAddr(t)}
		c.procs[id] = p
		spec = append(spec, fmt.Sprintf("%d=%s", id, p.peer))
	}
	c.spec = strings.Join(spec, ",")
	for id := uint64(1); id <= uint64(n); id++ {
		c.start(id, append([]string{"--cluster", c.spec}, extra...)...)
	}
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
	return c
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// add makes a new member's addresses without starting it.
func (c *cluster) add(id uint64) *proc {
	p := &proc{id: id, dir: c.t.TempDir(), peer: freeAddr(c.t), addr: freeAddr(c.t)}
	c.procs[id] = p
	return p
}

func (p *proc) peerSpec() string { return fmt.Sprintf("%d=%s", p.id, p.peer) }

func (c *cluster) start(id uint64, extra ...string) *proc {
	c.t.Helper()
	p := c.procs[id]
	args := append([]string{"server",
		"--id", fmt.Sprint(id), "--data-dir", p.dir,
		"--listen-peer", p.peer, "--listen-client", p.addr,
		"--heartbeat-interval", "20ms", "--election-timeout", "200ms",
		"--log-level", "info",
	}, extra...)
	p.logs = &syncBuffer{}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.exited = make(chan struct{})
	if err := p.cmd.Start(); err != nil {
		c.t.Fatalf("starting member %d: %v", id, err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.exited)
	}()
	return p
}

func (p *proc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to go.
func (p *proc) kill() {
	if p.running() {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
}

// terminate sends SIGTERM and returns the exit code (-1 on timeout).
func (p *proc) terminate(d time.Duration) int {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		return -1
	}
}

func (c *cluster) endpoints() []string {
	var out []string
	for _, p := range c.procs {
		if p.running() {
			out = append(out, p.addr)
		}
	}
	return out
}

func (c *cluster) client() *client.Client {
	cl, err := client.New(client.Config{Endpoints: c.endpoints()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// leader waits until a running member leads, every running member knows
// it and lists every running member's client address; it returns the
// leader's id.
func (c *cluster) leader() uint64 {
	c.t.Helper()
	cl := c.client()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if id := c.agreedLeader(cl); id != 0 {
			return id
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatal("no agreed leader within 15s")
	return 0
}

func (c *cluster) agreedLeader(cl *client.Client) uint64 {
	var lead uint64
	for _, p := range c.procs {
		if !p.running() {
			continue
		}
		v, err := cl.ClusterAt(within(c.t, time.Second), p.addr)
		if err != nil || v.Leader == 0 || (lead != 0 && v.Leader != lead) {
			return 0
		}
		// Every member publishes its client address: wait for all of
		// them, so that an admin change is not refused (409) for racing a
		// publication.
		for _, o := range c.procs {
			if m, ok := v.Member(o.id); ok && o.running() && m.ClientAddr != o.addr {
				return 0
			}
		}
		if m, _ := v.Member(v.Leader); m.ClientAddr == "" {
			return 0
		}
		lead = v.Leader
	}
	if p := c.procs[lead]; p == nil || !p.running() {
		return 0
	}
	return lead
}

func (c *cluster) follower(lead uint64) *proc {
	for id, p := range c.procs {
		if id != lead && p.running() {
			return p
		}
	}
	c.t.Fatal("no running follower")
	return nil
}
