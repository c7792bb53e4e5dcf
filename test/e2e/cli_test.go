package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/raftkv/raftkv/client"
)

// raftkv runs a client verb against endpoints and returns its stdout.
func raftkv(t *testing.T, endpoints []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "RAFTKV_ENDPOINTS="+strings.Join(endpoints, ","))
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("raftkv %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return string(out)
}

// TestDevAndCLI starts `raftkv dev`, drives it with the client verbs and a
// short bench (endpoints from RAFTKV_ENDPOINTS), then stops it with
// SIGTERM: exit 0 and its temporary directory gone. Every member lists
// every member's client address within a few seconds of the start.
func TestDevAndCLI(t *testing.T) {
	dev := exec.Command(binary, "dev", "--heartbeat-interval", "20ms", "--election-timeout", "200ms")
	stdout, _ := dev.StdoutPipe()
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	defer dev.Process.Kill()
	sc := bufio.NewScanner(stdout)
	var eps, etcdEps []string
	var dir string
	dirRe := regexp.MustCompile(`data in (\S+)`)
	etcdRe := regexp.MustCompile(`  etcd (\S+)$`)
	deadline := time.AfterFunc(20*time.Second, func() { dev.Process.Kill() })
	for sc.Scan() {
		line := sc.Text()
		if m := dirRe.FindStringSubmatch(line); m != nil {
			dir = m[1]
		}
		if m := etcdRe.FindStringSubmatch(line); m != nil {
			etcdEps = append(etcdEps, m[1])
		}
		if _, v, ok := strings.Cut(line, "RAFTKV_ENDPOINTS="); ok {
			eps = strings.Split(v, ",")
		}
		if strings.Contains(line, "Ctrl-C") {
			break
		}
	}
	deadline.Stop()
	if len(eps) != 3 || dir == "" {
		t.Fatalf("dev printed endpoints %v, dir %q", eps, dir)
	}
	go func() {
		for sc.Scan() {
		}
	}()

	cl, err := client.New(client.Config{Endpoints: eps, RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "every dev member lists every client address",
		func() bool { return allListed(t, cl, eps) })

	raftkv(t, eps, "put", "greeting", "hello")
	if got := raftkv(t, eps, "get", "greeting"); got != "hello\n" {
		t.Fatalf("get greeting = %q", got)
	}
	raftkv(t, eps, "append", "greeting", ", world")
	var item struct{ Key, Value string }
	json.Unmarshal([]byte(raftkv(t, eps, "get", "greeting", "-o", "json")), &item)
	if item.Value != "hello, world" {
		t.Fatalf("get -o json: %+v", item)
	}
	raftkv(t, eps, "del", "greeting")
	if out := raftkv(t, eps, "members"); !strings.Contains(out, "(leader)") {
		t.Fatalf("members:\n%s", out)
	}
	if out := raftkv(t, eps, "status"); strings.Count(out, "127.0.0.1") != 3 || !strings.Contains(out, "leader") {
		t.Fatalf("status:\n%s", out)
	}
	var r struct {
		Ops    int64 `json:"ops"`
		Errors int64 `json:"errors"`
		P99us  int64 `json:"p99_us"`
	}
	out := raftkv(t, eps, "bench", "--op", "mixed", "--clients", "4", "--count", "200", "--keys", "50", "-o", "json")
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Ops != 200 || r.Errors != 0 || r.P99us == 0 {
		t.Fatalf("bench -o json: %+v %v\n%s", r, err, out)
	}
	coordinationCLI(t, eps)
	devEtcd(t, etcdEps)
	raftkv(t, eps, "transfer-leader")

	dev.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- dev.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("dev did not stop within 20s of SIGTERM")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("dev left its directory %s behind (%v)", dir, err)
	}
}

// coordinationCLI drives watch, lease, put --lease, txn and range through
// the binary: the watch prints the lease's key, the transaction's put and
// the delete the lease's expiry makes, one event a line.
func coordinationCLI(t *testing.T, eps []string) {
	watch := exec.Command(binary, "watch", "--prefix", "svc/", "--rev", "1")
	watch.Env = append(os.Environ(), "RAFTKV_ENDPOINTS="+strings.Join(eps, ","))
	wout, _ := watch.StdoutPipe()
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	defer watch.Process.Kill()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(wout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var g struct{ ID, TTL int64 }
	if err := json.Unmarshal([]byte(raftkv(t, eps, "lease", "grant", "1", "-o", "json")), &g); err != nil || g.ID == 0 {
		t.Fatalf("lease grant: %+v %v", g, err)
	}
	id := strconv.FormatInt(g.ID, 10)
	raftkv(t, eps, "put", "--lease", id, "svc/a", "up")
	txn := exec.Command(binary, "txn")
	txn.Env = append(os.Environ(), "RAFTKV_ENDPOINTS="+strings.Join(eps, ","))
	txn.Stdin = strings.NewReader(`{"compare":[{"key":"svc/b","target":"create","op":"=","number":0}],
		"success":[{"op":"put","key":"svc/b","value":"by txn"}],"failure":[{"op":"range","key":"svc/b"}]}`)
	if out, err := txn.Output(); err != nil || !strings.Contains(string(out), "succeeded=true") {
		t.Fatalf("txn: %s %v", out, err)
	}
	if out := raftkv(t, eps, "range", "svc/", "--prefix"); !strings.Contains(out, "svc/a") || !strings.Contains(out, "# 2 keys") {
		t.Fatalf("range:\n%s", out)
	}
	if out := raftkv(t, eps, "lease", "ttl", id, "--keys"); !strings.Contains(out, "svc/a") {
		t.Fatalf("lease ttl:\n%s", out)
	}
	want := []string{"PUT svc/a", "PUT svc/b", "DELETE svc/a"} // the last when the lease expires
	timeout := time.After(time.Duration(g.TTL)*time.Second + 10*time.Second)
	for _, w := range want {
		select {
		case l, ok := <-lines:
			if !ok || !strings.HasPrefix(l, w) {
				t.Fatalf("watch printed %q, want a line starting %q", l, w)
			}
		case <-timeout:
			t.Fatalf("watch did not print %q", w)
		}
	}
}

// devEtcd shows that raftkv dev serves etcd's v3 API on the three
// addresses it prints: the etcd client writes through one and reads the
// value back through each of the others.
func devEtcd(t *testing.T, eps []string) {
	t.Helper()
	if len(eps) != 3 {
		t.Fatalf("dev printed etcd addresses %v", eps)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, ep := range eps {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		if i == 0 {
			if _, err := cli.Put(ctx, "etcd-key", "etcd-value"); err != nil {
				t.Fatalf("etcd put through %s: %v", ep, err)
			}
		}
		g, err := cli.Get(ctx, "etcd-key")
		if err != nil || len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "etcd-value" {
			t.Fatalf("etcd get through %s: %+v %v", ep, g, err)
		}
	}
}
