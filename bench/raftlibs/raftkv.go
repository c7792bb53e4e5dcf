package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/node"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

// nopFSM applies nothing: the workload measures replication.
type nopFSM struct{}

func (nopFSM) Apply(pb.Index, []byte) any         { return nil }
func (nopFSM) Snapshot() (io.WriterTo, error)     { return nopImage{}, nil }
func (nopFSM) Restore(io.Reader) error            { return nil }
func (nopImage) WriteTo(io.Writer) (int64, error) { return 0, nil }

type nopImage struct{}

type raftkvCluster struct {
	nodes  []*node.Node
	leader atomic.Pointer[node.Node] // last node that accepted a proposal
}

// startRaftkv starts three nodes with the timing of BenchmarkPropose.
func startRaftkv(dir string) (cluster, error) {
	var ls []net.Listener
	var boot []node.Member
	for i := 1; i <= 3; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		boot = append(boot, node.Member{ID: pb.NodeID(i), PeerAddr: l.Addr().String()})
	}
	c := &raftkvCluster{}
	for i := 1; i <= 3; i++ {
		log, snaps, err := node.OpenStorage(vfs.OS(), filepath.Join(dir, fmt.Sprint(i)))
		if err != nil {
			c.stop()
			return nil, err
		}
		n, err := node.New(node.Config{
			ID: pb.NodeID(i), ClusterID: 42, FSM: nopFSM{}, Log: log, Snapshots: snaps, PeerListener: ls[i-1],
			Bootstrap: boot, TickInterval: 50 * time.Millisecond, ElectionTimeout: time.Second,
			Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			c.stop()
			return nil, err
		}
		if err := n.Start(); err != nil {
			c.stop()
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	return c, nil
}

func (c *raftkvCluster) propose(ctx context.Context, cmd []byte) error {
	if n := c.leader.Load(); n != nil {
		if _, err := n.Propose(ctx, cmd); !isNotLeader(err) {
			return err
		}
	}
	for {
		for _, n := range c.nodes {
			_, err := n.Propose(ctx, cmd)
			if !isNotLeader(err) {
				if err == nil {
					c.leader.Store(n)
				}
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond): // no leader yet
		}
	}
}

func isNotLeader(err error) bool {
	var nl *node.NotLeaderError
	return errors.As(err, &nl)
}

func (c *raftkvCluster) stop() {
	for _, n := range c.nodes {
		n.Stop()
	}
}
