package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

type hcFSM struct{}

func (hcFSM) Apply(*raft.Log) any                   { return nil }
func (hcFSM) Snapshot() (raft.FSMSnapshot, error)   { return hcSnap{}, nil }
func (hcFSM) Restore(r io.ReadCloser) error         { return r.Close() }
func (hcSnap) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (hcSnap) Release()                             {}

type hcSnap struct{}

type hashicorpCluster struct {
	rafts  []*raft.Raft
	stores []*raftboltdb.BoltStore
}

// startHashicorp starts three members with hashicorp/raft's defaults,
// its TCP transport on loopback and raft-boltdb as log and stable store.
func startHashicorp(dir string) (cluster, error) {
	c := &hashicorpCluster{}
	var servers []raft.Server
	var trans []*raft.NetworkTransport
	for i := 1; i <= 3; i++ {
		t, err := raft.NewTCPTransport("127.0.0.1:0", nil, 8, 10*time.Second, io.Discard)
		if err != nil {
			c.stop()
			return nil, err
		}
		trans = append(trans, t)
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprint(i)), Address: t.LocalAddr()})
	}
	for i := 1; i <= 3; i++ {
		d := filepath.Join(dir, fmt.Sprint(i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		store, err := raftboltdb.NewBoltStore(filepath.Join(d, "raft.db"))
		if err != nil {
			c.stop()
			return nil, err
		}
		c.stores = append(c.stores, store)
		snaps, err := raft.NewFileSnapshotStore(d, 1, io.Discard)
		if err != nil {
			c.stop()
			return nil, err
		}
		conf := raft.DefaultConfig()
		conf.LocalID = raft.ServerID(fmt.Sprint(i))
		conf.Logger = hclog.NewNullLogger()
		r, err := raft.NewRaft(conf, hcFSM{}, store, store, snaps, trans[i-1])
		if err != nil {
			c.stop()
			return nil, err
		}
		c.rafts = append(c.rafts, r)
	}
	if err := c.rafts[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *hashicorpCluster) propose(ctx context.Context, cmd []byte) error {
	for {
		for _, r := range c.rafts {
			if r.State() != raft.Leader {
				continue
			}
			timeout := 10 * time.Second
			if d, ok := ctx.Deadline(); ok {
				timeout = time.Until(d)
			}
			err := r.Apply(cmd, timeout).Error()
			if !errors.Is(err, raft.ErrNotLeader) {
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

func (c *hashicorpCluster) stop() {
	for _, r := range c.rafts {
		_ = r.Shutdown().Error()
	}
	for _, s := range c.stores {
		_ = s.Close()
	}
}
