//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/client"
)

// The coordination clients, each with a client.Client of its own:
//
//   - transaction clients read txn/0 and txn/1 with a linearizable range
//     and write both in a transaction that compares their mod revisions;
//     their history joins the porcupine check (txnmodel.go);
//   - watchers follow shared/ from revision 1 through every fault,
//     reconnecting by themselves; checkWatches holds what each saw to the
//     others and to every acknowledged write;
//   - lock clients take a client.Mutex and, while holding it, append
//     their fencing token to locks/log in a transaction fenced by
//     IsOwner; checkLockLog finds any two holds that overlapped.

const (
	txnClients    = 2
	watchClients  = 3
	lockClients   = 3
	coordClientID = 1000 // porcupine client ids of the transaction clients
	lockPrefix    = "locks/m"
	lockLogKey    = "locks/log"
	sessionTTL    = 3 // seconds
)

// coord is the coordination clients' state.
type coord struct {
	watchers []*watcher
	wwg      sync.WaitGroup
	wcancel  context.CancelFunc
	lockErrs []string
	mu       sync.Mutex
	holds    int // completed holds of the lock
	txnOK    int // transactions that succeeded
}

type watchedEvent struct {
	rev        int64
	key, typ   string
	value      string
	createRev  int64
	modVersion int64
}

type watcher struct {
	mu     sync.Mutex
	events []watchedEvent
	last   int64 // every change up to it has been seen
	err    string
}

func (w *workload) coordClient() *client.Client {
	var eps []string
	for _, m := range w.c.all() {
		if m.started() && !m.isRemoved() {
			eps = append(eps, m.clientAddr())
		}
	}
	c, err := client.New(client.Config{Endpoints: eps, Transport: w.c.hc.Transport.(*http.Transport),
		RequestTimeout: w.cfg.timeout * 4, BackoffMax: 200 * time.Millisecond})
	if err != nil {
		panic(err) // only for no endpoints, which a started cluster has
	}
	return c
}

func (w *workload) startCoordClients() {
	w.coord = &coord{}
	for i := range txnClients {
		w.wg.Add(1)
		go w.txnClient(w.coordClient(), coordClientID+i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.coord.wcancel = cancel
	for range watchClients {
		wt := &watcher{}
		w.coord.watchers = append(w.coord.watchers, wt)
		w.coord.wwg.Add(1)
		go w.watchLoop(ctx, w.coordClient(), wt)
	}
	for i := range lockClients {
		w.wg.Add(1)
		go w.lockClient(w.coordClient(), i)
	}
}

func pairOf(kvs []client.KeyValue) pairRead {
	var p pairRead
	for _, kv := range kvs {
		i := -1
		switch kv.Key {
		case "txn/0":
			i = 0
		case "txn/1":
			i = 1
		}
		if i >= 0 {
			p.Exists[i], p.Values[i], p.Revs[i] = true, string(kv.Value), uint64(kv.ModRevision)
		}
	}
	return p
}

func (w *workload) txnClient(c *client.Client, id int) {
	defer w.wg.Done()
	defer c.Close()
	for seq := 0; !w.stopped(); seq++ {
		ctx, cancel := context.WithTimeout(context.Background(), w.cfg.timeout)
		call := w.now()
		r, err := c.Range(ctx, txnKeys, []client.OpOption{client.WithPrefix()})
		ret := w.now()
		cancel()
		if err != nil {
			w.failed()
			continue
		}
		p := pairOf(r.KVs)
		w.record(id, kvInput{Op: opRange, Key: txnKeys}, kvOutput{OK: true, Pair: p}, call, ret)
		in := kvInput{Op: opTxn, Key: txnKeys, Rev: p.Revs[0], Rev2: p.Revs[1],
			Value: fmt.Sprintf("t%d.%d.a", id, seq), Value2: fmt.Sprintf("t%d.%d.b", id, seq)}
		if rand.IntN(4) == 0 && in.Rev > 0 {
			in.Rev-- // a stale compare: must fail
		}
		ctx, cancel = context.WithTimeout(context.Background(), w.cfg.timeout*4)
		call = w.now()
		tr, err := c.Txn(ctx,
			[]client.Cmp{client.Compare(client.ModRevision("txn/0"), "=", int64(in.Rev)), client.Compare(client.ModRevision("txn/1"), "=", int64(in.Rev2))},
			[]client.Op{client.OpPut("txn/0", []byte(in.Value)), client.OpPut("txn/1", []byte(in.Value2))},
			[]client.Op{client.OpGet(txnKeys, client.WithPrefix())})
		ret = w.now()
		cancel()
		var out kvOutput
		switch {
		case client.IsUnknownOutcome(err), client.Code(err) == api.CodeCompacted:
			// compacted: a retry answered from the exactly-once table
			// after the first attempt's read was compacted away; that
			// attempt applied, on one branch or the other.
			out.Unknown = true
		case err != nil:
			w.failed()
			continue
		case tr.Succeeded:
			out.OK, out.Index = true, uint64(tr.Revision)
			w.coord.mu.Lock()
			w.coord.txnOK++
			w.coord.mu.Unlock()
		default:
			out.Precondition, out.Pair = true, pairOf(tr.Results[0].Range.KVs)
		}
		w.record(id, in, out, call, ret)
	}
}

func (w *workload) watchLoop(ctx context.Context, c *client.Client, wt *watcher) {
	defer w.coord.wwg.Done()
	defer c.Close()
	for wr := range c.Watch(ctx, "shared/", client.WithWatchPrefix(), client.WithWatchRev(1), client.WithProgressInterval(200*time.Millisecond)) {
		wt.mu.Lock()
		if wr.Err != nil {
			wt.err = wr.Err.Error()
			wt.mu.Unlock()
			return
		}
		for _, e := range wr.Events {
			wt.events = append(wt.events, watchedEvent{rev: e.KV.ModRevision, key: e.KV.Key, typ: e.Type,
				value: string(e.KV.Value), createRev: e.KV.CreateRevision, modVersion: e.KV.Version})
		}
		wt.last = max(wt.last, wr.Revision)
		wt.mu.Unlock()
	}
}

// lockClient takes the mutex again and again; each hold appends
// "token:client:n;" to the log twice, fenced by IsOwner and the log's
// mod revision.
func (w *workload) lockClient(c *client.Client, id int) {
	defer w.wg.Done()
	defer c.Close()
	var s *client.Session
	for !w.stopped() {
		ctx, cancel := context.WithTimeout(context.Background(), w.cfg.timeout*4)
		if s == nil {
			var err error
			if s, err = client.NewSession(ctx, c, sessionTTL); err != nil {
				cancel()
				s = nil
				w.failed()
				continue
			}
		}
		m := client.NewMutex(s, lockPrefix)
		if err := m.Lock(ctx); err != nil {
			cancel()
			s.Orphan()
			s = nil
			w.failed()
			continue
		}
		for n := range 2 {
			w.fencedAppend(ctx, c, m, fmt.Sprintf("%d:%d:%d;", m.Token(), id, n))
		}
		w.coord.mu.Lock()
		w.coord.holds++
		w.coord.mu.Unlock()
		m.Unlock(ctx) // a failed unlock leaves the key to the lease
		cancel()
	}
	if s != nil {
		ctx, cancel := context.WithTimeout(context.Background(), w.cfg.timeout)
		s.Close(ctx)
		cancel()
	}
}

func (w *workload) fencedAppend(ctx context.Context, c *client.Client, m *client.Mutex, entry string) {
	for try := 0; try < 10 && ctx.Err() == nil; try++ {
		r, err := c.Range(ctx, lockLogKey, nil)
		if err != nil {
			continue
		}
		var old string
		var rev int64
		if len(r.KVs) == 1 {
			old, rev = string(r.KVs[0].Value), r.KVs[0].ModRevision
		}
		tr, err := c.Txn(ctx, []client.Cmp{m.IsOwner(), client.Compare(client.ModRevision(lockLogKey), "=", rev)},
			[]client.Op{client.OpPut(lockLogKey, []byte(old+entry))}, []client.Op{client.OpGet(m.Key())})
		if err != nil || tr.Succeeded {
			return
		}
		if len(tr.Results[0].Range.KVs) == 0 {
			return // no longer the holder: the fence held
		}
	}
}

// checkCoord lets the watchers catch up with the end of the run, records a
// final read of the transaction keys, and runs the watch and lock checks.
func (w *workload) checkCoord() []string {
	co := w.coord
	if co == nil {
		return nil
	}
	var problems []string
	c := w.coordClient()
	defer c.Close()
	var final int64
	for try := 0; try < 50; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		call := w.now()
		r, err := c.Range(ctx, txnKeys, []client.OpOption{client.WithPrefix()})
		ret := w.now()
		cancel()
		if err == nil {
			w.record(-1, kvInput{Op: opRange, Key: txnKeys}, kvOutput{OK: true, Pair: pairOf(r.KVs)}, call, ret)
			final = r.Revision
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, wt := range co.watchers {
		for {
			wt.mu.Lock()
			done := wt.last >= final || wt.err != ""
			wt.mu.Unlock()
			if done || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	co.wcancel()
	co.wwg.Wait()
	problems = append(problems, w.checkWatches(final)...)
	problems = append(problems, w.checkLockLog(c)...)
	if co.holds == 0 {
		problems = append(problems, "the lock clients never held the lock: the lock path was not exercised")
	}
	if co.txnOK == 0 {
		problems = append(problems, "no transaction succeeded: the transaction path was not exercised")
	}
	var events int
	for _, wt := range co.watchers {
		events += len(wt.events)
	}
	if events == 0 {
		problems = append(problems, "the watchers saw no event: the watch path was not exercised")
	}
	return problems
}

// checkWatches: each watcher saw revisions in order without repeats, the
// same changes as every other watcher, every acknowledged write to
// shared/ as it was acknowledged, and reached the end of the run.
func (w *workload) checkWatches(final int64) []string {
	var problems []string
	ws := w.coord.watchers
	for i, wt := range ws {
		if wt.err != "" {
			problems = append(problems, fmt.Sprintf("watcher %d ended: %s", i, wt.err))
		}
		if wt.last < final {
			problems = append(problems, fmt.Sprintf("watcher %d reached revision %d, the run ended at %d", i, wt.last, final))
		}
		seen := map[string]bool{}
		for j, e := range wt.events {
			id := fmt.Sprintf("%d/%s", e.rev, e.key)
			if seen[id] || (j > 0 && e.rev < wt.events[j-1].rev) {
				problems = append(problems, fmt.Sprintf("watcher %d: event %s repeated or out of order (event %d)", i, id, j))
				break
			}
			seen[id] = true
		}
	}
	for i := 1; i < len(ws); i++ {
		a, b := ws[0].events, ws[i].events
		n := min(len(a), len(b))
		for j := range n {
			if a[j] != b[j] {
				problems = append(problems, fmt.Sprintf("watchers 0 and %d differ at event %d: %+v vs %+v", i, j, a[j], b[j]))
				break
			}
		}
	}
	// Every acknowledged write with a known revision is in every watcher
	// that got that far.
	w.mu.Lock()
	ops := append([]any(nil), opsInputsOutputs(w)...)
	w.mu.Unlock()
	for i, wt := range ws {
		byID := map[string]watchedEvent{}
		for _, e := range wt.events {
			byID[fmt.Sprintf("%d/%s", e.rev, e.key)] = e
		}
		missing := 0
		for _, x := range ops {
			io := x.([2]any)
			in, out := io[0].(kvInput), io[1].(kvOutput)
			if !strings.HasPrefix(in.Key, "shared/") || in.Op == opGet || !out.OK || out.Unknown || int64(out.Index) > wt.last {
				continue
			}
			e, ok := byID[fmt.Sprintf("%d/%s", out.Index, in.Key)]
			wantType := "put"
			if in.Op == opDelete {
				wantType = "delete"
			}
			if !ok || e.typ != wantType || ((in.Op == opPut || in.Op == opCAS || in.Op == opCreate) && e.value != in.Value) {
				missing++
				if missing <= 3 {
					problems = append(problems, fmt.Sprintf("watcher %d lacks the acknowledged %s of %s at revision %d", i, in.Op, in.Key, out.Index))
				}
			}
		}
	}
	return problems
}

func opsInputsOutputs(w *workload) []any {
	out := make([]any, 0, len(w.ops))
	for _, op := range w.ops {
		out = append(out, [2]any{op.Input, op.Output})
	}
	return out
}

// checkLockLog reads locks/log: the fencing tokens in it never go down,
// and the entries of one hold are never interleaved with another's.
func (w *workload) checkLockLog(c *client.Client) []string {
	var log string
	for try := 0; try < 50; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		r, err := c.Range(ctx, lockLogKey, nil)
		cancel()
		if err == nil {
			if len(r.KVs) == 1 {
				log = string(r.KVs[0].Value)
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	return lockLogProblems(log)
}
