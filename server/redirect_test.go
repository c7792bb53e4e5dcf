package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
)

// TestFollowerRedirects shows writes, linearizable and lease reads and
// admin changes sent to a follower answered 307 with the leader's absolute
// URL (path and query kept), and that following it works.
func TestFollowerRedirects(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead, f := c.leader(), c.follower()
	want := "http://" + lead.ClientAddr()
	cases := []struct{ method, path, body string }{
		{http.MethodPut, api.PathKV + "a/b?x=1", "v"},
		{http.MethodPost, api.PathKV + "a?op=append", "v"},
		{http.MethodDelete, api.PathKV + "a", ""},
		{http.MethodGet, api.PathKV + "a", ""},
		{http.MethodGet, api.PathKV + "a?consistency=lease", ""},
		{http.MethodGet, api.PathKV + "?prefix=a", ""},
		{http.MethodPost, api.PathMembers, `{"id":7,"peer_addr":"127.0.0.1:1"}`},
		{http.MethodPost, api.PathMembers + "/2/promote", ""},
		{http.MethodDelete, api.PathMembers + "/2", ""},
		{http.MethodPut, api.PathVoters, `{"voters":[1,2,3]}`},
		{http.MethodPost, api.PathTransfer, `{"id":1}`},
	}
	for _, tc := range cases {
		resp := c.do(tc.method, url(f, tc.path), []byte(tc.body))
		loc := resp.Header.Get("Location")
		expect(t, resp, http.StatusTemporaryRedirect, "")
		if loc != want+tc.path {
			t.Fatalf("%s %s: Location %q, want %q", tc.method, tc.path, loc, want+tc.path)
		}
		if got := resp.Header.Get(api.HeaderLeader); got != strconv.FormatUint(lead.cfg.ID, 10) {
			t.Fatalf("X-Raft-Leader %s, leader is %d", got, lead.cfg.ID)
		}
	}
	// Following the redirect (as net/http does for 307, body included).
	hc := &http.Client{Timeout: 10 * time.Second}
	req, _ := http.NewRequest(http.MethodPut, url(f, api.PathKV+"followed"), nil)
	req.Body = http.NoBody
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, resp, 200, "")
}

// TestConsistencyLevels shows each read level: linearizable and lease on
// the leader see the last write; stale is served by a follower itself.
func TestConsistencyLevels(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead, f := c.leader(), c.follower()
	expect(t, put(c, lead, "k", "v"), 200, "")
	for _, level := range []string{"", "?consistency=linearizable", "?consistency=lease", "?consistency=stale"} {
		if b := expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"k"+level), nil), 200, ""); string(b) != "v" {
			t.Fatalf("leader read%s = %q", level, b)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp := c.do(http.MethodGet, url(f, api.PathKV+"k?consistency=stale"), nil)
		if resp.StatusCode == 200 {
			expect(t, resp, 200, "")
			break
		}
		expect(t, resp, 404, api.CodeNotFound)
		if time.Now().After(deadline) {
			t.Fatal("follower never applied the write")
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp := c.do(http.MethodHead, url(lead, api.PathKV+"k"), nil)
	if resp.Header.Get("ETag") == "" || resp.ContentLength != 1 {
		t.Fatalf("HEAD: ETag %q length %d", resp.Header.Get("ETag"), resp.ContentLength)
	}
	expect(t, resp, 200, "")
}

// TestEveryAnswerCarriesRaftHeaders checks X-Raft-Term and X-Raft-Leader
// on successes, errors, redirects and health checks alike.
func TestEveryAnswerCarriesRaftHeaders(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead, f := c.leader(), c.follower()
	for _, resp := range []*http.Response{
		put(c, lead, "k", "v"),
		c.do(http.MethodGet, url(lead, api.PathKV+"missing"), nil),
		put(c, f, "k", "v"),
		c.do(http.MethodGet, url(f, api.PathHealthz), nil),
		c.do(http.MethodGet, url(f, api.PathReadyz), nil),
		c.do(http.MethodGet, url(f, "/ui/"), nil),
	} {
		term, _ := strconv.ParseUint(resp.Header.Get(api.HeaderTerm), 10, 64)
		leader, _ := strconv.ParseUint(resp.Header.Get(api.HeaderLeader), 10, 64)
		resp.Body.Close()
		if term == 0 || leader != lead.cfg.ID {
			t.Fatalf("%s %s: term %d leader %d", resp.Request.Method, resp.Request.URL, term, leader)
		}
	}
}

// TestClusterView checks GET /v1/cluster's exact JSON shape.
func TestClusterView(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	b := expect(t, c.do(http.MethodGet, url(c.follower(), api.PathCluster), nil), 200, "")
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cluster_id", "leader", "term", "members", "self"} {
		if raw[k] == nil {
			t.Fatalf("GET /v1/cluster lacks %q: %s", k, b)
		}
	}
	v := decode[api.Cluster](t, b)
	if v.ClusterID != FormatClusterID(ClusterIDOf(c.boot)) || v.Leader != lead.cfg.ID || v.Term == 0 || len(v.Members) != 3 {
		t.Fatalf("cluster view %+v", v)
	}
	if m, _ := v.Member(lead.cfg.ID); m.ClientAddr != lead.ClientAddr() || !m.Voter || m.PeerAddr == "" {
		t.Fatalf("leader member %+v", m)
	}
	if v.Self.Role != api.RoleFollower || v.Self.CommitIndex == 0 || v.Self.AppliedIndex == 0 {
		t.Fatalf("self %+v", v.Self)
	}
	var self map[string]json.RawMessage
	json.Unmarshal(raw["self"], &self)
	for _, k := range []string{"id", "role", "term", "commit_index", "applied_index", "snapshot_index"} {
		if self[k] == nil {
			t.Fatalf("self lacks %q: %s", k, raw["self"])
		}
	}
	expect(t, c.do(http.MethodGet, url(lead, api.PathHealthz), nil), 200, "")
	expect(t, c.do(http.MethodGet, url(lead, api.PathReadyz), nil), 200, "")
}
