package server

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
)

// waitAllListed waits until every running member's GET /v1/cluster lists
// every running member with the client address it serves on.
func (c *tcluster) waitAllListed(what string, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		last = ""
		for id, s := range c.servers {
			resp := c.do(http.MethodGet, url(s, api.PathCluster), nil)
			v := decode[api.Cluster](c.t, expect(c.t, resp, 200, ""))
			for oid, o := range c.servers {
				if m, ok := v.Member(oid); !ok || m.ClientAddr != o.ClientAddr() {
					last = fmt.Sprintf("member %d lists member %d as %+v (ok %v), want client address %s",
						id, oid, m, ok, o.ClientAddr())
				}
			}
		}
		if last == "" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("%s: not every member lists every client address within %v: %s", what, within, last)
}

// TestEveryMemberListsEveryClientAddress shows the API contract's "the
// member also publishes its own" client address: soon after a fresh start
// every member's /v1/cluster lists all three client addresses, not only
// the leader's, and keeps them when a follower restarts on a new client
// address, after a leader change, and after the old leader restarts.
func TestEveryMemberListsEveryClientAddress(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.waitAllListed("fresh start", 5*time.Second)

	f := c.follower()
	fid := f.cfg.ID
	c.kill(fid)
	a := c.addrs[fid]
	cl := listen(t, "127.0.0.1:0")
	c.addrs[fid] = [2]string{a[0], cl.Addr().String()}
	c.startWith(fid, listen(t, a[0]), cl, false)
	c.waitAllListed("follower restarted on a new client address", 5*time.Second)

	lead := c.leader()
	expect(t, c.do(http.MethodPost, url(lead, api.PathTransfer), []byte(`{}`)), 200, "")
	c.waitAllListed("after a leader change", 5*time.Second)

	c.kill(lead.cfg.ID)
	c.restart(lead.cfg.ID)
	c.waitAllListed("after the old leader restarted", 5*time.Second)
}

// TestSetClientAddrRequests shows PUT .../client-addr checking its input:
// an address that is not host:port and an unknown member are refused, a
// follower redirects to the leader, and an address already published is
// answered without a change.
func TestSetClientAddrRequests(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	path := func(id uint64) string { return fmt.Sprintf("%s/%d/client-addr", api.PathMembers, id) }
	expect(t, c.do(http.MethodPut, url(lead, path(lead.cfg.ID)), []byte(`{"client_addr":"nohostport"}`)), 400, api.CodeBadRequest)
	expect(t, c.do(http.MethodPut, url(lead, path(9)), []byte(`{"client_addr":"127.0.0.1:1"}`)), 404, api.CodeNotFound)
	expect(t, c.do(http.MethodPost, url(lead, path(lead.cfg.ID)), nil), 405, "")
	f := c.follower()
	resp := c.do(http.MethodPut, url(f, path(f.cfg.ID)), []byte(`{"client_addr":"127.0.0.1:1"}`))
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("follower answered %d, want a redirect to the leader", resp.StatusCode)
	}
	before := lead.node.Status().LastIndex
	body := fmt.Sprintf(`{"client_addr":%q}`, f.ClientAddr())
	expect(t, c.do(http.MethodPut, url(lead, path(f.cfg.ID)), []byte(body)), 200, "")
	if after := lead.node.Status().LastIndex; after != before {
		t.Fatalf("republishing the same address appended entries %d..%d", before+1, after)
	}
}
