package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
	pb "github.com/raftkv/raftkv/raftpb"
)

// TestLostQuorum shows the answers of a leader that lost its followers: a
// write in flight times out as 504 unknown_outcome, a request over the
// concurrency bound gets 429 busy, and once the leader steps down writes
// and linearizable reads get 503 no_leader with Retry-After, while stale
// reads are still served.
func TestLostQuorum(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.Limits.RequestTimeout = 500 * time.Millisecond
		cfg.Limits.MaxConcurrentRequests = 1
	})
	lead := c.leader()
	// The one request slot may still be held by a member's own request to
	// the leader (publishing its address) for a moment after start.
	waitUntil(t, 5*time.Second, "a write served while the cluster is whole", func() bool {
		resp := put(c, lead, "k", "v")
		if resp.StatusCode == http.StatusTooManyRequests {
			resp.Body.Close()
			return false
		}
		expect(t, resp, 200, "")
		return true
	})
	for id := range c.servers {
		if id != lead.cfg.ID {
			c.kill(id)
		}
	}
	first := make(chan *http.Response, 1)
	go func() { first <- put(c, lead, "k", "lost?") }()
	waitUntil(t, 5*time.Second, "the first write holds the only request slot", func() bool { return len(lead.sem) == 1 })
	expect(t, put(c, lead, "k2", "v"), 429, api.CodeBusy)
	expect(t, <-first, 504, api.CodeUnknownOutcome)

	waitUntil(t, 5*time.Second, "the leader without quorum steps down", func() bool {
		return lead.node.Status().Role.String() != api.RoleLeader
	})
	resp := put(c, lead, "k", "v")
	if resp.Header.Get(api.HeaderRetryAfter) == "" {
		t.Fatal("503 no_leader without Retry-After")
	}
	expect(t, resp, 503, api.CodeNoLeader)
	expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"k"), nil), 503, api.CodeNoLeader)
	expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"k?consistency=stale"), nil), 200, "")
	expect(t, c.do(http.MethodGet, url(lead, api.PathReadyz), nil), 503, api.CodeNoLeader)
}

// TestGracefulDrain shuts the leader down under load: every write gets a
// definite answer (or a refused connection), every acknowledged write is
// kept, leadership is handed over, and the drained member answers 503
// shutting_down.
func TestGracefulDrain(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%d", w, i)
				req, _ := http.NewRequest(http.MethodPut, url(lead, api.PathKV+key), nil)
				resp, err := c.hc.Do(req)
				if err != nil {
					continue // refused after the listener closed: not applied
				}
				resp.Body.Close()
				switch resp.StatusCode {
				case 200:
					mu.Lock()
					acked = append(acked, key)
					mu.Unlock()
				case 503, 504, 429, 307:
				default:
					t.Errorf("PUT during drain: status %d", resp.StatusCode)
				}
			}
		}()
	}
	// Shut down under load: once the writers have some writes acknowledged.
	waitUntil(t, 10*time.Second, "writes acknowledged before the drain", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 50
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	if err := lead.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	took := time.Since(start)
	close(stop)
	wg.Wait()
	delete(c.servers, lead.cfg.ID)

	rec := httptest.NewRecorder()
	lead.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, api.PathKV+"k", nil))
	if rec.Code != 503 {
		t.Fatalf("drained member answered %d", rec.Code)
	}
	newLead := c.leader()
	if newLead == lead {
		t.Fatal("stopped member still leads")
	}
	if len(acked) == 0 {
		t.Fatal("no write acknowledged before the drain")
	}
	for _, key := range acked {
		expect(t, c.do(http.MethodGet, url(newLead, api.PathKV+key), nil), 200, "")
	}
	t.Logf("drain took %v; %d writes acknowledged", took, len(acked))
}

// TestShutdownHandsOverToALiveMember: a leader stopping hands leadership
// to a member it can still reach, not to a stopped one that shows the
// same log, and so does not wait out the transfer timeout; with no other
// member left it stops without trying.
func TestShutdownHandsOverToALiveMember(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.Limits.TransferTimeout = 3 * time.Second })
	lead := c.leader()
	expect(t, put(c, lead, "k", "v"), 200, "")
	var followers []uint64
	for id := range c.servers {
		if id != lead.cfg.ID {
			followers = append(followers, id)
		}
	}
	slices.Sort(followers)
	dead, live := followers[0], followers[1] // equal logs: the lower id would win a tie
	waitApplied(t, c.servers[dead], lead)
	c.kill(dead)
	waitUntil(t, 5*time.Second, fmt.Sprintf("the leader stops hearing member %d", dead), func() bool {
		ts, _ := lead.node.TransportStats()
		return !ts.Peers[pb.NodeID(dead)].Hearing
	})
	start := time.Now()
	if err := lead.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("shutdown took %v: it waited on a transfer", took)
	}
	delete(c.servers, lead.cfg.ID)
	next := c.servers[live]
	if st := next.node.Status(); st.Role.String() != api.RoleLeader {
		t.Fatalf("member %d is %s after the hand-over, want leader", live, st.Role)
	}
	// The shutdown closed the old leader's streams; the new leader learns
	// that when its readers see the close, which a busy machine delays.
	waitUntil(t, 5*time.Second, fmt.Sprintf("member %d stops hearing the stopped member %d", live, lead.cfg.ID), func() bool {
		ts, _ := next.node.TransportStats()
		return !ts.Peers[pb.NodeID(lead.cfg.ID)].Hearing
	})
	start = time.Now()
	if err := next.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	delete(c.servers, live)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("last member's shutdown took %v: it tried to hand over to a stopped member", took)
	}
}
