package client

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMutexExcludesAndFences runs four sessions that take a mutex in turn:
// no two hold it at once, every hold's fencing token is above every
// earlier one's, and a fenced write succeeds only for the holder.
func TestMutexExcludesAndFences(t *testing.T) {
	ss := startCluster(t)
	c := newClient(t, Config{Endpoints: endpoints(ss)})
	cx := ctx(t, 60*time.Second)
	var holding atomic.Int32
	var mu sync.Mutex
	var tokens []int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := NewSession(cx, c, 2)
			if err != nil {
				errs <- err
				return
			}
			defer s.Close(context.Background())
			m := NewMutex(s, "locks/a")
			for range 3 {
				if err := m.Lock(cx); err != nil {
					errs <- err
					return
				}
				if n := holding.Add(1); n != 1 {
					t.Errorf("%d holders at once", n)
				}
				mu.Lock()
				tokens = append(tokens, m.Token())
				mu.Unlock()
				r, err := c.Txn(cx, []Cmp{m.IsOwner()}, []Op{OpPut("guarded", []byte("x"))}, nil)
				if err != nil || !r.Succeeded {
					t.Errorf("fenced write by the holder: %+v %v", r, err)
				}
				time.Sleep(5 * time.Millisecond)
				holding.Add(-1)
				stale := m.IsOwner()
				if err := m.Unlock(cx); err != nil {
					errs <- err
					return
				}
				if r, err := c.Txn(cx, []Cmp{stale}, []Op{OpPut("guarded", []byte("late"))}, nil); err != nil || r.Succeeded {
					t.Errorf("fenced write after unlock went through: %+v %v", r, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Fatalf("fencing tokens not increasing: %v", tokens)
		}
	}
	if len(tokens) != 12 {
		t.Fatalf("%d holds, want 12", len(tokens))
	}
}

// TestMutexReleasedWhenHolderDies: a holder that stops renewing (as a
// crashed process does) loses the lock once its lease expires, and the
// next holder's token is higher.
func TestMutexReleasedWhenHolderDies(t *testing.T) {
	ss := startCluster(t)
	c := newClient(t, Config{Endpoints: endpoints(ss)})
	cx := ctx(t, 30*time.Second)
	a, err := NewSession(cx, c, 1)
	if err != nil {
		t.Fatal(err)
	}
	ma := NewMutex(a, "locks/b")
	if err := ma.Lock(cx); err != nil {
		t.Fatal(err)
	}
	b, err := NewSession(cx, c, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	a.Orphan()
	start := time.Now()
	mb := NewMutex(b, "locks/b")
	if err := mb.Lock(cx); err != nil {
		t.Fatal(err)
	}
	if mb.Token() <= ma.Token() {
		t.Fatalf("token %d after %d", mb.Token(), ma.Token())
	}
	t.Logf("lock passed on %v after the holder stopped renewing", time.Since(start))
}

// TestElectionHandsOver: the first campaigner leads; the second waits
// until the first resigns; Leader names whoever leads.
func TestElectionHandsOver(t *testing.T) {
	ss := startCluster(t)
	c := newClient(t, Config{Endpoints: endpoints(ss)})
	cx := ctx(t, 30*time.Second)
	s1, _ := NewSession(cx, c, 5)
	s2, _ := NewSession(cx, c, 5)
	defer s1.Close(context.Background())
	defer s2.Close(context.Background())
	e1, e2 := NewElection(s1, "elect"), NewElection(s2, "elect")
	if err := e1.Campaign(cx, []byte("one")); err != nil {
		t.Fatal(err)
	}
	won := make(chan error, 1)
	go func() { won <- e2.Campaign(cx, []byte("two")) }()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-won:
		t.Fatalf("second campaign ended while the first leads: %v", err)
	default:
	}
	if err := e1.Proclaim(cx, []byte("one, again")); err != nil {
		t.Fatal(err)
	}
	if l, err := e1.Leader(cx); err != nil || string(l.Value) != "one, again" {
		t.Fatalf("leader %+v %v", l, err)
	}
	first := e1.Token()
	if err := e1.Resign(cx); err != nil {
		t.Fatal(err)
	}
	if err := <-won; err != nil {
		t.Fatal(err)
	}
	if l, err := e2.Leader(cx); err != nil || string(l.Value) != "two" || e2.Token() <= first {
		t.Fatalf("leader after resign %+v %v", l, err)
	}
}
