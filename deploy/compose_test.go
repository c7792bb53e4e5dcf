// Package deploy_test runs the container image and the compose file as an
// operator would: build the static binary, build the image FROM scratch,
// start three members with docker-compose, and put them through a member
// stopping and coming back. It is skipped when no Docker engine answers,
// and fails then when CI is set.
package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/freeport"
)

// composeCmd finds docker-compose (v1) or the `docker compose` plugin, or
// skips the test when neither, or no engine, is there; when CI is set a
// missing prerequisite fails it instead (.ci/run installs docker-compose,
// and a test that silently did not run would pass unseen).
func composeCmd(t *testing.T) []string {
	t.Helper()
	if os.Getenv("RAFTKV_SKIP_DOCKER") != "" {
		t.Skip("RAFTKV_SKIP_DOCKER is set")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		missing(t, "no docker CLI")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info").CombinedOutput(); err != nil {
		missing(t, fmt.Sprintf("no Docker engine answers (docker info: %v)\n%s", err, lastLine(out)))
	}
	if err := exec.Command("docker", "compose", "version").Run(); err == nil {
		return []string{"docker", "compose"}
	}
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}
	}
	missing(t, "neither `docker compose` nor docker-compose is installed (apt-get install -y docker-compose)")
	return nil
}

// missing skips the test, or fails it when CI is set.
func missing(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal("CI is set, but the container test cannot run: " + why)
	}
	t.Skip(why + ": skipping the container test")
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

type composeEnv struct {
	t       *testing.T
	cmd     []string
	dir     string
	project string
	env     []string
	ports   map[uint64]int // member id -> host port of its HTTP API
	hc      *http.Client
}

func (c *composeEnv) run(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	full := append(append(c.cmd[1:], "-p", c.project, "-f", filepath.Join(c.dir, "compose.yaml")), args...)
	cmd := exec.CommandContext(ctx, c.cmd[0], full...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), c.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("%s %v: %v\n%s", c.cmd, args, err, out)
	}
	return string(out)
}

// TestCompose shows that the image builds without pulling anything, that
// the compose cluster elects a leader and takes writes, that it keeps
// taking writes with its leader's container stopped, and that the stopped
// member, started again, recovers from its volume and catches up.
func TestCompose(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the container test builds an image and runs three containers")
	}
	cmd := composeCmd(t)
	dir := t.TempDir()
	for _, f := range []string{"Dockerfile", "compose.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "raftkv"), "../cmd/raftkv")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the static binary: %v\n%s", err, out)
	}

	tag := fmt.Sprintf("raftkv:composetest-%d", os.Getpid())
	c := &composeEnv{t: t, cmd: cmd, dir: dir, project: fmt.Sprintf("raftkvtest%d", os.Getpid()),
		ports: map[uint64]int{}, hc: &http.Client{Timeout: 5 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	c.env = append(c.env, "RAFTKV_IMAGE="+tag)
	for id := uint64(1); id <= 3; id++ {
		c.ports[id] = freePort(t)
		c.env = append(c.env, fmt.Sprintf("RAFTKV%d_CLIENT_PORT=%d", id, c.ports[id]))
	}
	t.Cleanup(func() {
		c.run("down", "-v", "--remove-orphans", "-t", "5")
		exec.Command("docker", "rmi", "-f", tag).Run()
	})
	c.run("up", "-d", "--build")

	lead := c.leader(60 * time.Second)
	for i := 0; i < 10; i++ {
		c.put(fmt.Sprintf("k%02d", i), fmt.Sprintf("v%d", i))
	}
	c.run("stop", "-t", "10", service(lead))
	t.Logf("stopped member %d, the leader", lead)
	for i := 10; i < 20; i++ {
		c.put(fmt.Sprintf("k%02d", i), fmt.Sprintf("v%d", i))
	}
	if l := c.leader(30 * time.Second); l == lead {
		t.Fatalf("member %d is stopped and still leader", lead)
	}
	c.run("start", service(lead))
	c.waitHealthy(service(lead), 90*time.Second)
	// Its own state, read without asking the leader, catches up.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < 20; i++ {
		key, want := fmt.Sprintf("k%02d", i), fmt.Sprintf("v%d", i)
		for {
			got, ok := c.getStale(lead, key)
			if ok && got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("restarted member %d: %s = %q (found %v), want %q", lead, key, got, ok, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func service(id uint64) string { return fmt.Sprintf("raftkv%d", id) }

func freePort(t *testing.T) int {
	p, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (c *composeEnv) url(id uint64, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", c.ports[id], path)
}

// leader asks the members until one names a leader that answers as leader.
func (c *composeEnv) leader(within time.Duration) uint64 {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for id := range c.ports {
			var cl struct {
				Leader uint64 `json:"leader"`
				Self   struct {
					Role string `json:"role"`
				} `json:"self"`
			}
			resp, err := c.hc.Get(c.url(id, "/v1/cluster"))
			if err != nil {
				continue
			}
			err = json.NewDecoder(resp.Body).Decode(&cl)
			resp.Body.Close()
			if err == nil && cl.Self.Role == "leader" {
				return id
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	c.t.Fatalf("no leader within %v", within)
	return 0
}

// put writes through whichever member leads, retrying while leadership
// moves. Each write carries an idempotency key, so a retry applies once.
func (c *composeEnv) put(key, value string) {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		lead := c.leader(time.Until(deadline))
		req, _ := http.NewRequest(http.MethodPut, c.url(lead, "/v1/kv/"+key), bytes.NewReader([]byte(value)))
		req.Header.Set("Idempotency-Key", "compose-test-"+key)
		resp, err := c.hc.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%s %s", resp.Status, b)
		} else {
			last = err.Error()
		}
		time.Sleep(250 * time.Millisecond)
	}
	c.t.Fatalf("put %s: no success within 60s; last: %s", key, last)
}

func (c *composeEnv) getStale(id uint64, key string) (string, bool) {
	resp, err := c.hc.Get(c.url(id, "/v1/kv/"+key+"?consistency=stale"))
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode == http.StatusOK
}

// waitHealthy waits for Docker's health check (`raftkv health` inside the
// container) to pass.
func (c *composeEnv) waitHealthy(svc string, within time.Duration) {
	c.t.Helper()
	id := strings.TrimSpace(c.run("ps", "-q", svc))
	deadline := time.Now().Add(within)
	status := ""
	for time.Now().Before(deadline) {
		out, err := exec.Command("docker", "inspect", "-f", "{{.State.Health.Status}}", id).Output()
		if status = strings.TrimSpace(string(out)); err == nil && status == "healthy" {
			return
		}
		time.Sleep(time.Second)
	}
	c.t.Fatalf("%s not healthy within %v (status %q)", svc, within, status)
}
