package raft

import "testing"

// TestLeaseRoundsBounded shows that the leader remembers the send tick of
// every heartbeat round inside the lease window, exactly, in memory bounded
// by that window (one entry per tick, however many rounds a tick sends) and
// by leaseRoundsMax, and forgets the rest.
func TestLeaseRoundsBounded(t *testing.T) {
	const window = 5
	var s readIndexState
	for i := 0; i < 1000; i++ {
		if seq := s.newRound(7, window); seq != uint64(i+1) {
			t.Fatalf("round %d numbered %d", i+1, seq)
		}
	}
	if len(s.sent) != 1 {
		t.Fatalf("1000 rounds in one tick kept %d entries, want 1", len(s.sent))
	}
	for _, seq := range []uint64{1, 500, 1000} {
		if tick, ok := s.sentTick(seq); !ok || tick != 7 {
			t.Fatalf("round %d: sent at %d (known %v), want 7", seq, tick, ok)
		}
	}
	first := s.seq + 1
	for now := uint64(8); now < 100; now++ {
		s.newRound(now, window)
		s.newRound(now, window)
		if len(s.sent) > window {
			t.Fatalf("tick %d: %d entries kept for a window of %d ticks", now, len(s.sent), window)
		}
	}
	// The rounds of tick 99 - k are the (2(91-k)+1)th and (2(91-k)+2)th after first.
	for k := uint64(0); k < window; k++ {
		seq := first + 2*(91-k) + 1
		if tick, ok := s.sentTick(seq); !ok || tick != 99-k {
			t.Fatalf("round %d: sent at %d (known %v), want %d", seq, tick, ok, 99-k)
		}
	}
	if tick, ok := s.sentTick(first + 2*(91-window)); ok {
		t.Fatalf("a round sent %d ticks ago is still known (at %d)", window, tick)
	}

	var wide readIndexState
	for now := uint64(1); now <= 3*leaseRoundsMax; now++ {
		wide.newRound(now, 1<<20)
	}
	if len(wide.sent) != leaseRoundsMax {
		t.Fatalf("%d entries kept, limit %d", len(wide.sent), leaseRoundsMax)
	}
	if _, ok := wide.sentTick(1); ok {
		t.Fatal("a round past the limit is still known")
	}
}
