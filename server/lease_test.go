package server

import (
	"testing"
	"time"

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
