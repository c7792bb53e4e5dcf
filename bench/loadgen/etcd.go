package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ClientsPerEtcdConn is how many load clients share one etcd gRPC
// connection (HTTP/2 multiplexes them), about the ratio etcd's own
// benchmark docs use (--conns=100 --clients=1000).
const ClientsPerEtcdConn = 16

// Etcd is a Store on etcd's Go client (clientv3). Each of its
// connections balances requests round-robin over the endpoints, as etcd
// users run it: a follower forwards writes to the leader and serves
// linearizable reads after a ReadIndex from it.
type Etcd struct {
	conns        []*clientv3.Client
	next         atomic.Uint64
	serializable bool
}

// NewEtcd returns a Store on endpoints ("host:port") with one connection
// per ClientsPerEtcdConn clients. Gets are linearizable (etcd's default)
// unless serializable is set.
func NewEtcd(endpoints []string, clients int, serializable bool) (*Etcd, error) {
	e := &Etcd{serializable: serializable}
	n := (clients + ClientsPerEtcdConn - 1) / ClientsPerEtcdConn
	for range n {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   endpoints,
			DialTimeout: 5 * time.Second,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("etcd client: %w", err), e.Close())
		}
		e.conns = append(e.conns, c)
	}
	return e, nil
}

func (e *Etcd) conn() *clientv3.Client {
	return e.conns[e.next.Add(1)%uint64(len(e.conns))]
}

// Put sets key to value.
func (e *Etcd) Put(ctx context.Context, key string, value []byte) error {
	_, err := e.conn().Put(ctx, key, string(value))
	return err
}

// Txn3 runs 3 compares + 3 puts as one transaction.
func (e *Etcd) Txn3(ctx context.Context, key string, value []byte) error {
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	for _, k := range []string{key + "/0", key + "/1", key + "/2"} {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "<", int64(1)<<60))
		ops = append(ops, clientv3.OpPut(k, string(value)))
	}
	r, err := e.conn().Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err == nil && !r.Succeeded {
		err = errors.New("etcd: txn compare failed")
	}
	return err
}

// Get reads key; a missing key counts as an error, since Fill wrote them all.
func (e *Etcd) Get(ctx context.Context, key string) error {
	var opts []clientv3.OpOption
	if e.serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := e.conn().Get(ctx, key, opts...)
	if err == nil && len(resp.Kvs) == 0 {
		err = fmt.Errorf("etcd get %s: not found", key)
	}
	return err
}

// Close closes every connection.
func (e *Etcd) Close() error {
	var errs []error
	for _, c := range e.conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
