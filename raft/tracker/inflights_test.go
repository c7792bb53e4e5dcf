package tracker

import (
	"testing"

	pb "github.com/raftkv/raftkv/raftpb"
)

// window describes an Inflights as the tests expect it.
type window struct {
	count int
	bytes uint64
	full  bool
}

func (w window) check(t *testing.T, step string, in *Inflights) {
	t.Helper()
	got := window{count: in.Count(), bytes: in.Bytes(), full: in.Full()}
	if got != w {
		t.Fatalf("after %s: count=%d bytes=%d full=%v, want count=%d bytes=%d full=%v",
			step, got.count, got.bytes, got.full, w.count, w.bytes, w.full)
	}
}

// TestInflightsByCount shows the window bounded by messages: it fills at
// maxCount and an acknowledgement frees every message up to the index it
// acknowledges, oldest first, across the ring's wrap-around.
func TestInflightsByCount(t *testing.T) {
	in := NewInflights(4, 0)
	window{}.check(t, "start", in)
	for i := 1; i <= 3; i++ {
		in.Add(pb.Index(i*10), 100)
	}
	window{count: 3, bytes: 300}.check(t, "3 sends", in)
	in.Add(40, 100)
	window{count: 4, bytes: 400, full: true}.check(t, "4 sends (window is 4)", in)

	in.FreeLE(5)
	window{count: 4, bytes: 400, full: true}.check(t, "ack of 5, below every message", in)
	in.FreeLE(25) // frees the messages ending at 10 and 20, not the one ending at 30
	window{count: 2, bytes: 200}.check(t, "ack of 25", in)

	// Two more wrap around the ring's end; order must be kept.
	in.Add(50, 100)
	in.Add(60, 100)
	window{count: 4, bytes: 400, full: true}.check(t, "2 more sends, wrapped", in)
	in.FreeLE(50)
	window{count: 1, bytes: 100}.check(t, "ack of 50", in)
	in.FreeLE(60)
	window{}.check(t, "ack of 60", in)

	in.Add(70, 1)
	in.Reset()
	window{}.check(t, "reset", in)
}

// TestInflightsByBytes shows the window bounded by bytes: full once the
// bytes in flight reach maxBytes, even with message slots left, and a
// single message larger than the limit still goes when nothing is in
// flight (a large entry must not be refused forever).
func TestInflightsByBytes(t *testing.T) {
	in := NewInflights(100, 1000)
	in.Add(1, 400)
	in.Add(2, 500)
	window{count: 2, bytes: 900}.check(t, "900 bytes of 1000", in)
	in.Add(3, 100)
	window{count: 3, bytes: 1000, full: true}.check(t, "exactly 1000 bytes", in)
	in.FreeLE(1)
	window{count: 2, bytes: 600}.check(t, "ack of 1 frees 400 bytes", in)
	in.FreeLE(3)
	window{}.check(t, "ack of 3", in)

	in.Add(4, 5000)
	window{count: 1, bytes: 5000, full: true}.check(t, "one message over the limit", in)
	in.FreeLE(4)
	window{}.check(t, "its ack", in)
}

// TestInflightsGrowKeepsOrder shows that the ring, which starts small and
// grows to maxCount, keeps the messages in send order when it grows while
// wrapped.
func TestInflightsGrowKeepsOrder(t *testing.T) {
	in := NewInflights(16, 0)
	next := pb.Index(1)
	add := func(n int) {
		for i := 0; i < n; i++ {
			in.Add(next, 1)
			next++
		}
	}
	add(4)       // ring of 4: [1 2 3 4]
	in.FreeLE(2) // start moves to slot 2
	add(2)       // wraps: 5 and 6 in slots 0 and 1
	add(5)       // grows while wrapped
	in.FreeLE(8) // frees 3..8: six messages
	if got := in.Count(); got != 3 {
		t.Fatalf("after freeing up to 8: %d in flight, want 3 (9, 10, 11)", got)
	}
	in.FreeLE(10)
	if got := in.Count(); got != 1 {
		t.Fatalf("after freeing up to 10: %d in flight, want 1 (11)", got)
	}
	in.FreeLE(11)
	window{}.check(t, "all acknowledged", in)
}

// TestInflightsAddToFullPanics shows that sending past the window is a
// programming error, not something to absorb.
func TestInflightsAddToFullPanics(t *testing.T) {
	in := NewInflights(1, 0)
	in.Add(1, 1)
	defer func() {
		if recover() == nil {
			t.Fatal("Add to a full window did not panic")
		}
	}()
	in.Add(2, 1)
}

// TestInflightsMinimumCount shows that a window of zero or fewer messages
// is taken as one, so replication can always make progress.
func TestInflightsMinimumCount(t *testing.T) {
	in := NewInflights(0, 0)
	if in.Full() {
		t.Fatal("an empty window of 0 messages is full: nothing could ever be sent")
	}
	in.Add(1, 1)
	if !in.Full() {
		t.Fatal("a window of 0 messages holds more than one")
	}
}
