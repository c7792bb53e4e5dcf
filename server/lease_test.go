package server

import (
	"slices"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/kv"
)

// TestSyncDeadlines: a lease that appears gets its TTL from now, one that
// is gone loses its deadline (also when another appears in the same
// sync), and a lease already known keeps the deadline it has.
func TestSyncDeadlines(t *testing.T) {
	s := &Server{cfg: Config{ElectionTimeout: time.Second}}
	l := &s.lessor
	t0 := time.Unix(1000, 0)
	s.syncDeadlinesLocked(3, []kv.LeaseInfo{{ID: 1, TTL: 10}, {ID: 2, TTL: 20}}, t0)
	// A new term: remaining TTL plus an election timeout.
	if got, want := l.deadline[1], t0.Add(11*time.Second); !got.Equal(want) {
		t.Fatalf("lease 1 on taking over: deadline %v, want %v", got, want)
	}
	renewed := t0.Add(5 * time.Second)
	l.deadline[1] = renewed
	t1 := t0.Add(6 * time.Second)
	s.syncDeadlinesLocked(3, []kv.LeaseInfo{{ID: 1, TTL: 10}, {ID: 2, TTL: 20}}, t1)
	if !l.deadline[1].Equal(renewed) || len(l.deadline) != 2 {
		t.Fatalf("a sync with nothing changed moved deadlines: %v", l.deadline)
	}
	// Lease 2 revoked and lease 3 granted since the last sync: as many
	// leases as deadlines, yet one of them is stale.
	s.syncDeadlinesLocked(3, []kv.LeaseInfo{{ID: 1, TTL: 10}, {ID: 3, TTL: 30}}, t1)
	if _, ok := l.deadline[2]; ok {
		t.Fatalf("revoked lease 2 kept its deadline: %v", l.deadline)
	}
	if got, want := l.deadline[3], t1.Add(30*time.Second); !got.Equal(want) {
		t.Fatalf("lease 3 granted in this term: deadline %v, want %v", got, want)
	}
	if !l.deadline[1].Equal(renewed) || len(l.deadline) != 2 {
		t.Fatalf("deadlines after a revoke and a grant: %v", l.deadline)
	}
	s.syncDeadlinesLocked(3, nil, t1)
	if len(l.deadline) != 0 {
		t.Fatalf("deadlines with no leases left: %v", l.deadline)
	}
}

// TestExpiredLeaseIsNotRenewed: once a lease is past its deadline on the
// leader's clock, a keep-alive is refused, also after the lease loop has
// proposed its revoke (a renewal answered then would be undone when the
// revoke applies); the revoke is proposed again only after a request's
// time. A lease granted again under the id of one revoked starts afresh.
func TestExpiredLeaseIsNotRenewed(t *testing.T) {
	c := newCluster(t, 1, nil)
	s := c.leader()
	g := decode[api.LeaseResponse](t, expect(t, postJSON(c, s, api.PathLease+"grant", api.LeaseGrantRequest{ID: 77, TTL: 5}), 200, ""))
	now := time.Now()
	if _, _, ok := s.renew(g.ID, now); !ok {
		t.Fatal("a live lease was not renewed")
	}
	late := now.Add(time.Duration(g.TTL)*time.Second + time.Second)
	if ttl, _, ok := s.renew(g.ID, late); ok {
		t.Fatalf("a keep-alive after the deadline renewed the lease (TTL %d)", ttl)
	}
	expired, _ := s.leaseTickOnce(late)
	if !slices.Contains(expired, g.ID) {
		t.Fatalf("the expired lease was not revoked: %v", expired)
	}
	if _, _, ok := s.renew(g.ID, late); ok {
		t.Fatal("a keep-alive while the revoke is under way renewed the lease")
	}
	if expired, _ := s.leaseTickOnce(late.Add(leaseTick)); slices.Contains(expired, g.ID) {
		t.Fatal("the revoke was proposed again at the next tick")
	}
	if expired, _ := s.leaseTickOnce(late.Add(s.cfg.Limits.RequestTimeout)); !slices.Contains(expired, g.ID) {
		t.Fatal("the revoke was not proposed again after a request's time")
	}
	// Revoked and granted again before the loop looks: the new lease
	// is renewed, and not revoked for its predecessor's deadline.
	expect(t, postJSON(c, s, api.PathLease+"revoke", api.LeaseRequest{ID: g.ID}), 200, "")
	expect(t, postJSON(c, s, api.PathLease+"grant", api.LeaseGrantRequest{ID: g.ID, TTL: 5}), 200, "")
	if _, _, ok := s.renew(g.ID, time.Now()); !ok {
		t.Fatal("a lease granted again under a revoked lease's id was not renewed")
	}
	if expired, _ := s.leaseTickOnce(time.Now()); slices.Contains(expired, g.ID) {
		t.Fatal("a lease granted again was revoked for its predecessor's deadline")
	}
}

// TestKeepAliveLooksAgainAfterBarrier: a leader that does not find a
// lease (as one that has yet to apply its grant would not) looks again
// after a read barrier instead of answering lease_not_found; a lease that
// does not exist is still not found.
func TestKeepAliveLooksAgainAfterBarrier(t *testing.T) {
	c := newCluster(t, 1, nil)
	s := c.leader()
	g := decode[api.LeaseResponse](t, expect(t, postJSON(c, s, api.PathLease+"grant", api.LeaseGrantRequest{ID: 78, TTL: 5}), 200, ""))
	s.lessor.mu.Lock()
	s.lessor.hideOnce = g.ID
	s.lessor.mu.Unlock()
	ka := decode[api.LeaseResponse](t, expect(t, postJSON(c, s, api.PathLease+"keepalive", api.LeaseRequest{ID: g.ID}), 200, ""))
	if ka.TTL != 5 {
		t.Fatalf("keep-alive after looking again: TTL %d, want 5", ka.TTL)
	}
	s.lessor.mu.Lock()
	hidden := s.lessor.hideOnce
	s.lessor.mu.Unlock()
	if hidden != 0 {
		t.Fatal("the first lookup did not miss the lease: the test shows nothing")
	}
	expect(t, postJSON(c, s, api.PathLease+"keepalive", api.LeaseRequest{ID: 79}), 404, api.CodeLeaseNotFound)
}
