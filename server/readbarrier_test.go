package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
)

// gatedBarrier is a barrier that counts its calls and blocks each until
// the test releases it with the result to return.
type gatedBarrier struct {
	calls   atomic.Int32
	started chan int32
	release chan error
}

func newGatedBarrier() *gatedBarrier {
	return &gatedBarrier{started: make(chan int32, 16), release: make(chan error)}
}

func (g *gatedBarrier) barrier(ctx context.Context) error {
	n := g.calls.Add(1)
	g.started <- n
	select {
	case err := <-g.release:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestReadCoalescerJoinsOnlyLaterRounds shows that a read arriving while a
// barrier runs is not answered by that barrier (it began before the read
// and so may miss a write completed just before the read), but by the
// next one, which every read that arrived meanwhile shares.
func TestReadCoalescerJoinsOnlyLaterRounds(t *testing.T) {
	g := newGatedBarrier()
	c := newReadCoalescer(g.barrier, 5*time.Second)
	first := make(chan error, 1)
	go func() { first <- c.wait(context.Background()) }()
	if n := <-g.started; n != 1 {
		t.Fatalf("first barrier is call %d", n)
	}
	// Ten reads arrive while round 1 runs.
	const late = 10
	var wg sync.WaitGroup
	var answered atomic.Int32
	errs := make(chan error, late)
	for range late {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- c.wait(context.Background())
			answered.Add(1)
		}()
	}
	time.Sleep(50 * time.Millisecond) // let them queue behind round 1
	g.release <- nil
	if err := <-first; err != nil {
		t.Fatalf("first read: %v", err)
	}
	// Round 2 starts for the ten; none of them was answered by round 1.
	if n := <-g.started; n != 2 {
		t.Fatalf("second barrier is call %d", n)
	}
	if a := answered.Load(); a != 0 {
		t.Fatalf("%d reads that arrived during round 1 were answered by it", a)
	}
	boom := errors.New("not leader")
	g.release <- boom
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, boom) {
			t.Fatalf("late read got %v, want round 2's error", err)
		}
	}
	if n := g.calls.Load(); n != 2 {
		t.Fatalf("11 reads took %d barriers, want 2", n)
	}
}

// TestReadCoalescerCallerGivesUp shows that a caller whose context ends
// returns at once, and the round still completes for the others.
func TestReadCoalescerCallerGivesUp(t *testing.T) {
	g := newGatedBarrier()
	c := newReadCoalescer(g.barrier, 5*time.Second)
	first := make(chan error, 1)
	go func() { first <- c.wait(context.Background()) }()
	<-g.started
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- c.wait(ctx) }()
	other := make(chan error, 1)
	go func() { other <- c.wait(context.Background()) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v", err)
	}
	g.release <- nil
	<-first
	<-g.started
	g.release <- nil
	if err := <-other; err != nil {
		t.Fatalf("remaining caller got %v", err)
	}
}

// TestReadCoalescerRoundTimeout shows a round is bounded by its own
// timeout when the barrier never completes.
func TestReadCoalescerRoundTimeout(t *testing.T) {
	g := newGatedBarrier()
	c := newReadCoalescer(g.barrier, 30*time.Millisecond)
	if err := c.wait(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the round's deadline", err)
	}
	// The coalescer is idle again: the next read starts a round at once.
	done := make(chan error, 1)
	go func() { done <- c.wait(context.Background()) }()
	<-g.started
	<-g.started
	g.release <- nil
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestWriteResponseEncoding shows the hand-encoded write answer is what
// encoding/json makes of api.WriteResponse.
func TestWriteResponseEncoding(t *testing.T) {
	for _, wr := range []api.WriteResponse{{}, {Index: 1, Rev: 1, Revision: 1}, {Index: 1<<64 - 1, Rev: 42, Revision: 1 << 40}} {
		rec := httptest.NewRecorder()
		writeWriteResponse(rec, wr)
		want, err := json.Marshal(wr)
		if err != nil {
			t.Fatal(err)
		}
		if got := rec.Body.String(); got != string(want)+"\n" {
			t.Errorf("%+v: got %q, encoding/json says %q", wr, got, want)
		}
		if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%+v: status %d, Content-Type %q", wr, rec.Code, rec.Header().Get("Content-Type"))
		}
	}
}
