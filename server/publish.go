package server

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/node"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// publishLoop keeps two facts up to date that the node cannot know alone:
//   - the configuration must carry every member's client address, so that
//     followers can redirect to the leader and clients and operators can
//     reach any member from /v1/cluster. A leader writes its own through
//     the log; a follower or learner asks the leader to write it (PUT
//     /v1/cluster/members/{id}/client-addr), since only a leader proposes;
//   - a member that joined starts without the cluster id and learns it
//     from the leader's /v1/cluster (and persists it for restarts).
//
// It polls the node's status: both facts change rarely, and polling keeps
// the node free of callbacks into the server. Publishing is a configuration
// change, so two members publishing at once may be refused with
// change_in_progress; each retries after a backoff.
func (s *Server) publishLoop() {
	defer s.bg.Done()
	interval := max(s.cfg.HeartbeatInterval, 10*time.Millisecond)
	t := time.NewTicker(interval)
	defer t.Stop()
	var nextPublish, nextLearn time.Time
	backoff := interval
	for {
		select {
		case <-s.stopc:
			return
		case <-s.node.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		st := s.node.Status()
		if now.After(nextPublish) && s.cfg.AdvertiseClient != "" && selfAddr(st, s.cfg.ID) != s.cfg.AdvertiseClient {
			var err error
			switch st.Role {
			case raft.Leader:
				err = s.publishClientAddr()
			case raft.Follower, raft.Learner:
				err = s.askLeaderToPublish(st)
			}
			if err != nil {
				s.log.Debug("publishing client address", "err", err)
				// Jitter keeps members that collided from colliding again.
				nextPublish = now.Add(backoff + time.Duration(rand.Int64N(int64(backoff))))
				backoff = min(2*backoff, time.Second)
			} else {
				backoff = interval
			}
		}
		if s.ClusterID() == 0 && now.After(nextLearn) {
			if err := s.learnClusterID(st); err != nil {
				s.log.Debug("learning the cluster id", "err", err)
			}
			nextLearn = now.Add(time.Second)
		}
	}
}

func selfAddr(st node.Status, id uint64) string {
	for _, m := range st.Members {
		if m.ID == pb.NodeID(id) {
			return m.ClientAddr
		}
	}
	return ""
}

func (s *Server) publishClientAddr() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Limits.RequestTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.stopc:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := s.node.SetClientAddr(ctx, pb.NodeID(s.cfg.ID), s.cfg.AdvertiseClient); err != nil {
		return fmt.Errorf("set client address %s: %w", s.cfg.AdvertiseClient, err)
	}
	s.log.Info("published client address", "addr", s.cfg.AdvertiseClient)
	return nil
}

// askLeaderToPublish asks the leader to write this member's client
// address into the configuration.
func (s *Server) askLeaderToPublish(st node.Status) error {
	addr := selfAddr(st, uint64(st.Lead))
	if st.Lead == pb.None || addr == "" {
		return fmt.Errorf("no leader client address known yet")
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Limits.RequestTimeout)
	defer cancel()
	u := fmt.Sprintf("%s://%s%s/%d/client-addr", s.scheme, addr, api.PathMembers, s.cfg.ID)
	// A redirect (a leader change) is an error here: the next status
	// shows the new leader.
	if _, err := s.peerCall(ctx, http.MethodPut, u, api.ClientAddrRequest{ClientAddr: s.cfg.AdvertiseClient}); err != nil {
		return fmt.Errorf("leader %d: %w", st.Lead, err)
	}
	s.log.Info("client address published by the leader", "addr", s.cfg.AdvertiseClient, "leader", uint64(st.Lead))
	return nil
}

// learnClusterID asks the leader for the cluster id and persists it.
func (s *Server) learnClusterID(st node.Status) error {
	addr := ""
	for _, m := range st.Members {
		if m.ID == st.Lead && m.ID != pb.NodeID(s.cfg.ID) {
			addr = m.ClientAddr
		}
	}
	if addr == "" {
		return fmt.Errorf("no leader client address known yet")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.scheme+"://"+addr+api.PathCluster, nil)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: s.cfg.TLS}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var c api.Cluster
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return fmt.Errorf("decoding %s: %w", api.PathCluster, err)
	}
	id, err := strconv.ParseUint(c.ClusterID, 16, 64)
	if err != nil || id == 0 {
		return fmt.Errorf("leader answered cluster id %q", c.ClusterID)
	}
	if err := storeClusterID(s.cfg.DataDir, id); err != nil {
		return err
	}
	s.clusterID.Store(id)
	s.log.Info("learned the cluster id", "cluster_id", FormatClusterID(id))
	return nil
}
