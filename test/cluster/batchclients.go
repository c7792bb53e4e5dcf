//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/client"
)

// The batch clients share one client.Client, as an application's
// goroutines would, so that their calls travel in POST /v1/batch requests
// whenever they queue up; its transport throws some answers away, so lost
// batches are retried. Their operations go into the same porcupine
// history as the shared clients', on the same keys.

// startBatchClients starts cfg.batchClients goroutines on one Client.
func (w *workload) startBatchClients() {
	if w.cfg.batchClients == 0 {
		return
	}
	var eps []string
	for _, m := range w.c.all() {
		if m.started() && !m.isRemoved() {
			eps = append(eps, m.clientAddr())
		}
	}
	base := w.c.hc.Transport.(*http.Transport)
	c, err := client.New(client.Config{Endpoints: eps, MaxBatchInflight: 1,
		Transport:  &countBatches{w: w, rt: &dropReplies{base: base, p: w.cfg.dropReplies / 2}},
		BackoffMax: 200 * time.Millisecond, // keep retrying through a fault
	})
	if err != nil {
		panic(err) // only for no endpoints, which a started cluster has
	}
	first := w.cfg.sharedClients + w.cfg.ownClients + 1 // after the final reads' id
	for i := 0; i < w.cfg.batchClients; i++ {
		w.wg.Add(1)
		go w.batchClient(c, first+i)
	}
}

// batchClient issues random operations on the shared keys through c.
// Outcomes follow the client's contract: an error for which
// IsUnknownOutcome holds may have applied; any other error applied
// nothing.
func (w *workload) batchClient(c *client.Client, id int) {
	defer w.wg.Done()
	revs := map[string]uint64{}
	for seq := 0; !w.stopped(); seq++ {
		key := fmt.Sprintf("shared/%d", rand.IntN(w.cfg.sharedKeys))
		tok := fmt.Sprintf("b%d.%d;", id, seq)
		ctx, cancel := context.WithTimeout(context.Background(), w.cfg.timeout)
		var in kvInput
		var out kvOutput
		var err error
		call := w.now()
		switch n := rand.IntN(100); {
		case n < 40:
			level := api.Linearizable
			if n < 15 {
				level = api.Lease
			}
			in = kvInput{Op: opGet, Key: key, Consistency: level}
			var kv *client.KV
			if kv, err = c.Get(ctx, key, client.WithConsistency(level)); err == nil {
				out = kvOutput{OK: true, Value: string(kv.Value), Index: kv.Rev}
			}
		case n < 60:
			in = kvInput{Op: opPut, Key: key, Value: tok}
			out.Index, err = c.Put(ctx, key, []byte(tok))
		case n < 75:
			in = kvInput{Op: opAppend, Key: key, Value: tok}
			out.Index, err = c.Append(ctx, key, []byte(tok))
		case n < 90:
			in = kvInput{Op: opCAS, Key: key, Value: tok, Rev: max(revs[key], 1)}
			out.Index, err = c.Put(ctx, key, []byte(tok), client.IfMatch(in.Rev))
		case n < 95:
			in = kvInput{Op: opCreate, Key: key, Value: tok}
			out.Index, err = c.Put(ctx, key, []byte(tok), client.IfNoneMatch())
		default:
			in = kvInput{Op: opDelete, Key: key}
			out.Index, err = c.Delete(ctx, key)
		}
		ret := w.now()
		cancel()
		if in.Op != opGet {
			w.noteToken(tok, call)
		}
		switch {
		case err == nil:
			out.OK = true
		case client.IsUnknownOutcome(err):
			out = kvOutput{Unknown: true}
		case client.IsPreconditionFailed(err):
			out = kvOutput{Precondition: true}
		case client.IsNotFound(err):
			out = kvOutput{NotFound: true}
		default:
			w.failed()
			continue
		}
		if out.OK && in.Op != opDelete {
			revs[key] = out.Index
		}
		w.record(id, in, out, call, ret)
	}
}

// countBatches counts the batch requests the batch clients send, so the
// run can tell that batches were exercised.
type countBatches struct {
	w  *workload
	rt http.RoundTripper
}

func (c *countBatches) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == api.PathBatch {
		c.w.stats.batches.Add(1)
	}
	return c.rt.RoundTrip(r)
}
