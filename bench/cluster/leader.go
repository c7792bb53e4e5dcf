package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/raftkv/raftkv/client"
)

// Leader returns the index in ClientAddrs (and EtcdAddrs) of the member
// that leads now.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	if c.Name == "raftkv" {
		return raftkvLeader(ctx, c.ClientAddrs)
	}
	return etcdLeader(ctx, c.ClientAddrs)
}

// raftkvLeader asks the cluster its leader; member i+1 listens on
// endpoints[i] (StartRaftkv).
func raftkvLeader(ctx context.Context, endpoints []string) (int, error) {
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	cl, err := c.Cluster(ctx)
	if err != nil {
		return 0, err
	}
	if cl.Leader < 1 || cl.Leader > uint64(len(endpoints)) {
		return 0, fmt.Errorf("raftkv: no leader known (leader %d)", cl.Leader)
	}
	return int(cl.Leader - 1), nil
}

// etcdLeader asks every member whether it leads.
func etcdLeader(ctx context.Context, endpoints []string) (int, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	for i, ep := range endpoints {
		st, err := c.Status(ctx, ep)
		if err != nil {
			return 0, fmt.Errorf("etcd status of %s: %w", ep, err)
		}
		if st.Leader == st.Header.MemberId {
			return i, nil
		}
	}
	return 0, errors.New("etcd: no member says it leads")
}
