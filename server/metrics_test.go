package server

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/raftkv/raftkv/api"
)

// metricValue returns the value of the series name{labels...} in s's
// registry, and whether it exists.
func metricValue(t *testing.T, s *Server, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := s.Gatherer().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if labelOf(m, labels[i]) != labels[i+1] {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
	}
	return 0, false
}

// settledValue is metricValue once the series has held one value for
// 200ms, for a count that requests already under way may still raise.
func settledValue(t *testing.T, s *Server, name string, labels ...string) float64 {
	t.Helper()
	v, _ := metricValue(t, s, name, labels...)
	same := 0
	for deadline := time.Now().Add(5 * time.Second); same < 4; {
		if time.Now().After(deadline) {
			t.Fatalf("%s%v still changing after 5s (now %v)", name, labels, v)
		}
		time.Sleep(50 * time.Millisecond)
		now, _ := metricValue(t, s, name, labels...)
		if now == v {
			same++
		} else {
			v, same = now, 0
		}
	}
	return v
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestMetrics shows that /metrics reports each member's own role, term,
// indexes, proposals, fsync and read latencies, per-peer replication and
// HTTP answers, under names that pass Prometheus' lint, with one registry
// per member (three members share this process).
func TestMetrics(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	// Members publishing their client addresses sent PUTs of their own. The
	// leader has committed them all, but may still be answering the last.
	putsBefore := settledValue(t, lead, "raftkv_http_requests_total", "method", "PUT", "code", "200")
	const writes = 5
	for i := 0; i < writes; i++ {
		expect(t, put(c, lead, fmt.Sprintf("k%d", i), "v"), http.StatusOK, "")
	}
	expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"k0"), nil), http.StatusOK, "")
	expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"k0?consistency=lease"), nil), http.StatusOK, "")
	f := c.follower()
	expect(t, put(c, f, "redirected", "v"), http.StatusTemporaryRedirect, "")

	body := string(expect(t, c.do(http.MethodGet, url(lead, PathMetrics), nil), http.StatusOK, ""))
	for _, name := range []string{"raftkv_raft_term", "raftkv_raft_role", "raftkv_raft_leader_changes_total",
		"raftkv_raft_commit_index", "raftkv_raft_applied_index", "raftkv_raft_snapshot_index",
		"raftkv_proposals_total", "raftkv_proposal_duration_seconds_bucket", "raftkv_wal_fsync_duration_seconds_bucket",
		"raftkv_raft_peer_lag_entries", "raftkv_raft_peer_inflight_messages", "raftkv_raft_snapshots_sent_total",
		"raftkv_raft_snapshots_received_total", "raftkv_read_index_duration_seconds_bucket",
		"raftkv_transport_messages_dropped_total", "raftkv_raft_inbound_messages_dropped_total",
		"raftkv_http_requests_total", "go_goroutines"} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	want := func(s *Server, v float64, name string, labels ...string) {
		t.Helper()
		got, ok := metricValue(t, s, name, labels...)
		if !ok || got != v {
			t.Errorf("member %d: %s%v = %v (present %v), want %v", s.cfg.ID, name, labels, got, ok, v)
		}
	}
	atLeast := func(s *Server, v float64, name string, labels ...string) {
		t.Helper()
		if got, _ := metricValue(t, s, name, labels...); got < v {
			t.Errorf("member %d: %s%v = %v, want at least %v", s.cfg.ID, name, labels, got, v)
		}
	}
	st := lead.node.Status()
	want(lead, writes+1, "raftkv_kv_revision") // an empty store is at revision 1
	want(lead, 0, "raftkv_kv_leases")
	want(lead, 0, "raftkv_watch_streams")
	want(lead, 1, "raftkv_raft_is_leader")
	want(lead, 1, "raftkv_raft_role", "role", "leader")
	want(lead, float64(st.Term), "raftkv_raft_term")
	want(lead, writes, "raftkv_proposals_total", "outcome", "applied")
	want(lead, writes, "raftkv_proposal_duration_seconds")
	want(lead, 1, "raftkv_read_index_duration_seconds", "consistency", "linearizable")
	want(lead, 1, "raftkv_read_index_duration_seconds", "consistency", "lease")
	want(lead, putsBefore+writes, "raftkv_http_requests_total", "method", "PUT", "code", "200")
	want(lead, 3, "raftkv_cluster_members", "kind", "voter")
	atLeast(lead, writes, "raftkv_wal_fsync_duration_seconds")
	atLeast(lead, 1, "raftkv_raft_leader_changes_total")
	atLeast(lead, float64(writes), "raftkv_raft_commit_index")
	for id := range c.servers {
		if id == lead.cfg.ID {
			continue
		}
		if _, ok := metricValue(t, lead, "raftkv_raft_peer_lag_entries", "peer", fmt.Sprint(id)); !ok {
			t.Errorf("leader reports no lag for peer %d", id)
		}
		if _, ok := metricValue(t, lead, "raftkv_transport_messages_sent_total", "peer", fmt.Sprint(id)); !ok {
			t.Errorf("leader reports no transport counters for peer %d", id)
		}
	}
	want(f, 0, "raftkv_raft_is_leader")
	want(f, 1, "raftkv_raft_role", "role", "follower")
	want(f, 1, "raftkv_http_requests_total", "method", "PUT", "code", "307")
	if _, ok := metricValue(t, f, "raftkv_raft_peer_lag_entries"); ok {
		t.Error("a follower reports per-peer lag; only the leader knows it")
	}

	problems, err := testutil.GatherAndLint(lead.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "raftkv_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}
