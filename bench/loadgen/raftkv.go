package loadgen

import (
	"context"
	"errors"

	"github.com/raftkv/raftkv/client"
)

// Raftkv is a Store on raftkv's Go client, one Client shared by all load
// clients as an application would share it: writes and linearizable or
// lease reads go to the leader over HTTP/1.1; calls that find the
// client's requests of their kind in flight are coalesced into POST
// /v1/batch requests (client.Config.MaxBatchOps). Each Put carries an
// Idempotency-Key, as every write of the client does.
type Raftkv struct {
	c           *client.Client
	consistency string
}

// NewRaftkv returns a Store on endpoints ("host:port") that reads at the
// given consistency level (linearizable, lease or stale). clients sizes
// the connection pool; batchOps is client.Config.MaxBatchOps (0: the
// default, 1: no batching, every call its own request).
func NewRaftkv(endpoints []string, clients int, consistency string, batchOps int) (*Raftkv, error) {
	c, err := client.New(client.Config{Endpoints: endpoints, MaxConnsPerHost: clients + 16, MaxBatchOps: batchOps})
	if err != nil {
		return nil, err
	}
	return &Raftkv{c: c, consistency: consistency}, nil
}

// Put sets key to value.
func (r *Raftkv) Put(ctx context.Context, key string, value []byte) error {
	_, err := r.c.Put(ctx, key, value)
	return err
}

// Get reads key; a missing key counts as an error, since Fill wrote them all.
func (r *Raftkv) Get(ctx context.Context, key string) error {
	_, err := r.c.Get(ctx, key, client.WithConsistency(r.consistency))
	return err
}

// Txn3 runs 3 compares + 3 puts as one transaction.
func (r *Raftkv) Txn3(ctx context.Context, key string, value []byte) error {
	var cmps []client.Cmp
	var ops []client.Op
	for _, k := range []string{key + "/0", key + "/1", key + "/2"} {
		cmps = append(cmps, client.Compare(client.ModRevision(k), "<", int64(1)<<60))
		ops = append(ops, client.OpPut(k, value))
	}
	t, err := r.c.Txn(ctx, cmps, ops, nil)
	if err == nil && !t.Succeeded {
		err = errors.New("raftkv: txn compare failed")
	}
	return err
}

// Close releases idle connections.
func (r *Raftkv) Close() error {
	r.c.Close()
	return nil
}
