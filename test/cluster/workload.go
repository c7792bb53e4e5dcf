//go:build cluster

package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftkv/raftkv/api"
)

// workloadConfig says how many clients of each kind run.
type workloadConfig struct {
	sharedClients int           // porcupine-checked clients on sharedKeys
	sharedKeys    int           // keys shared by those clients
	ownClients    int           // one key per client, checked against its own expectation
	appendClients int           // all append to one key through a reply-dropping client
	batchClients  int           // porcupine-checked, on sharedKeys, sharing one batching client.Client
	dropReplies   float64       // probability an append's reply is thrown away
	readHeavy     bool          // 80% reads instead of 40%
	timeout       time.Duration // per request
}

func defaultWorkload() workloadConfig {
	return workloadConfig{sharedClients: 5, sharedKeys: 3, ownClients: 2, appendClients: 3, batchClients: 4,
		dropReplies: 0.2, timeout: 2 * time.Second}
}

// Retries of a write carrying an Idempotency-Key, until a definite answer.
const (
	retryWindow  = 40 * time.Second // from the write's first attempt
	retryBackoff = 100 * time.Millisecond
	appendAllKey = "all/append"
	failPause    = 20 * time.Millisecond
)

// workload runs the clients and records their history.
type workload struct {
	c    *cluster
	cfg  workloadConfig
	hc   *http.Client // reliable
	drop *http.Client // throws some replies away
	stop chan struct{}
	wg   sync.WaitGroup

	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	stale []staleRead
	// tokens: every write's token -> its invocation time, for stale reads
	tokens    map[string]int64
	okTimes   []int64 // completion of every successful write
	own       []*ownClient
	appenders []*appendClient
	stats     workloadStats
	coord     *coord      // coordclients.go
	k8s       *k8sClients // k8sclients.go
}

type workloadStats struct {
	ops, ok, failed, unknown, unresolved atomic.Int64
	batches                              atomic.Int64 // POST /v1/batch requests of the batch clients
}

type staleRead struct {
	key        string
	value      string
	call, ret  int64
	found      bool
	clientDesc string
}

func (c *cluster) startWorkload(cfg workloadConfig) *workload {
	base := c.hc.Transport.(*http.Transport)
	w := &workload{c: c, cfg: cfg, stop: make(chan struct{}), start: time.Now(), tokens: map[string]int64{},
		hc:   &http.Client{Transport: base},
		drop: &http.Client{Transport: &dropReplies{base: base, p: cfg.dropReplies}},
	}
	for i := 0; i < cfg.sharedClients; i++ {
		w.wg.Add(1)
		go w.sharedClient(i)
	}
	for i := 0; i < cfg.ownClients; i++ {
		oc := &ownClient{id: cfg.sharedClients + i, key: fmt.Sprintf("own/%d", i)}
		w.own = append(w.own, oc)
		w.wg.Add(1)
		go w.ownLoop(oc)
	}
	for i := 0; i < cfg.appendClients; i++ {
		ac := &appendClient{id: i}
		w.appenders = append(w.appenders, ac)
		w.wg.Add(1)
		go w.appendLoop(ac)
	}
	w.startBatchClients()
	w.startCoordClients()
	w.startK8sClients()
	return w
}

// finish stops the clients and waits for them (writes still being retried
// with their Idempotency-Key get until their retry window ends).
func (w *workload) finish() {
	close(w.stop)
	w.wg.Wait()
}

func (w *workload) stopped() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

func (w *workload) now() int64 { return int64(time.Since(w.start)) }

// dropReplies is a transport that, with probability p, throws a reply away
// after the server sent it: the client sees an error and must retry.
type dropReplies struct {
	base http.RoundTripper
	p    float64
}

var errReplyDropped = errors.New("reply dropped by the test")

func (d *dropReplies) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := d.base.RoundTrip(r)
	if err == nil && rand.Float64() < d.p {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil, errReplyDropped
	}
	return resp, err
}

// endpoint picks a member for a request: any member that was started, up
// or not, reachable or not; the clients do not know about faults.
func (w *workload) endpoint() string {
	ms := w.c.all()
	var started []*member
	for _, m := range ms {
		if m.started() && !m.isRemoved() {
			started = append(started, m)
		}
	}
	return started[rand.IntN(len(started))].clientAddr()
}

// result is one HTTP exchange.
type result struct {
	status int
	body   []byte
	etag   string
	err    error
}

// send makes one request (redirects followed by net/http).
func send(ctx context.Context, hc *http.Client, method, addr, key, query string, body []byte, hdr map[string]string) result {
	url := "http://" + addr + api.PathKV + key
	if query != "" {
		url += "?" + query
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return result{err: err}
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return result{err: err}
	}
	return result{status: resp.StatusCode, body: b, etag: resp.Header.Get("ETag")}
}

// writeOutcome classifies a write's answer: a definite one (applied,
// precondition failed, not found), a failure that applied nothing
// (ok=false), or an unknown outcome.
func writeOutcome(r result) (out kvOutput, definite bool) {
	if r.err != nil {
		var de *dialError
		if errors.As(r.err, &de) {
			return kvOutput{}, false // never sent
		}
		return kvOutput{Unknown: true}, true
	}
	switch r.status {
	case http.StatusOK:
		var wr api.WriteResponse
		if json.Unmarshal(r.body, &wr) != nil {
			return kvOutput{Unknown: true}, true
		}
		return kvOutput{OK: true, Index: wr.Rev}, true
	case http.StatusPreconditionFailed:
		return kvOutput{Precondition: true}, true
	case http.StatusNotFound:
		return kvOutput{NotFound: true}, true
	case http.StatusGatewayTimeout, http.StatusInternalServerError:
		return kvOutput{Unknown: true}, true
	}
	return kvOutput{}, false // 503, 429, 4xx: nothing was applied
}

// readOutcome classifies a read; ok=false means it told nothing.
func readOutcome(r result) (kvOutput, bool) {
	if r.err != nil {
		return kvOutput{}, false
	}
	switch r.status {
	case http.StatusOK:
		rev, ok := api.ParseETag(r.etag)
		if !ok {
			return kvOutput{}, false
		}
		return kvOutput{OK: true, Value: string(r.body), Index: rev}, true
	case http.StatusNotFound:
		return kvOutput{NotFound: true}, true
	}
	return kvOutput{}, false
}

func (w *workload) record(client int, in kvInput, out kvOutput, call, ret int64) {
	w.stats.ops.Add(1)
	switch {
	case out.Unknown:
		w.stats.unknown.Add(1)
		ret = 1<<62 - 1 // may take effect at any time later
	default:
		w.stats.ok.Add(1)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if in.Op != opGet && !out.Unknown && out.OK {
		w.okTimes = append(w.okTimes, ret)
	}
	w.ops = append(w.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

// failed counts an operation that applied nothing and told nothing, and
// paces the client (a member that is down refuses at once).
func (w *workload) failed() {
	w.stats.ops.Add(1)
	w.stats.failed.Add(1)
	time.Sleep(failPause)
}

func (w *workload) noteToken(tok string, call int64) {
	w.mu.Lock()
	w.tokens[tok] = call
	w.mu.Unlock()
}

// sharedClient issues random operations on the shared keys.
func (w *workload) sharedClient(id int) {
	defer w.wg.Done()
	revs := map[string]uint64{} // last revision this client saw per key
	readPct := 40
	if w.cfg.readHeavy {
		readPct = 80
	}
	for seq := 0; !w.stopped(); seq++ {
		key := fmt.Sprintf("shared/%d", rand.IntN(w.cfg.sharedKeys))
		tok := fmt.Sprintf("%d.%d;", id, seq)
		ctx, cancel := context.WithTimeout(context.Background(), w.cfg.timeout)
		addr := w.endpoint()
		if rand.IntN(100) < readPct {
			w.sharedRead(ctx, id, key, addr, revs)
			cancel()
			continue
		}
		var in kvInput
		var r result
		call := w.now()
		w.noteToken(tok, call)
		switch n := rand.IntN(100); {
		case n < 30:
			in = kvInput{Op: opPut, Key: key, Value: tok}
			r = send(ctx, w.hc, http.MethodPut, addr, key, "", []byte(tok), nil)
		case n < 55:
			in = kvInput{Op: opAppend, Key: key, Value: tok}
			r = send(ctx, w.hc, http.MethodPost, addr, key, "op=append", []byte(tok), nil)
		case n < 80:
			in = kvInput{Op: opCAS, Key: key, Value: tok, Rev: max(revs[key], 1)}
			r = send(ctx, w.hc, http.MethodPut, addr, key, "", []byte(tok), map[string]string{"If-Match": api.FormatETag(in.Rev)})
		case n < 90:
			in = kvInput{Op: opCreate, Key: key, Value: tok}
			r = send(ctx, w.hc, http.MethodPut, addr, key, "", []byte(tok), map[string]string{"If-None-Match": "*"})
		default:
			in = kvInput{Op: opDelete, Key: key}
			r = send(ctx, w.hc, http.MethodDelete, addr, key, "", nil, nil)
		}
		ret := w.now()
		cancel()
		out, definite := writeOutcome(r)
		if !definite {
			w.failed()
			continue
		}
		if out.OK && in.Op != opDelete {
			revs[key] = out.Index
		}
		w.record(id, in, out, call, ret)
	}
}

func (w *workload) sharedRead(ctx context.Context, id int, key, addr string, revs map[string]uint64) {
	level := api.Linearizable
	switch n := rand.IntN(100); {
	case n < 30:
		level = api.Lease
	case n < 50:
		level = api.Stale
	}
	call := w.now()
	r := send(ctx, w.hc, http.MethodGet, addr, key, "consistency="+level, nil, nil)
	ret := w.now()
	out, ok := readOutcome(r)
	if !ok {
		w.failed()
		return
	}
	if out.OK {
		revs[key] = out.Index
	}
	if level == api.Stale {
		w.stats.ops.Add(1)
		w.stats.ok.Add(1)
		w.mu.Lock()
		w.stale = append(w.stale, staleRead{key: key, value: out.Value, call: call, ret: ret, found: out.OK,
			clientDesc: fmt.Sprintf("client %d via %s", id, addr)})
		w.mu.Unlock()
		return
	}
	w.record(id, kvInput{Op: opGet, Key: key, Consistency: level}, out, call, ret)
}

// idempotentWrite sends one write with an Idempotency-Key until a definite
// answer or the end of its retry window; the operation spans every attempt.
func (w *workload) idempotentWrite(hc *http.Client, method, key, query string, body []byte) (kvOutput, int64, int64, bool) {
	hdr := map[string]string{api.HeaderIdempotencyKey: fmt.Sprintf("%x", rand.Uint64())}
	call := w.now()
	deadline := time.Now().Add(retryWindow)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), w.cfg.timeout)
		r := send(ctx, hc, method, w.endpoint(), key, query, body, hdr)
		cancel()
		out, definite := writeOutcome(r)
		if definite && !out.Unknown {
			return out, call, w.now(), true
		}
		time.Sleep(retryBackoff)
	}
	w.stats.unresolved.Add(1)
	return kvOutput{Unknown: true}, call, w.now(), false
}

// ownClient owns one key and knows what it must hold.
type ownClient struct {
	id         int
	key        string
	expected   string
	exists     bool
	ambiguous  bool // a write never got a definite answer
	reads      int
	mismatches []string
}

func (w *workload) ownLoop(oc *ownClient) {
	defer w.wg.Done()
	for seq := 0; !w.stopped(); seq++ {
		tok := fmt.Sprintf("o%d.%d;", oc.id, seq)
		switch n := rand.IntN(100); {
		case n < 45:
			out, call, ret, ok := w.idempotentWrite(w.hc, http.MethodPost, oc.key, "op=append", []byte(tok))
			w.record(oc.id, kvInput{Op: opAppend, Key: oc.key, Value: tok}, out, call, ret)
			if !ok {
				oc.ambiguous = true
				return
			}
			oc.expected += tok
			oc.exists = true
		case n < 55:
			out, call, ret, ok := w.idempotentWrite(w.hc, http.MethodPut, oc.key, "", []byte(tok))
			w.record(oc.id, kvInput{Op: opPut, Key: oc.key, Value: tok}, out, call, ret)
			if !ok {
				oc.ambiguous = true
				return
			}
			oc.expected, oc.exists = tok, true
		default:
			level := api.Linearizable
			if n%2 == 0 {
				level = api.Lease
			}
			ctx, cancel := context.WithTimeout(context.Background(), w.cfg.timeout)
			call := w.now()
			r := send(ctx, w.hc, http.MethodGet, w.endpoint(), oc.key, "consistency="+level, nil, nil)
			ret := w.now()
			cancel()
			out, ok := readOutcome(r)
			if !ok {
				w.failed()
				continue
			}
			w.record(oc.id, kvInput{Op: opGet, Key: oc.key, Consistency: level}, out, call, ret)
			oc.reads++
			if out.OK != oc.exists || out.Value != oc.expected {
				oc.mismatches = append(oc.mismatches, fmt.Sprintf("%s read (%s) %q, expected %q",
					oc.key, level, short(out.Value), short(oc.expected)))
			}
		}
	}
}

// appendClient appends its tokens, in order, to the one shared key.
type appendClient struct {
	id         int
	acked      []string
	unresolved []string
}

func (w *workload) appendLoop(ac *appendClient) {
	defer w.wg.Done()
	for seq := 0; !w.stopped(); seq++ {
		tok := fmt.Sprintf("x%d.%d;", ac.id, seq)
		out, _, ret, ok := w.idempotentWrite(w.drop, http.MethodPost, appendAllKey, "op=append", []byte(tok))
		w.stats.ops.Add(1)
		if !ok {
			w.stats.unknown.Add(1)
			ac.unresolved = append(ac.unresolved, tok)
			return
		}
		w.stats.ok.Add(1)
		w.mu.Lock()
		w.okTimes = append(w.okTimes, ret)
		w.mu.Unlock()
		if out.OK {
			ac.acked = append(ac.acked, tok)
		}
	}
}

// checkStale checks stale reads against their guarantee: the value is one
// the store held, so every token in it was written by an operation invoked
// before the read returned.
func (w *workload) checkStale() []string {
	var bad []string
	for _, sr := range w.stale {
		if !sr.found {
			continue
		}
		for _, tok := range strings.SplitAfter(sr.value, ";") {
			if tok == "" {
				continue
			}
			call, ok := w.tokens[tok]
			if !ok || call > sr.ret {
				bad = append(bad, fmt.Sprintf("stale read of %s by %s returned %q: token %q was never written before it",
					sr.key, sr.clientDesc, short(sr.value), tok))
				break
			}
		}
	}
	return bad
}

// checkAppendAll checks the key every appender wrote: no token twice, every
// acknowledged token present, each client's tokens in its order.
func (w *workload) checkAppendAll(value string) []string {
	var bad []string
	seen := map[string]int{}
	for i, tok := range strings.SplitAfter(value, ";") {
		if tok == "" {
			continue
		}
		if _, dup := seen[tok]; dup {
			bad = append(bad, fmt.Sprintf("%s: token %q appears twice (Idempotency-Key did not hold)", appendAllKey, tok))
		}
		seen[tok] = i
	}
	for _, ac := range w.appenders {
		last := -1
		for _, tok := range ac.acked {
			pos, ok := seen[tok]
			switch {
			case !ok:
				bad = append(bad, fmt.Sprintf("%s: acknowledged append %q lost", appendAllKey, tok))
			case pos < last:
				bad = append(bad, fmt.Sprintf("%s: client %d's append %q out of order", appendAllKey, ac.id, tok))
			default:
				last = pos
			}
		}
	}
	return bad
}

// unavailability returns the gaps longer than minGap between successive
// successful writes.
func (w *workload) unavailability(minGap time.Duration) (windows int, longest, total time.Duration) {
	w.mu.Lock()
	times := append([]int64(nil), w.okTimes...)
	w.mu.Unlock()
	slices.Sort(times)
	for i := 1; i < len(times); i++ {
		if gap := time.Duration(times[i] - times[i-1]); gap > minGap {
			windows++
			total += gap
			longest = max(longest, gap)
		}
	}
	return
}
