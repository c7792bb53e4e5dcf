package e2e

import (
	"bytes"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/client"
)

// TestAPITable walks docs/api.md's request table through the Go client against
// three server processes, then checks a follower's 307 on the wire.
func TestAPITable(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	cl := c.client()
	ctx := within(t, 30*time.Second)

	// PUT, GET with ETag.
	idx, err := cl.Put(ctx, "dir/k", []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := cl.Get(ctx, "dir/k")
	if err != nil || string(kv.Value) != "v1" || kv.Rev != idx {
		t.Fatalf("GET dir/k = %+v, %v; put at %d", kv, err, idx)
	}
	// If-Match and If-None-Match.
	if _, err := cl.Put(ctx, "dir/k", []byte("x"), client.IfMatch(idx+1000)); !client.IsPreconditionFailed(err) {
		t.Fatalf("PUT If-Match stale: %v", err)
	}
	idx2, err := cl.Put(ctx, "dir/k", []byte("v2"), client.IfMatch(idx))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Put(ctx, "dir/k", []byte("x"), client.IfNoneMatch()); !client.IsPreconditionFailed(err) {
		t.Fatalf("PUT If-None-Match on existing key: %v", err)
	}
	if _, err := cl.Put(ctx, "dir/new", []byte("n"), client.IfNoneMatch()); err != nil {
		t.Fatal(err)
	}
	// POST ?op=append.
	for _, s := range []string{"a", "b"} {
		if _, err := cl.Append(ctx, "dir/log", []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	// Each consistency level.
	for _, level := range []string{api.Linearizable, api.Lease, api.Stale} {
		kv, err := cl.Get(ctx, "dir/log", client.WithConsistency(level))
		if level == api.Stale {
			// A stale read may come from a member not yet caught up: it
			// sees one of the states the key went through, never another.
			if !client.IsNotFound(err) && (err != nil || (string(kv.Value) != "a" && string(kv.Value) != "ab")) {
				t.Fatalf("GET stale dir/log = %v, %v: not a state the key was in", kv, err)
			}
			continue
		}
		if err != nil || string(kv.Value) != "ab" {
			t.Fatalf("GET %s dir/log = %v, %v", level, kv, err)
		}
	}
	// Listing.
	items, more, err := cl.List(ctx, "dir/", 2)
	if err != nil || !more || len(items) != 2 || items[0].Key != "dir/k" || items[1].Key != "dir/log" {
		t.Fatalf("list dir/ limit 2: %+v more=%v err=%v", items, more, err)
	}
	// DELETE with If-Match, then absent.
	if _, err := cl.Delete(ctx, "dir/k", client.IfMatch(idx)); !client.IsPreconditionFailed(err) {
		t.Fatalf("DELETE If-Match stale: %v", err)
	}
	if _, err := cl.Delete(ctx, "dir/k", client.IfMatch(idx2)); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Get(ctx, "dir/k"); !client.IsNotFound(err) {
		t.Fatalf("GET deleted key: %v", err)
	}
	if _, err := cl.Delete(ctx, "dir/k"); !client.IsNotFound(err) {
		t.Fatalf("DELETE absent key: %v", err)
	}
	// Bad inputs.
	if _, err := cl.Put(ctx, strings.Repeat("k", 4097), []byte("v")); client.Code(err) != api.CodeBadKey {
		t.Fatalf("over-long key: %v", err)
	}
	if _, err := cl.Put(ctx, "big", bytes.Repeat([]byte("x"), 1<<20+1)); client.Code(err) != api.CodeTooLarge {
		t.Fatalf("oversized value: %v", err)
	}
	// The cluster view.
	v, err := cl.Cluster(ctx)
	if err != nil || v.Leader != lead || len(v.Members) != 3 || len(v.ClusterID) != 16 {
		t.Fatalf("cluster: %+v %v", v, err)
	}

	// A follower redirects a write to the leader's absolute URL.
	f := c.follower(lead)
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodPut, "http://"+f.addr+"/v1/kv/r?x=1", strings.NewReader("v"))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := "http://" + c.procs[lead].addr + "/v1/kv/r?x=1"
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != want {
		t.Fatalf("PUT on follower: %d Location %q, want 307 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	if resp.Header.Get(api.HeaderLeader) == "" || resp.Header.Get(api.HeaderTerm) == "" {
		t.Fatal("redirect without X-Raft-Leader / X-Raft-Term")
	}
}

// TestBadFlags shows bad invocations exiting 2 with one line on stderr.
func TestBadFlags(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"server", "--no-such-flag"},
		{"server", "--id", "x"},
		{"server", "--id", "0", "--data-dir", dir},
		{"server", "--id", "1", "--data-dir", dir, "--listen-peer", "127.0.0.1:0", "--listen-client", "127.0.0.1:0"},
		{"server", "--id", "1", "--data-dir", dir, "--listen-peer", "127.0.0.1:0", "--listen-client", "127.0.0.1:0", "--cluster", "1=a,1=b"},
		{"server", "--id", "1", "--data-dir", dir, "--listen-peer", "127.0.0.1:0", "--listen-client", "127.0.0.1:0", "--join", "--cluster", "1=a"},
		{"server", "--heartbeat-interval", "soon"},
		{"server", "--log-format", "xml", "--id", "1", "--data-dir", dir, "--listen-peer", "a", "--listen-client", "b", "--join"},
		{"no-such-verb"},
		{"get"},
		{"get", "k", "--consistency", "eventual"},
		{"bench", "--op", "scan"},
		{"members", "remove", "zero"},
	} {
		cmd := exec.Command(binary, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := cmd.ProcessState.ExitCode()
		lines := strings.Count(strings.TrimSpace(stderr.String()), "\n") + 1
		if code != 2 || lines != 1 {
			t.Errorf("raftkv %s: exit %d (err %v), stderr %q; want exit 2 and one line", strings.Join(args, " "), code, err, stderr.String())
		}
	}
	// Environment variables stand in for flags, and are checked alike.
	cmd := exec.Command(binary, "server")
	cmd.Env = append(cmd.Environ(), "RAFTKV_ID=seven")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Run()
	if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(stderr.String(), "RAFTKV_ID") {
		t.Errorf("RAFTKV_ID=seven: exit %d, stderr %q", cmd.ProcessState.ExitCode(), stderr.String())
	}
	for _, verb := range []string{"server", "dev", "bench", "put", "get", "del", "append", "list", "members", "transfer-leader", "status"} {
		out, err := exec.Command(binary, verb, "--help").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Usage:") {
			t.Errorf("raftkv %s --help: %v\n%s", verb, err, out)
		}
	}
}
