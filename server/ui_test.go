package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/node"
)

// TestDebugLogBounds shows that /v1/debug/log returns index/term pairs of
// the window asked for, the tail by default, never more than
// node.MaxLogTerms, and refuses malformed bounds.
func TestDebugLogBounds(t *testing.T) {
	c := newCluster(t, 1, nil)
	lead := c.leader()
	for i := 0; i < 10; i++ {
		expect(t, put(c, lead, "k", "v"), http.StatusOK, "")
	}
	d := decode[DebugLog](t, expect(t, c.do(http.MethodGet, url(lead, PathDebugLog+"?n=4"), nil), http.StatusOK, ""))
	if len(d.Entries) != 4 || d.Entries[3].Index != d.LastIndex || d.Entries[0].Index != d.LastIndex-3 {
		t.Fatalf("tail of 4: %+v", d)
	}
	if d.Role != api.RoleLeader || d.Leader != lead.cfg.ID || d.Progress == nil {
		t.Errorf("leader's debug log: %+v", d)
	}
	for _, e := range d.Entries {
		if e.Term == 0 || e.Term > d.Term {
			t.Errorf("entry %+v: term out of range (current %d)", e, d.Term)
		}
	}
	d = decode[DebugLog](t, expect(t, c.do(http.MethodGet, url(lead, PathDebugLog+"?from=2&n=3"), nil), http.StatusOK, ""))
	if len(d.Entries) != 3 || d.Entries[0].Index != 2 {
		t.Errorf("from=2 n=3: %+v", d.Entries)
	}
	d = decode[DebugLog](t, expect(t, c.do(http.MethodGet, url(lead, PathDebugLog+"?from=1&n=1000000"), nil), http.StatusOK, ""))
	if len(d.Entries) > node.MaxLogTerms || uint64(len(d.Entries)) != d.LastIndex {
		t.Errorf("n over the bound: %d entries, last index %d", len(d.Entries), d.LastIndex)
	}
	expect(t, c.do(http.MethodGet, url(lead, PathDebugLog+"?from=-1"), nil), http.StatusBadRequest, api.CodeBadRequest)
	expect(t, c.do(http.MethodGet, url(lead, PathDebugView+"?n=0"), nil), http.StatusBadRequest, api.CodeBadRequest)
	expect(t, c.do(http.MethodPost, url(lead, PathDebugAnnounce), []byte(`{"id":9,"client_addr":"x:1"}`)), http.StatusNotFound, api.CodeNotFound)
}

// TestUIServesEmbeddedFiles shows that /ui redirects to /ui/, which serves
// the embedded page and its script.
func TestUIServesEmbeddedFiles(t *testing.T) {
	c := newCluster(t, 1, nil)
	lead := c.leader()
	resp := c.do(http.MethodGet, url(lead, PathUI), nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != PathUI+"/" {
		t.Fatalf("/ui: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	page := string(expect(t, c.do(http.MethodGet, url(lead, PathUI+"/"), nil), http.StatusOK, ""))
	if !strings.Contains(page, `<script src="app.js">`) {
		t.Errorf("/ui/ does not load app.js:\n%s", page)
	}
	js := string(expect(t, c.do(http.MethodGet, url(lead, PathUI+"/app.js"), nil), http.StatusOK, ""))
	if !strings.Contains(js, "/v1/debug/view") {
		t.Error("app.js does not poll the view")
	}
	expect(t, c.do(http.MethodGet, url(lead, PathUI+"/nope.js"), nil), http.StatusNotFound, "")
}
