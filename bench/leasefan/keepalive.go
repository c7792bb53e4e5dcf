package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/raftkv/raftkv/client"
)

// Targets of the gRPC rows.
const (
	targetLeader = "leader"
	targetAll    = "all"
)

var targetLabel = map[string]string{
	targetLeader: "streams to the leader",
	targetAll:    "streams over 3 members",
}

// latencyMaxMicros bounds the latency histograms (60 s).
const latencyMaxMicros = 60_000_000

// window is the measured part of a row: answers received in [from, to)
// are counted; no keep-alive is sent from to on.
type window struct{ from, to time.Time }

// acks holds, for each lease (by index), the unix nanoseconds at which
// the last keep-alive that was answered was sent: its renewal happened
// no earlier, so the lease's time to live is at least TTL minus the time
// since.
type acks struct{ sent []atomic.Int64 }

// result is what the workers of one row saw.
type result struct {
	hists    []*hdrhistogram.Histogram
	answers  []int64 // answers in the window, per worker
	errors   atomic.Int64
	firstErr atomic.Pointer[error]
}

func newResult(workers int) *result {
	r := &result{hists: make([]*hdrhistogram.Histogram, workers), answers: make([]int64, workers)}
	for i := range r.hists {
		r.hists[i] = hdrhistogram.New(1, latencyMaxMicros, 3)
	}
	return r
}

func (r *result) fail(err error) {
	r.errors.Add(1)
	r.firstErr.CompareAndSwap(nil, &err)
}

// record notes an answer to a keep-alive of lease idx sent at sent and
// answered at now with ttl.
func (r *result) record(w int, a *acks, win window, idx int, sent, now time.Time, ttl int64) {
	if ttl <= 0 {
		r.fail(fmt.Errorf("lease #%d: keep-alive answered TTL %d (lease gone)", idx, ttl))
		return
	}
	a.sent[idx].Store(sent.UnixNano())
	if !now.Before(win.from) && now.Before(win.to) {
		r.answers[w]++
		_ = r.hists[w].RecordValue(max(1, now.Sub(sent).Microseconds()))
	}
}

// split gives worker w of n the indices of its share of the leases.
func split(leases, w, n int) []int {
	var out []int
	for i := w; i < leases; i += n {
		out = append(out, i)
	}
	return out
}

// keepAliveGRPC keeps every lease alive over o.conns gRPC connections of
// etcd's Go client, each with o.streams LeaseKeepAlive streams, the
// connections spread over addrs. Each stream renews its share of the
// leases round robin with o.window keep-alives in flight. It returns once
// all streams are open and the wait for the result.
func keepAliveGRPC(ctx context.Context, addrs []string, ids []int64, o options, a *acks, win window) (func() *result, error) {
	var conns []*clientv3.Client
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for i := range o.conns {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{addrs[i%len(addrs)]}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("etcd client for %s: %w", addrs[i%len(addrs)], err)
		}
		conns = append(conns, c)
	}
	n := o.conns * o.streams
	res := newResult(n)
	var streams []pb.Lease_LeaseKeepAliveClient
	for s := range n {
		st, err := pb.NewLeaseClient(conns[s%o.conns].ActiveConnection()).LeaseKeepAlive(ctx)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("opening keep-alive stream %d: %w", s, err)
		}
		streams = append(streams, st)
	}
	var wg sync.WaitGroup
	for s, st := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runStream(st, s, split(len(ids), s, n), ids, o.window, res, a, win)
		}()
	}
	return func() *result {
		wg.Wait()
		closeAll()
		return res
	}, nil
}

// runStream sends keep-alives on one stream until win.to, at most
// inflight unanswered, and checks each answer. A stream answers in order
// (both stores handle a stream's requests one at a time), so answers are
// matched to requests first in, first out.
func runStream(st pb.Lease_LeaseKeepAliveClient, w int, mine []int, ids []int64, inflight int, res *result, a *acks, win window) {
	type sent struct {
		idx int
		at  time.Time
	}
	pending := make(chan sent, inflight)
	tokens := make(chan struct{}, inflight)
	dead := make(chan struct{})
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for p := range pending {
			resp, err := st.Recv()
			now := time.Now()
			if err != nil {
				res.fail(fmt.Errorf("stream %d: receiving: %w", w, err))
				close(dead)
				return
			}
			if resp.ID != ids[p.idx] {
				res.fail(fmt.Errorf("stream %d: answer for lease %x where %x was due", w, resp.ID, ids[p.idx]))
			} else {
				res.record(w, a, win, p.idx, p.at, now, resp.TTL)
			}
			<-tokens
		}
	}()
send:
	for k := 0; time.Now().Before(win.to); k++ {
		select {
		case tokens <- struct{}{}:
		case <-dead:
			break send
		}
		idx := mine[k%len(mine)]
		p := sent{idx: idx, at: time.Now()}
		if err := st.Send(&pb.LeaseKeepAliveRequest{ID: ids[idx]}); err != nil {
			res.fail(fmt.Errorf("stream %d: sending: %w", w, err))
			break
		}
		// Queued after the send, so the receiver waits only for answers
		// to requests that went out; it takes them in this same order.
		pending <- p
	}
	close(pending)
	<-recvDone
	_ = st.CloseSend()
}

// keepAliveHTTP keeps every lease alive through raftkv's Go client
// (POST /v1/lease/keepalive, sent to the leader), o.httpClients callers
// each renewing its share of the leases round robin, one call at a time.
func keepAliveHTTP(ctx context.Context, endpoints []string, ids []int64, o options, a *acks, win window) (func() *result, error) {
	cl, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		return nil, fmt.Errorf("raftkv client: %w", err)
	}
	n := o.httpClients
	res := newResult(n)
	var wg sync.WaitGroup
	for w := range n {
		mine := split(len(ids), w, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; time.Now().Before(win.to); k++ {
				idx := mine[k%len(mine)]
				at := time.Now()
				ttl, err := cl.KeepAliveOnce(ctx, ids[idx])
				if err != nil {
					res.fail(fmt.Errorf("caller %d: keep-alive of lease %x: %w", w, ids[idx], err))
					if ctx.Err() != nil {
						return
					}
					continue
				}
				res.record(w, a, win, idx, at, time.Now(), ttl)
			}
		}()
	}
	return func() *result {
		wg.Wait()
		cl.Close()
		return res
	}, nil
}

// grant creates n leases of ttl seconds through the etcd API at addr.
func grant(ctx context.Context, addr string, n int, ttl int64) ([]int64, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ids := make([]int64, n)
	const granters = 64
	var wg sync.WaitGroup
	var next atomic.Int64
	var first atomic.Pointer[error]
	for range granters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || first.Load() != nil {
					return
				}
				r, err := c.Grant(ctx, ttl)
				if err == nil && r.TTL != ttl {
					err = fmt.Errorf("granted TTL %d, asked %d", r.TTL, ttl)
				}
				if err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
				ids[i] = int64(r.ID)
			}
		}()
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		return nil, *p
	}
	return ids, nil
}

// check is the state of the leases after a row.
type check struct {
	checked  int
	bad      int   // expired, unknown, or with less time left than their last renewal gives
	late     int   // last renewed too long before the check to tell
	minLeft  int64 // least TTL left, seconds
	firstBad error
	listed   int // leases the store lists
}

// checkLeases asks, through the etcd API at addr, every lease's time to
// live. A lease whose last answered keep-alive was sent at s must have at
// least ttl − (now − s) seconds left, less slack for whole-second rounding.
func checkLeases(ctx context.Context, addr string, ids []int64, ttl int64, a *acks) (check, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return check{}, err
	}
	defer c.Close()
	const slack = 2 // seconds
	out := check{checked: len(ids), minLeft: ttl}
	var mu sync.Mutex
	bad := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		out.bad++
		if out.firstBad == nil {
			out.firstBad = err
		}
	}
	const checkers = 32
	var wg sync.WaitGroup
	var next atomic.Int64
	var rpcErr atomic.Pointer[error]
	for range checkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ids) || rpcErr.Load() != nil {
					return
				}
				r, err := c.TimeToLive(ctx, clientv3.LeaseID(ids[i]))
				if err != nil {
					rpcErr.CompareAndSwap(nil, &err)
					return
				}
				sent := a.sent[i].Load()
				if sent == 0 {
					bad(fmt.Errorf("lease %x: no keep-alive answered in the row", ids[i]))
					continue
				}
				since := time.Since(time.Unix(0, sent))
				want := ttl - int64(since/time.Second) - 1 - slack
				mu.Lock()
				out.minLeft = min(out.minLeft, r.TTL)
				if want <= 0 {
					// It may have expired since the row ended (a TTL
					// shorter than the check takes).
					out.late++
				}
				mu.Unlock()
				if want > 0 && r.TTL < want {
					bad(fmt.Errorf("lease %x: %d s left, %v after its last renewal was sent (want ≥ %d)", ids[i], r.TTL, since.Round(time.Millisecond), want))
				}
			}
		}()
	}
	wg.Wait()
	if p := rpcErr.Load(); p != nil {
		return out, fmt.Errorf("time to live: %w", *p)
	}
	ls, err := c.Leases(ctx)
	if err != nil {
		return out, fmt.Errorf("listing leases: %w", err)
	}
	out.listed = len(ls.Leases)
	if out.listed != len(ids) {
		bad(fmt.Errorf("the store lists %d leases, %d were granted", out.listed, len(ids)))
	}
	return out, nil
}

// errNoAnswers is a row in which no keep-alive was answered in the window.
var errNoAnswers = errors.New("no keep-alive answered in the measured window")
