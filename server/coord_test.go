package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
)

func postJSON(c *tcluster, s *Server, path string, v any) *http.Response {
	b, _ := json.Marshal(v)
	return c.do(http.MethodPost, url(s, path), b)
}

// TestTxnRangeCompactOverHTTP walks the coordination rows of docs/api.md:
// a create-if-absent transaction, its repeat failing, ranges at past
// revisions, a delete of a range, compaction, and the errors for bad input.
func TestTxnRangeCompactOverHTTP(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	create := api.TxnRequest{
		Compare: []api.Compare{{Key: "cfg/a", Target: "create", Op: "=", Number: 0}},
		Success: []api.TxnOp{{Op: "put", Key: "cfg/a", Value: "1"}, {Op: "put", Key: "cfg/b", Value: "2"}},
		Failure: []api.TxnOp{{Op: "range", Key: "cfg/a"}},
	}
	first := decode[api.TxnResponse](t, expect(t, postJSON(c, lead, api.PathTxn, create), 200, ""))
	if !first.Succeeded || first.Header.Revision != 2 {
		t.Fatalf("first create: %+v", first)
	}
	again := decode[api.TxnResponse](t, expect(t, postJSON(c, lead, api.PathTxn, create), 200, ""))
	if again.Succeeded || again.Results[0].Range == nil || again.Results[0].Range.KVs[0].Value != "1" {
		t.Fatalf("repeated create: %+v", again)
	}
	expect(t, put(c, lead, "cfg/a", "changed"), 200, "") // 3
	old := decode[api.RangeResponse](t, expect(t, c.do(http.MethodGet, url(lead, api.PathRange+"?prefix=cfg/&revision=2"), nil), 200, ""))
	if len(old.KVs) != 2 || old.KVs[0].Value != "1" || old.Header.Revision != 3 {
		t.Fatalf("range at revision 2: %+v", old)
	}
	cnt := decode[api.RangeResponse](t, expect(t, c.do(http.MethodGet, url(c.follower(), api.PathRange+"?prefix=cfg/&count_only=true&consistency=stale"), nil), 200, ""))
	if cnt.Count != 2 && cnt.Count != 0 { // a follower may not have applied yet
		t.Fatalf("count on a follower: %+v", cnt)
	}
	del := decode[api.DeleteRangeResponse](t, expect(t, c.do(http.MethodDelete, url(lead, api.PathRange+"?prefix=cfg/&prev_kv=true"), nil), 200, ""))
	if del.Deleted != 2 || len(del.PrevKVs) != 2 || del.Header.Revision != 4 {
		t.Fatalf("delete range: %+v", del)
	}
	expect(t, postJSON(c, lead, api.PathCompact, api.CompactRequest{Revision: 3}), 200, "")
	b := expect(t, c.do(http.MethodGet, url(lead, api.PathRange+"?prefix=cfg/&revision=2"), nil), http.StatusGone, api.CodeCompacted)
	if cb := decode[api.CompactedBody](t, b); cb.CompactRevision != 3 {
		t.Fatalf("compacted answer %s", b)
	}
	expect(t, postJSON(c, lead, api.PathCompact, api.CompactRequest{Revision: 99}), 400, api.CodeFutureRevision)
	expect(t, c.do(http.MethodGet, url(lead, api.PathRange+"?key=b&range_end=a"), nil), 400, api.CodeBadKey)
	expect(t, c.do(http.MethodGet, url(lead, api.PathRange+"?key=a&revision=99"), nil), 400, api.CodeFutureRevision)
	expect(t, postJSON(c, lead, api.PathTxn, api.TxnRequest{Compare: []api.Compare{{Key: "a", Target: "mod", Op: "=~"}}}), 400, api.CodeBadRequest)
	expect(t, postJSON(c, lead, api.PathTxn, api.TxnRequest{Compare: []api.Compare{{Key: "a", Target: "age", Op: "="}}}), 400, api.CodeBadRequest)
	many := api.TxnRequest{}
	for i := range 129 {
		many.Success = append(many.Success, api.TxnOp{Op: "put", Key: fmt.Sprint(i)})
	}
	b = expect(t, postJSON(c, lead, api.PathTxn, many), 400, api.CodeTooManyOps)
	if !strings.Contains(string(b), "128") {
		t.Fatalf("too many ops answer does not name the limit: %s", b)
	}
	expect(t, c.do(http.MethodPut, url(lead, api.PathKV+"k?lease=77"), []byte("v")), 404, api.CodeLeaseNotFound)
	expect(t, postJSON(c, lead, api.PathLease+"grant", api.LeaseGrantRequest{TTL: -1}), 400, api.CodeBadTTL)
	expect(t, postJSON(c, lead, api.PathLease+"keepalive", api.LeaseRequest{ID: 5}), 404, api.CodeLeaseNotFound)
}

// TestTxnRetryAfterCompaction: a transaction repeated under its
// Idempotency-Key is answered from the exactly-once table, reading its
// ranges again at the first attempt's revision; once that revision is
// compacted the retry gets 410 compacted, not an empty range.
func TestTxnRetryAfterCompaction(t *testing.T) {
	c := newCluster(t, 1, nil)
	lead := c.leader()
	expect(t, put(c, lead, "k", "v1"), 200, "")
	body, _ := json.Marshal(api.TxnRequest{
		Compare: []api.Compare{{Key: "k", Target: "mod", Op: "=", Number: 999}},
		Success: []api.TxnOp{{Op: "put", Key: "k", Value: "x"}},
		Failure: []api.TxnOp{{Op: "range", Key: "k"}},
	})
	txn := func() *http.Response {
		return c.do(http.MethodPost, url(lead, api.PathTxn), body, api.HeaderIdempotencyKey, "txn-retry")
	}
	for try := range 2 {
		r := decode[api.TxnResponse](t, expect(t, txn(), 200, ""))
		if r.Succeeded || r.Results[0].Range == nil || len(r.Results[0].Range.KVs) != 1 || r.Results[0].Range.KVs[0].Value != "v1" {
			t.Fatalf("attempt %d: %+v, want the failure branch reading v1", try, r)
		}
	}
	w := decode[api.WriteResponse](t, expect(t, put(c, lead, "k", "v2"), 200, ""))
	expect(t, postJSON(c, lead, api.PathCompact, api.CompactRequest{Revision: int64(w.Revision)}), 200, "")
	b := expect(t, txn(), http.StatusGone, api.CodeCompacted)
	if cb := decode[api.CompactedBody](t, b); cb.CompactRevision != int64(w.Revision) {
		t.Fatalf("compacted answer %s, want compact_revision %d", b, w.Revision)
	}
}

// TestLeaseExpiresOnlyWithoutKeepAlive grants a short lease, keeps it
// alive past its TTL, then stops: its keys are deleted by the leader's
// revoke, and a watch on a follower sees the delete.
func TestLeaseExpiresOnlyWithoutKeepAlive(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	g := decode[api.LeaseResponse](t, expect(t, postJSON(c, lead, api.PathLease+"grant", api.LeaseGrantRequest{TTL: 1}), 200, ""))
	if g.TTL < 1 || g.ID == 0 {
		t.Fatalf("grant %+v", g)
	}
	expect(t, c.do(http.MethodPut, url(lead, api.PathKV+fmt.Sprintf("svc/a?lease=%d", g.ID)), []byte("up")), 200, "")
	f := c.follower()
	resp, err := http.Get(url(f, api.PathWatch+"?prefix=svc/&start_revision=1&progress_interval=50ms"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan api.WatchMessage, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var m api.WatchMessage
			json.Unmarshal(sc.Bytes(), &m)
			lines <- m
		}
		close(lines)
	}()
	deadline := time.Now().Add(time.Duration(g.TTL)*time.Second + 1500*time.Millisecond)
	for time.Now().Before(deadline) {
		expect(t, postJSON(c, lead, api.PathLease+"keepalive", api.LeaseRequest{ID: g.ID}), 200, "")
		time.Sleep(200 * time.Millisecond)
	}
	expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"svc/a"), nil), 200, "")
	ttl := decode[api.LeaseResponse](t, expect(t, c.do(http.MethodGet, url(lead, fmt.Sprintf("%s%d?keys=true", api.PathLease, g.ID)), nil), 200, ""))
	if ttl.TTL < 1 || len(ttl.Keys) != 1 || ttl.Keys[0] != "svc/a" {
		t.Fatalf("time to live %+v", ttl)
	}
	var events []api.WatchEvent
	timeout := time.After(time.Duration(g.TTL)*time.Second + 5*time.Second)
	for len(events) < 2 {
		select {
		case m, ok := <-lines:
			if !ok {
				t.Fatalf("stream ended after %+v", events)
			}
			events = append(events, m.Events...)
		case <-timeout:
			t.Fatalf("lease not expired: events %+v", events)
		}
	}
	if events[0].Type != "put" || events[1].Type != "delete" || events[1].KV.Key != "svc/a" {
		t.Fatalf("events %+v", events)
	}
	expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"svc/a"), nil), 404, api.CodeNotFound)
	expect(t, postJSON(c, lead, api.PathLease+"keepalive", api.LeaseRequest{ID: g.ID}), 404, api.CodeLeaseNotFound)
}

// TestWatchCompactedStartIsRefused: a watch from a compacted revision is
// answered 410 with the compacted revision, before any stream starts.
func TestWatchCompactedStartIsRefused(t *testing.T) {
	c := newCluster(t, 1, nil)
	lead := c.leader()
	for range 3 {
		expect(t, put(c, lead, "k", "v"), 200, "")
	}
	expect(t, postJSON(c, lead, api.PathCompact, api.CompactRequest{Revision: 4}), 200, "")
	b := expect(t, c.do(http.MethodGet, url(lead, api.PathWatch+"?key=k&start_revision=2"), nil), http.StatusGone, api.CodeCompacted)
	if cb := decode[api.CompactedBody](t, b); cb.CompactRevision != 4 {
		t.Fatalf("answer %s", b)
	}
	expect(t, c.do(http.MethodGet, url(lead, api.PathWatch+"?key=k&progress_interval=1ns"), nil), 400, api.CodeBadRequest)
}

// TestLeaseOutlivesLeaderChange: a lease renewed just before its leader
// dies is not expired by the next leader before its TTL has run from that
// renewal, and it does expire once nobody renews it.
func TestLeaseOutlivesLeaderChange(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	g := decode[api.LeaseResponse](t, expect(t, postJSON(c, lead, api.PathLease+"grant", api.LeaseGrantRequest{TTL: 2}), 200, ""))
	expect(t, c.do(http.MethodPut, url(lead, api.PathKV+fmt.Sprintf("svc/x?lease=%d", g.ID)), []byte("up")), 200, "")
	time.Sleep(time.Second)
	expect(t, postJSON(c, lead, api.PathLease+"keepalive", api.LeaseRequest{ID: g.ID}), 200, "")
	renewed := time.Now()
	c.kill(lead.cfg.ID)
	next := c.leader()
	var gone time.Time
	for deadline := renewed.Add(time.Duration(g.TTL)*time.Second + 5*time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp := c.do(http.MethodGet, url(next, api.PathKV+"svc/x"), nil)
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			gone = time.Now()
			break
		}
	}
	switch {
	case gone.IsZero():
		t.Fatalf("the lease never expired under the new leader")
	case gone.Sub(renewed) < time.Duration(g.TTL)*time.Second:
		t.Fatalf("the new leader expired the lease %v after its renewal, TTL %ds", gone.Sub(renewed), g.TTL)
	}
	t.Logf("expired %v after the last renewal (TTL %ds, election timeout %v)", gone.Sub(renewed), g.TTL, next.cfg.ElectionTimeout)
}

// TestHistoryRetentionByTime: with HistoryRetention set, the leader
// compacts history older than it through the log, so every member ends up
// at the same compacted revision, and a read below it is 410.
func TestHistoryRetentionByTime(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.HistoryRetention = 300 * time.Millisecond })
	lead := c.leader()
	expect(t, put(c, lead, "k", "old"), 200, "") // revision 2
	time.Sleep(600 * time.Millisecond)
	expect(t, put(c, lead, "k", "new"), 200, "") // revision 3
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, compacted := lead.store.Revision()
		if compacted >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing compacted after the retention (compacted revision %d)", compacted)
		}
		time.Sleep(50 * time.Millisecond)
	}
	expect(t, c.do(http.MethodGet, url(lead, api.PathRange+"?key=k&revision=1"), nil), http.StatusGone, api.CodeCompacted)
	for _, s := range c.servers {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			_, mc := s.store.Revision()
			_, lc := lead.store.Revision()
			if mc == lc {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("member %d compacted to %d, the leader to %d", s.cfg.ID, mc, lc)
			}
		}
	}
}

// TestLeaseCheckpointSurvivesLeaderChangeAndRestart: the remaining TTL of
// a long lease is checkpointed through the log, so neither a new leader
// nor a cluster restarted from its logs grants the lease its whole TTL
// again; and neither expires it earlier than its TTL after the grant.
func TestLeaseCheckpointSurvivesLeaderChangeAndRestart(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.LeaseCheckpointInterval = 300 * time.Millisecond })
	lead := c.leader()
	const ttl = 60
	granted := time.Now()
	g := decode[api.LeaseResponse](t, expect(t, postJSON(c, lead, api.PathLease+"grant", api.LeaseGrantRequest{TTL: ttl}), 200, ""))
	// The checkpointed remaining TTL as every running member has applied
	// it (the largest, should one lag); 0 while some has none.
	checkpointed := func() int64 {
		var most int64
		for _, s := range c.servers {
			info, _, ok := s.store.Lease(g.ID, false)
			if !ok || info.Remaining == 0 {
				return 0
			}
			most = max(most, info.Remaining)
		}
		return most
	}
	// remaining asks the leader and checks the bounds: not above the last
	// checkpoint plus the election timeout a new leader adds (plus one
	// second of rounding), and not below the TTL less the time since the
	// grant (the guarantee in docs/api.md).
	remaining := func(what string, lead *Server, cp int64) {
		t.Helper()
		r := decode[api.LeaseResponse](t, expect(t, c.do(http.MethodGet, url(lead, fmt.Sprintf("%s%d", api.PathLease, g.ID)), nil), 200, ""))
		since := int64(math.Ceil(time.Since(granted).Seconds()))
		et := int64(math.Ceil(lead.cfg.ElectionTimeout.Seconds()))
		if r.TTL > cp+et+1 {
			t.Fatalf("%s: remaining TTL %d s, checkpointed %d s (TTL %d s): the checkpoint was not used", what, r.TTL, cp, ttl)
		}
		if r.TTL < ttl-since {
			t.Fatalf("%s: remaining TTL %d s only %d s after the grant of %d s", what, r.TTL, since, ttl)
		}
		t.Logf("%s: remaining %d s, checkpointed %d s, %d s after the grant", what, r.TTL, cp, since)
	}
	waitUntil(t, 10*time.Second, "a checkpoint 3 s below the TTL on every member", func() bool {
		cp := checkpointed()
		return cp > 0 && cp <= ttl-3
	})
	cp := checkpointed()
	c.kill(lead.cfg.ID)
	remaining("after a leader change", c.leader(), cp)

	// The new leader checkpoints too; then the whole cluster restarts
	// and replays its logs.
	waitUntil(t, 10*time.Second, "a checkpoint by the new leader", func() bool {
		n := checkpointed()
		return n > 0 && n < cp
	})
	cp = checkpointed()
	for id := range c.servers {
		c.kill(id)
	}
	for id := uint64(1); id <= 3; id++ {
		c.restart(id)
	}
	remaining("after restarting every member", c.leader(), cp)
}
