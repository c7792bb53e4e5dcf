package etcdapi_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// etcdctlVersion is pinned in test/etcdctl/go.mod (a module of its own,
// so raftkv's module does not depend on etcdctl).
const etcdctlVersion = "v3.7.3"

var (
	etcdctlOnce sync.Once
	etcdctlPath string
	etcdctlErr  error
)

// buildEtcdctl builds etcdctl from the module proxy once, into the user's
// cache directory, and reuses it after.
func buildEtcdctl(t *testing.T) string {
	t.Helper()
	etcdctlOnce.Do(func() {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir := filepath.Join(cache, "raftkv-test", "etcdctl-"+etcdctlVersion)
		etcdctlPath = filepath.Join(dir, "etcdctl")
		if _, err := os.Stat(etcdctlPath); err == nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", etcdctlPath, "go.etcd.io/etcd/etcdctl/v3")
		cmd.Dir = filepath.Join("..", "test", "etcdctl")
		if out, err := cmd.CombinedOutput(); err != nil {
			etcdctlErr = fmt.Errorf("building etcdctl: %v\n%s", err, out)
		}
	})
	if etcdctlErr != nil {
		t.Fatal(etcdctlErr)
	}
	return etcdctlPath
}

type etcdctl struct {
	t    *testing.T
	bin  string
	eps  string
	last string
}

// run runs etcdctl with args (and stdin) and returns its standard output;
// a failure fails the test unless wantErr.
func (e *etcdctl) run(stdin string, wantErr bool, args ...string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if len(args) == 0 || !strings.HasPrefix(args[0], "--endpoints=") {
		args = append([]string{"--endpoints=" + e.eps}, args...)
	}
	cmd := exec.CommandContext(ctx, e.bin, append([]string{"--dial-timeout=5s"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if (err != nil) != wantErr {
		e.t.Fatalf("etcdctl %s: err %v (want error: %v)\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, wantErr, stdout.String(), stderr.String())
	}
	if wantErr {
		return stderr.String()
	}
	return stdout.String()
}

func (e *etcdctl) expect(got, want string) {
	e.t.Helper()
	if got != want {
		e.t.Fatalf("etcdctl printed\n%q\nwant\n%q", got, want)
	}
}

func (e *etcdctl) match(got, pattern string) []string {
	e.t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(got)
	if m == nil {
		e.t.Fatalf("etcdctl printed\n%s\nwhich does not match %s", got, pattern)
	}
	return m
}

// TestEtcdctl drives the etcdctl of etcd v3.7.3, unchanged, against a
// three-member cluster and checks what it prints.
func TestEtcdctl(t *testing.T) {
	if testing.Short() {
		t.Skip("builds etcdctl from the module proxy")
	}
	bin := buildEtcdctl(t)
	c := newECluster(t)
	e := &etcdctl{t: t, bin: bin, eps: strings.Join(c.addrs, ",")}

	// put, get, get --rev, get --prefix --limit, del.
	var put struct {
		Header struct {
			Revision int64 `json:"revision"`
		} `json:"header"`
	}
	if err := json.Unmarshal([]byte(e.run("", false, "put", "foo", "bar", "-w", "json")), &put); err != nil || put.Header.Revision == 0 {
		t.Fatalf("put -w json: %v %+v", err, put)
	}
	e.expect(e.run("", false, "put", "foo", "baz"), "OK\n")
	e.expect(e.run("", false, "get", "foo"), "foo\nbaz\n")
	e.expect(e.run("", false, "get", "foo", fmt.Sprint("--rev=", put.Header.Revision)), "foo\nbar\n")
	for i := 1; i <= 3; i++ {
		e.run("", false, "put", fmt.Sprint("a", i), fmt.Sprint("v", i))
	}
	e.expect(e.run("", false, "get", "a", "--prefix", "--limit=2"), "a1\nv1\na2\nv2\n")
	e.expect(e.run("", false, "get", "a", "--prefix", "--keys-only"), "a1\n\na2\n\na3\n\n")
	e.match(e.run("", false, "get", "a", "--prefix", "--count-only", "-w", "fields"), `(?m)^"Count" : 3$`)
	e.expect(e.run("", false, "del", "a", "--prefix"), "3\n")
	e.expect(e.run("", false, "get", "a", "--prefix"), "")

	// txn, interactive, on stdin: the success branch, then the failure one.
	txn := "mod(\"t\") = \"0\"\n\nput t x\n\nget t\n\n"
	out := e.run(txn, false, "txn", "-i")
	e.match(out, `(?s)SUCCESS\n\nOK\n$`)
	out = e.run(txn, false, "txn", "-i")
	e.match(out, `(?s)FAILURE\n\nt\nx\n$`)

	// watch: a put made after the watch starts is printed.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w := exec.CommandContext(ctx, bin, "--endpoints="+e.eps, "watch", "w", "--prefix")
	stdout, _ := w.StdoutPipe()
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(300 * time.Millisecond)
	e.run("", false, "put", "w1", "x")
	var got []string
	for len(got) < 3 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("watch ended after %q", got)
			}
			got = append(got, l)
		case <-ctx.Done():
			t.Fatalf("watch printed %q", got)
		}
	}
	w.Process.Kill()
	w.Wait()
	if strings.Join(got, "\n") != "PUT\nw1\nx" {
		t.Fatalf("watch printed %q", got)
	}

	// lease grant, keep-alive, timetolive, revoke.
	m := e.match(e.run("", false, "lease", "grant", "10"), `^lease ([0-9a-f]+) granted with TTL\(10s\)\n$`)
	id := m[1]
	e.expect(e.run("", false, "lease", "keep-alive", "--once", id), fmt.Sprintf("lease %s keepalived with TTL(10)\n", id))
	e.run("", false, "put", "lk", "v", "--lease="+id)
	e.match(e.run("", false, "lease", "timetolive", id, "--keys"), fmt.Sprintf(`^lease %s granted with TTL\(10s\), remaining\(\d+s\), attached keys\(\[lk\]\)\n$`, id))
	e.match(e.run("", false, "lease", "list"), fmt.Sprintf(`found 1 leases\n%s\n`, id))
	e.expect(e.run("", false, "lease", "revoke", id), fmt.Sprintf("lease %s revoked\n", id))
	e.expect(e.run("", false, "get", "lk"), "")

	// member list, add (learner), update, promote (refused), remove.
	out = e.run("", false, "member", "list")
	if n := strings.Count(out, "started"); n != 3 {
		t.Fatalf("member list:\n%s", out)
	}
	for i := 1; i <= 3; i++ {
		e.match(out, fmt.Sprintf(`(?m)^%x, started, %d, http://127\.0\.0\.1:\d+, [^,]*, false$`, i, i))
	}
	m = e.match(e.run("", false, "member", "add", "new", "--peer-urls=http://127.0.0.1:1", "--learner"),
		`Member +([0-9a-f]+) added as learner to cluster +([0-9a-f]+)`)
	newID := m[1]
	e.match(e.run("", false, "member", "list"), fmt.Sprintf(`(?m)^%s, started, %d, http://127\.0\.0\.1:1, , true$`, newID, mustHex(t, newID)))
	e.match(e.run("", false, "member", "update", newID, "--peer-urls=http://127.0.0.1:2"), fmt.Sprintf(`Member +%s updated in cluster +[0-9a-f]+`, newID))
	e.match(e.run("", false, "member", "list"), fmt.Sprintf(`(?m)^%s, started, %d, http://127\.0\.0\.1:2, , true$`, newID, mustHex(t, newID)))
	e.match(e.run("", true, "member", "update", "abcdef", "--peer-urls=http://127.0.0.1:3"), `member not found`)
	e.match(e.run("", true, "member", "promote", newID), `can only promote a learner member which is in sync with leader`)
	e.match(e.run("", false, "member", "remove", newID), fmt.Sprintf(`Member +%s removed from cluster`, newID))

	// endpoint status and health.
	out = e.run("", false, "endpoint", "status")
	for _, a := range c.addrs {
		e.match(out, regexp.QuoteMeta(a)+`, [0-9a-f]+, 3\.7\.3, `)
	}
	out = e.run("", false, "endpoint", "health")
	if strings.Count(out, "is healthy") != 3 {
		t.Fatalf("endpoint health:\n%s", out)
	}

	// snapshot save, then compaction.
	snap := filepath.Join(t.TempDir(), "snap.db")
	e.match(e.run("", false, "--endpoints="+c.addrs[0], "snapshot", "save", snap), `Snapshot saved at `)
	b, err := os.ReadFile(snap)
	if err != nil || len(b)%512 != sha256.Size || len(b) < 512 {
		t.Fatalf("snapshot file: %d bytes, %v", len(b), err)
	}
	if sum := sha256.Sum256(b[:len(b)-sha256.Size]); !bytes.Equal(sum[:], b[len(b)-sha256.Size:]) {
		t.Fatal("snapshot file: the SHA-256 at its end does not match")
	}
	var rev struct {
		Header struct {
			Revision int64 `json:"revision"`
		} `json:"header"`
	}
	json.Unmarshal([]byte(e.run("", false, "get", "foo", "-w", "json")), &rev)
	e.expect(e.run("", false, "compaction", fmt.Sprint(rev.Header.Revision)), fmt.Sprintf("compacted revision %d\n", rev.Header.Revision))
	e.match(e.run("", true, "get", "foo", fmt.Sprint("--rev=", put.Header.Revision)), `required revision has been compacted`)
}

func mustHex(t *testing.T, s string) uint64 {
	var v uint64
	if _, err := fmt.Sscanf(s, "%x", &v); err != nil {
		t.Fatal(err)
	}
	return v
}
