package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
)

// countBatches forwards requests and counts the batches and the plain
// requests, optionally losing the answers of the first lose batches.
type countBatches struct {
	rt             http.RoundTripper
	batches, plain atomic.Int64
	lose           atomic.Int32
}

func (c *countBatches) RoundTrip(r *http.Request) (*http.Response, error) {
	isBatch := r.URL.Path == api.PathBatch
	if isBatch {
		c.batches.Add(1)
	} else {
		c.plain.Add(1)
	}
	resp, err := c.rt.RoundTrip(r)
	if err == nil && isBatch && c.lose.Add(-1) >= 0 {
		resp.Body.Close()
		return nil, errors.New("connection reset (injected)")
	}
	return resp, err
}

// concurrently runs f(i) for i in [0, n) at once and returns the errors.
func concurrently(n int, f func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = f(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// TestClientBatchesConcurrentCalls: calls that queue behind the requests in
// flight travel in batches, each still answered as its own: a put's index,
// a get's value and revision, a failed CAS's precondition error, a missing
// key's not-found.
func TestClientBatchesConcurrentCalls(t *testing.T) {
	ss := startCluster(t)
	rt := &countBatches{rt: http.DefaultTransport}
	c := newClient(t, Config{Endpoints: endpoints(ss), Transport: rt, MaxBatchInflight: 1})
	cx := ctx(t, 20*time.Second)
	const n = 64
	idx := make([]uint64, n)
	for _, err := range concurrently(n, func(i int) (err error) {
		idx[i], err = c.Put(cx, fmt.Sprintf("k%d", i), fmt.Appendf(nil, "v%d", i))
		return err
	}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint64]bool{}
	for i, x := range idx {
		if x == 0 || seen[x] {
			t.Fatalf("put %d got index %d: want distinct, non-zero log positions", i, x)
		}
		seen[x] = true
	}
	if rt.batches.Load() == 0 {
		t.Fatalf("%d concurrent puts with one request in flight went as %d plain requests and no batch", n, rt.plain.Load())
	}
	errs := concurrently(n, func(i int) error {
		key := fmt.Sprintf("k%d", i)
		switch i % 4 {
		case 0:
			kv, err := c.Get(cx, key)
			if err == nil && (string(kv.Value) != fmt.Sprintf("v%d", i) || kv.Rev != idx[i]) {
				err = fmt.Errorf("get %s = %q rev %d, want v%d rev %d", key, kv.Value, kv.Rev, i, idx[i])
			}
			return err
		case 1:
			if _, err := c.Get(cx, "missing"+key); !IsNotFound(err) {
				return fmt.Errorf("get of a missing key: %v, want not found", err)
			}
		case 2:
			if _, err := c.Put(cx, key, []byte("x"), IfMatch(idx[i]+1000)); !IsPreconditionFailed(err) {
				return fmt.Errorf("CAS with a wrong revision: %v, want precondition failed", err)
			}
		case 3:
			_, err := c.Put(cx, key, []byte("y"), IfMatch(idx[i]))
			return err
		}
		return nil
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestClientBatchLostAnswerAppliesOnce: a batch whose answer is lost is
// retried with the same Idempotency-Keys, so each append applies once.
func TestClientBatchLostAnswerAppliesOnce(t *testing.T) {
	ss := startCluster(t)
	rt := &countBatches{rt: http.DefaultTransport}
	c := newClient(t, Config{Endpoints: endpoints(ss), Transport: rt, MaxBatchInflight: 1})
	cx := ctx(t, 20*time.Second)
	if _, err := c.Put(cx, "warm", nil); err != nil { // learn the leader
		t.Fatal(err)
	}
	rt.lose.Store(2)
	const n = 32
	for _, err := range concurrently(n, func(i int) error {
		_, err := c.Append(cx, fmt.Sprintf("ctr%d", i%4), []byte("x"))
		return err
	}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if rt.lose.Load() >= 0 {
		t.Fatalf("only %d batches were sent; the test wants lost answers", rt.batches.Load())
	}
	for k := range 4 {
		kv, err := c.Get(cx, fmt.Sprintf("ctr%d", k))
		if err != nil || len(kv.Value) != n/4 {
			t.Fatalf("ctr%d = %q, %v; want %d appends applied once each", k, kv.Value, err, n/4)
		}
	}
}

// TestClientBatchingOff: MaxBatchOps 1 sends every call alone.
func TestClientBatchingOff(t *testing.T) {
	ss := startCluster(t)
	rt := &countBatches{rt: http.DefaultTransport}
	c := newClient(t, Config{Endpoints: endpoints(ss), Transport: rt, MaxBatchOps: 1, MaxBatchInflight: 1})
	cx := ctx(t, 20*time.Second)
	for _, err := range concurrently(32, func(i int) error {
		_, err := c.Put(cx, fmt.Sprintf("k%d", i), []byte("v"))
		return err
	}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if b := rt.batches.Load(); b != 0 {
		t.Fatalf("%d batches sent with batching off", b)
	}
}

// blockFirst holds the first request until released.
type blockFirst struct {
	rt      http.RoundTripper
	once    atomic.Bool
	release chan struct{}
	started chan struct{}
}

func (b *blockFirst) RoundTrip(r *http.Request) (*http.Response, error) {
	if b.once.CompareAndSwap(false, true) {
		close(b.started)
		<-b.release
	}
	return b.rt.RoundTrip(r)
}

// TestClientQueuedCallContextEnds: a call waiting for a batch whose
// context ends before it is sent fails as not applied (it never left), and
// the batch that follows does not carry it.
func TestClientQueuedCallContextEnds(t *testing.T) {
	ss := startCluster(t)
	rt := &blockFirst{rt: http.DefaultTransport, release: make(chan struct{}), started: make(chan struct{})}
	c := newClient(t, Config{Endpoints: endpoints(ss), Transport: rt, MaxBatchInflight: 1})
	cx := ctx(t, 20*time.Second)
	first := make(chan error, 1)
	go func() {
		_, err := c.Put(cx, "first", []byte("1"))
		first <- err
	}()
	<-rt.started // the only request slot is taken
	short, cancel := context.WithTimeout(cx, 50*time.Millisecond)
	defer cancel()
	_, err := c.Put(short, "queued", []byte("q"))
	if err == nil || IsUnknownOutcome(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued put past its deadline: %v; want a definite failure wrapping the deadline", err)
	}
	close(rt.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(cx, "queued"); !IsNotFound(err) {
		t.Fatalf("get of the abandoned put: %v, want not found", err)
	}
}
