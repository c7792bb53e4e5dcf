package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/client"
)

// TestIdempotentRetryAcrossLeaderKill sends appends from several clients
// while the leader is killed with SIGKILL. The client retries each append
// with its Idempotency-Key on the surviving members, so every acknowledged
// append appears exactly once, and none appears twice.
func TestIdempotentRetryAcrossLeaderKill(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	cl := c.client()
	ctx := within(t, 60*time.Second)

	// One write sent by hand to the leader, whose answer is never read:
	// then the leader dies, and the same Idempotency-Key is retried.
	req, _ := http.NewRequest(http.MethodPost, "http://"+c.procs[lead].addr+"/v1/kv/once?op=append", strings.NewReader("X"))
	req.Header.Set(api.HeaderIdempotencyKey, "the-one-token")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}

	var (
		mu      sync.Mutex
		acked   []string
		unknown []string
		wg      sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				tok := fmt.Sprintf("<%d.%d>", w, i)
				_, err := cl.Append(ctx, "log", []byte(tok))
				mu.Lock()
				switch {
				case err == nil:
					acked = append(acked, tok)
				case client.IsUnknownOutcome(err):
					unknown = append(unknown, tok)
				default:
					t.Errorf("append %s: %v (a definite failure the client should have retried)", tok, err)
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	c.procs[lead].kill()
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()

	if _, err := cl.Append(ctx, "once", []byte("X"), client.WithIdempotencyKey("the-one-token")); err != nil {
		t.Fatal(err)
	}
	if kv, err := cl.Get(ctx, "once"); err != nil || string(kv.Value) != "X" {
		t.Fatalf("once = %q, %v; want X (the retried write applied once)", kv.Value, err)
	}
	kv, err := cl.Get(ctx, "log")
	if err != nil {
		t.Fatal(err)
	}
	log := string(kv.Value)
	for _, tok := range acked {
		if n := strings.Count(log, tok); n != 1 {
			t.Errorf("acknowledged append %s appears %d times", tok, n)
		}
	}
	for _, tok := range unknown {
		if n := strings.Count(log, tok); n > 1 {
			t.Errorf("append %s of unknown outcome appears %d times", tok, n)
		}
	}
	if len(acked) < 10 {
		t.Fatalf("only %d appends acknowledged", len(acked))
	}
	t.Logf("%d appends acknowledged, %d unknown, across the leader's death", len(acked), len(unknown))
}

// TestGracefulShutdown sends SIGTERM to the leader: it exits 0, hands
// leadership to another voter, and writes go on.
func TestGracefulShutdown(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	cl := c.client()
	ctx := within(t, 30*time.Second)
	if _, err := cl.Put(ctx, "k", []byte("before")); err != nil {
		t.Fatal(err)
	}
	p := c.procs[lead]
	if code := p.terminate(15 * time.Second); code != 0 {
		t.Fatalf("SIGTERM: exit code %d\n%s", code, tail(p.logs.String(), 2000))
	}
	if !strings.Contains(p.logs.String(), "handed leadership over") {
		t.Fatalf("leader did not hand over leadership:\n%s", tail(p.logs.String(), 2000))
	}
	newLead := c.leader()
	if newLead == lead {
		t.Fatal("stopped member still leads")
	}
	if _, err := cl.Put(ctx, "k", []byte("after")); err != nil {
		t.Fatal(err)
	}
	// Restarted, it recovers from its data dir (no --cluster needed).
	c.start(lead)
	if kv, err := cl.Get(ctx, "k"); err != nil || string(kv.Value) != "after" {
		t.Fatalf("k = %v, %v", kv, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := cl.ClusterAt(ctx, p.addr)
		if err == nil && v.Self.AppliedIndex >= v.Self.CommitIndex && v.Self.CommitIndex > 0 && v.Leader != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted member did not catch up: %+v %v", v, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRestartKeepsClusterID kills a follower, restarts it with a different
// --cluster (ignored: the data dir wins), and checks it rejoins with the
// same cluster id.
func TestRestartKeepsClusterID(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	cl := c.client()
	ctx := within(t, 30*time.Second)
	before, err := cl.Cluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := c.follower(lead)
	f.kill()
	if _, err := cl.Put(ctx, "while-down", []byte("v")); err != nil {
		t.Fatal(err)
	}
	c.start(f.id, "--cluster", "1=127.0.0.1:1")
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The member has applied the write once its own state has the key
		// (a key's rev is a store revision, not a log index to compare).
		resp, err := http.Get("http://" + f.addr + "/v1/kv/while-down?consistency=stale")
		if err == nil {
			resp.Body.Close()
		}
		v, verr := cl.ClusterAt(ctx, f.addr)
		if err == nil && resp.StatusCode == http.StatusOK && verr == nil && v.ClusterID == before.ClusterID {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted member: %+v %v %v", v, verr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
