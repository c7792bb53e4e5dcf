package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"

	"github.com/raftkv/raftkv/api"
)

// Batching. A call that finds its kind's requests all busy waits in a
// queue; the next free request carries everything queued as one POST
// /v1/batch. A call that finds a request free goes out alone, as a plain
// PUT or GET, so a lone caller sees no batching at all. This is how many
// goroutines sharing one Client get the throughput of a few large
// requests instead of paying HTTP's per-request costs for each.

// Batching defaults (Config.MaxBatchOps, Config.MaxBatchInflight).
const (
	DefaultMaxBatchOps      = 256
	DefaultMaxBatchInflight = 4
	// maxBatchBodyBytes bounds the values a batch carries (the server's
	// default limit is 4 MiB, and base64 adds a third).
	maxBatchBodyBytes = 1 << 20
)

// call is one single-key operation waiting to be sent.
type call struct {
	ctx   context.Context
	op    api.BatchOp
	alone request // the same operation as a single request
	// sendAlone sends alone as a single request; a batch of one uses it.
	sendAlone func(context.Context, request) result
	state     atomic.Int32
	done      chan struct{}
	res       result
}

// Call states: queued, then taken by a sender or abandoned by its caller.
const (
	callQueued int32 = iota
	callTaken
	callAbandoned
)

// result is a call's outcome: retry asks the caller to send it alone (the
// batch answered it with a code that a single request would have retried).
type result struct {
	index, rev uint64
	value      []byte
	err        error
	retry      bool
	// maybeApplied: the batch may have applied the write being retried.
	maybeApplied bool
}

// batcher coalesces calls of one kind: writes, or reads at one level.
type batcher struct {
	c           *Client
	write       bool
	consistency string // of reads

	mu       sync.Mutex
	queue    []*call
	inflight int
}

// run sends cl (alone or in a batch) and returns its outcome.
func (b *batcher) run(cl *call, alone func(context.Context, request) result) result {
	if b.c.cfg.MaxBatchOps == 1 {
		return alone(cl.ctx, cl.alone)
	}
	b.mu.Lock()
	if b.inflight < b.c.cfg.MaxBatchInflight && len(b.queue) == 0 {
		b.inflight++
		b.mu.Unlock()
		res := alone(cl.ctx, cl.alone)
		b.release()
		return res
	}
	cl.done, cl.sendAlone = make(chan struct{}), alone
	b.queue = append(b.queue, cl)
	if b.inflight < b.c.cfg.MaxBatchInflight {
		b.inflight++
		go b.drive()
	}
	b.mu.Unlock()
	select {
	case <-cl.done:
	case <-cl.ctx.Done():
		if cl.state.CompareAndSwap(callQueued, callAbandoned) {
			return result{err: fmt.Errorf("client: %s %s: not sent: %w", cl.alone.method, cl.alone.path, cl.ctx.Err())}
		}
		select {
		case <-cl.done:
		case <-cl.ctx.Done():
			return result{err: b.c.giveUp(cl.alone, cl.ctx.Err(), b.write)}
		}
	}
	if cl.res.retry {
		r := cl.alone
		r.maybeApplied = cl.res.maybeApplied
		return alone(cl.ctx, r)
	}
	return cl.res
}

// release frees a request slot, handing it to queued calls if any.
func (b *batcher) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inflight--
	if len(b.queue) > 0 {
		b.inflight++
		go b.drive()
	}
}

// drive sends what is queued until the queue is empty.
func (b *batcher) drive() {
	for {
		batch := b.take()
		if len(batch) == 0 {
			return
		}
		b.send(batch)
	}
}

// take removes up to MaxBatchOps calls (and about maxBatchBodyBytes of
// values) from the queue, skipping abandoned ones. With nothing left it
// gives the slot up.
func (b *batcher) take() []*call {
	b.mu.Lock()
	defer b.mu.Unlock()
	var batch []*call
	bytes, n := 0, 0
	for n < len(b.queue) && len(batch) < b.c.cfg.MaxBatchOps {
		cl := b.queue[n]
		if len(batch) > 0 && bytes+len(cl.op.Value) > maxBatchBodyBytes {
			break
		}
		n++
		if cl.state.CompareAndSwap(callQueued, callTaken) {
			batch = append(batch, cl)
			bytes += len(cl.op.Value)
		}
	}
	clear(b.queue[:n])
	b.queue = b.queue[n:]
	if len(b.queue) == 0 {
		b.queue = nil // let a long queue's array go
	}
	if len(batch) == 0 {
		b.inflight--
	}
	return batch
}

// send carries batch as one request and hands each call its result. A
// batch of one is sent as the call's own single request, in this slot.
func (b *batcher) send(batch []*call) {
	if len(batch) == 1 {
		cl := batch[0]
		cl.res = cl.sendAlone(cl.ctx, cl.alone)
		close(cl.done)
		return
	}
	req := api.BatchRequest{Ops: make([]api.BatchOp, len(batch))}
	for i, cl := range batch {
		req.Ops[i] = cl.op
	}
	body := api.AppendBatchRequest(nil, &req)
	path := api.PathBatch
	if !b.write {
		path += "?consistency=" + url.QueryEscape(b.consistency)
	}
	r := request{method: http.MethodPost, path: path, body: body,
		header:     http.Header{"Content-Type": {api.ContentTypeBatch}},
		toLeader:   b.write || b.consistency != api.Stale,
		idempotent: true, // every write carries its Idempotency-Key
		write:      b.write}
	ctx, cancel := context.WithTimeout(context.Background(), b.c.cfg.RequestTimeout)
	defer cancel()
	resp, err := b.c.do(ctx, r)
	if err != nil {
		b.finish(batch, nil, err)
		return
	}
	out, err := api.DecodeBatchResponse(resp.body)
	if err != nil || len(out.Results) != len(batch) {
		// An answer that does not decode: the writes may have applied.
		// Each is retried alone with its Idempotency-Key, which returns
		// the first outcome if so.
		b.finish(batch, nil, nil)
		return
	}
	b.finish(batch, out.Results, nil)
}

// finish hands each call its result: rs[i], or err, or (both nil) a
// request to retry alone.
func (b *batcher) finish(batch []*call, rs []api.BatchResult, err error) {
	for i, cl := range batch {
		switch {
		case err != nil:
			cl.res = result{err: err}
		case rs == nil:
			cl.res = result{retry: true, maybeApplied: b.write}
		default:
			cl.res = opResult(rs[i], cl.alone)
		}
		close(cl.done)
	}
}

// opResult turns one op's answer into its call's result, retrying alone
// what a single request's retry loop would retry.
func opResult(r api.BatchResult, alone request) result {
	if r.Status == http.StatusOK {
		return result{index: r.Index, rev: r.Rev, value: r.Value}
	}
	switch r.Code {
	case api.CodeNoLeader, api.CodeBusy, api.CodeShuttingDown:
		return result{retry: true}
	case api.CodeUnknownOutcome:
		if alone.idempotent {
			return result{retry: true, maybeApplied: alone.write}
		}
	}
	return result{rev: r.Rev, err: &Error{Status: r.Status, Code: r.Code, Message: r.Error}}
}
