package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/driver"
	"github.com/raftkv/raftkv/node"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// clusterView renders the member's view of the cluster (GET /v1/cluster).
func (s *Server) clusterView(st node.Status) api.Cluster {
	c := api.Cluster{
		ClusterID: FormatClusterID(s.ClusterID()),
		Leader:    uint64(st.Lead),
		Term:      uint64(st.Term),
		Members:   make([]api.Member, 0, len(st.Members)),
		Self: api.Self{
			ID: s.cfg.ID, Role: roleName(st.Role), Term: uint64(st.Term),
			CommitIndex: uint64(st.Commit), AppliedIndex: uint64(st.Applied),
			SnapshotIndex: uint64(st.SnapshotIndex),
			SpaceOK:       s.node.SpaceOK(), StateBytes: s.store.Size(), QuotaBytes: s.store.QuotaBytes(),
		},
	}
	for _, id := range confMembers(st.Conf) {
		m := api.Member{ID: uint64(id), Voter: st.Conf.IsVoter(id)}
		for _, x := range st.Members {
			if x.ID == id {
				m.PeerAddr, m.ClientAddr = x.PeerAddr, x.ClientAddr
				m.Alarm, m.AlarmCause = x.Alarm, x.AlarmCause
			}
		}
		c.Members = append(c.Members, m)
	}
	return c
}

// confMembers lists the ids of a configuration, sorted. Membership and
// voting come from the configuration itself rather than node's Members,
// whose Voter flags are refreshed only when an address changes.
func confMembers(cs pb.ConfState) []pb.NodeID {
	ids := append(append(slices.Clone(cs.Voters), cs.VotersOutgoing...), cs.Learners...)
	slices.Sort(ids)
	return slices.Compact(ids)
}

func (s *Server) getCluster(w http.ResponseWriter, _ *http.Request) {
	s.writeJSON(w, http.StatusOK, s.clusterView(s.node.Status()))
}

// leaderOnly redirects admin changes sent to a follower; false means it
// answered.
func (s *Server) leaderOnly(w http.ResponseWriter, r *http.Request) bool {
	if !s.isLeader() {
		s.redirect(w, r)
		return false
	}
	return true
}

func (s *Server) adminContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.cfg.Limits.RequestTimeout)
}

func (s *Server) addMember(w http.ResponseWriter, r *http.Request) {
	if !s.leaderOnly(w, r) {
		return
	}
	var req api.Member
	if !s.decodeJSON(w, r, &req) {
		return
	}
	if req.ID == 0 || req.PeerAddr == "" {
		s.fail(w, api.CodeBadRequest, "a member needs an id (positive) and a peer_addr")
		return
	}
	if st := s.node.Status(); st.Conf.Contains(pb.NodeID(req.ID)) {
		s.fail(w, api.CodeBadRequest, fmt.Sprintf("member %d already exists", req.ID))
		return
	}
	ctx, cancel := s.adminContext(r)
	defer cancel()
	m := node.Member{ID: pb.NodeID(req.ID), PeerAddr: req.PeerAddr, ClientAddr: req.ClientAddr}
	if err := s.node.AddLearner(ctx, m); err != nil {
		s.nodeError(w, r, err)
		return
	}
	if req.Voter {
		// A voter joins as a learner and is promoted once caught up, so
		// that an empty member never counts toward a quorum (§4.2.1).
		if err := s.promoteWhenCaughtUp(ctx, pb.NodeID(req.ID)); err != nil {
			s.nodeError(w, r, fmt.Errorf("member %d added as a learner; promotion: %w", req.ID, err))
			return
		}
	}
	s.writeJSON(w, http.StatusOK, s.clusterView(s.node.Status()))
}

// promoteWhenCaughtUp retries Promote while the learner lags, until ctx ends.
func (s *Server) promoteWhenCaughtUp(ctx context.Context, id pb.NodeID) error {
	for {
		err := s.node.Promote(ctx, id)
		if !errors.Is(err, node.ErrLearnerLagging) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(s.cfg.HeartbeatInterval):
		}
	}
}

// serveMember handles /v1/cluster/members/{id}, .../{id}/promote and
// .../{id}/client-addr.
func (s *Server) serveMember(w http.ResponseWriter, r *http.Request, rest string) {
	idStr, action, _ := strings.Cut(rest, "/")
	id, err := strconv.ParseUint(idStr, 10, 64)
	if err != nil || id == 0 {
		s.fail(w, api.CodeBadRequest, fmt.Sprintf("member id %q: want a positive integer", idStr))
		return
	}
	switch {
	case action == "" && r.Method == http.MethodDelete:
		s.changeMember(w, r, func(ctx context.Context) error { return s.node.RemoveMember(ctx, pb.NodeID(id)) })
	case action == "promote" && r.Method == http.MethodPost:
		s.changeMember(w, r, func(ctx context.Context) error {
			if !s.node.Status().Conf.Contains(pb.NodeID(id)) {
				return fmt.Errorf("%w: %d", node.ErrUnknownMember, id)
			}
			return s.promoteWhenCaughtUp(ctx, pb.NodeID(id))
		})
	case action == "client-addr" && r.Method == http.MethodPut:
		s.setClientAddr(w, r, pb.NodeID(id))
	case action == "":
		s.methodNotAllowed(w, http.MethodDelete)
	case action == "promote":
		s.methodNotAllowed(w, http.MethodPost)
	case action == "client-addr":
		s.methodNotAllowed(w, http.MethodPut)
	default:
		s.fail(w, api.CodeNotFound, "no such endpoint: "+r.URL.Path)
	}
}

// setClientAddr writes a member's client address into the configuration;
// an address already there answers at once, without a change.
func (s *Server) setClientAddr(w http.ResponseWriter, r *http.Request, id pb.NodeID) {
	if !s.leaderOnly(w, r) {
		return
	}
	var req api.ClientAddrRequest
	if !s.decodeJSON(w, r, &req) {
		return
	}
	if _, _, err := net.SplitHostPort(req.ClientAddr); err != nil {
		s.fail(w, api.CodeBadRequest, fmt.Sprintf("client_addr %q: want host:port", req.ClientAddr))
		return
	}
	s.changeMember(w, r, func(ctx context.Context) error {
		st := s.node.Status()
		if !st.Conf.Contains(id) {
			return fmt.Errorf("%w: %d", node.ErrUnknownMember, id)
		}
		if selfAddr(st, uint64(id)) == req.ClientAddr {
			return nil
		}
		return s.node.SetClientAddr(ctx, id, req.ClientAddr)
	})
}

// changeMember runs one membership change on the leader and answers with
// the cluster as it stands after it.
func (s *Server) changeMember(w http.ResponseWriter, r *http.Request, change func(context.Context) error) {
	if !s.leaderOnly(w, r) {
		return
	}
	ctx, cancel := s.adminContext(r)
	defer cancel()
	if err := change(ctx); err != nil {
		s.nodeError(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, s.clusterView(s.node.Status()))
}

func (s *Server) setVoters(w http.ResponseWriter, r *http.Request) {
	if !s.leaderOnly(w, r) {
		return
	}
	var req api.VotersRequest
	if !s.decodeJSON(w, r, &req) {
		return
	}
	if len(req.Voters) == 0 {
		s.fail(w, api.CodeBadRequest, "empty voter set")
		return
	}
	voters := make([]pb.NodeID, 0, len(req.Voters))
	for _, id := range req.Voters {
		if id == 0 {
			s.fail(w, api.CodeBadRequest, "voter id 0")
			return
		}
		voters = append(voters, pb.NodeID(id))
	}
	s.changeMember(w, r, func(ctx context.Context) error { return s.node.ChangeVoters(ctx, voters) })
}

func (s *Server) transferLeadership(w http.ResponseWriter, r *http.Request) {
	if !s.leaderOnly(w, r) {
		return
	}
	var req api.TransferRequest
	if !s.decodeJSON(w, r, &req) {
		return
	}
	st := s.node.Status()
	to := pb.NodeID(req.ID)
	if to == pb.None {
		to = s.mostCaughtUpVoter(st)
		if to == pb.None {
			s.fail(w, api.CodeBadRequest, "no other voter reachable to hand leadership to")
			return
		}
	}
	switch {
	case to == st.ID:
		s.writeJSON(w, http.StatusOK, api.TransferResponse{Leader: uint64(to)})
		return
	case !st.Conf.Contains(to):
		s.fail(w, api.CodeNotFound, fmt.Sprintf("no member %d", to))
		return
	case !st.Conf.IsVoter(to):
		s.fail(w, api.CodeBadRequest, fmt.Sprintf("member %d is a learner; only a voter can lead", to))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Limits.TransferTimeout)
	defer cancel()
	if err := s.node.TransferLeadership(ctx, to); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			s.fail(w, api.CodeUnknownOutcome, fmt.Sprintf("member %d did not take over in time; it may still", to))
			return
		}
		s.nodeError(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, api.TransferResponse{Leader: uint64(to)})
}

// mostCaughtUpVoter is the voter the runtime's own hand-over would pick
// (driver.MostCaughtUpVoter: the longest matched log), among those whose
// message streams to and from this member are open: a member that has just
// stopped still shows the longest log, and handing leadership to it would
// only wait out the transfer timeout. None when no voter is live.
func (s *Server) mostCaughtUpVoter(st node.Status) pb.NodeID {
	ts, ok := s.node.TransportStats()
	return driver.MostCaughtUpVoter(st.Status, func(id pb.NodeID) bool {
		ps, known := ts.Peers[id]
		return !ok || !known || (ps.Connected && ps.Hearing)
	})
}

// snapshot takes a snapshot on this member (no redirect: every member
// compacts its own log).
func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 4*s.cfg.Limits.RequestTimeout)
	defer cancel()
	idx, err := s.node.Snapshot(ctx)
	if err != nil {
		s.nodeError(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, api.SnapshotResponse{Index: uint64(idx)})
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	select {
	case <-s.node.Done():
		s.fail(w, api.CodeInternal, fmt.Sprintf("node stopped: %v", s.node.Err()))
	default:
		s.writeJSON(w, http.StatusOK, api.HealthResponse{Status: "ok"})
	}
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	st := s.node.Status()
	switch {
	case st.Role == raft.Removed:
		s.fail(w, api.CodeNotReady, "this member has been removed from the cluster")
	case st.Lead == pb.None:
		s.fail(w, api.CodeNoLeader, "no leader is known")
	case st.Applied < st.Commit:
		s.fail(w, api.CodeNotReady, fmt.Sprintf("applied %d of %d committed", st.Applied, st.Commit))
	default:
		s.writeJSON(w, http.StatusOK, api.HealthResponse{Status: "ready"})
	}
}
