package etcdapi

import (
	"context"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftkv/raftkv/raft"
	raftpb "github.com/raftkv/raftkv/raftpb"
)

// A member's etcd address goes into the replicated member table, so that
// followers can forward to the leader and MemberList shows every member's
// client URL. Only the leader can change the table: a leader publishes its
// own address, a follower asks the leader to publish its address through
// the one method of raftkv's own service on the etcd listener.

const publishMethod = "/raftkv.etcdapi.Members/PublishEtcdAddr"

// publishServiceDesc describes that service by hand (one unary method
// whose request is an etcd Member with ID and ClientURLs), so no code is
// generated for it.
var publishServiceDesc = grpc.ServiceDesc{
	ServiceName: "raftkv.etcdapi.Members",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "PublishEtcdAddr",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			m := new(pb.Member)
			if err := dec(m); err != nil {
				return nil, err
			}
			return srv.(*Server).publishFor(ctx, m)
		},
	}},
	Metadata: "raftkv/etcdapi",
}

// publishFor publishes a member's etcd address on the leader.
func (s *Server) publishFor(ctx context.Context, m *pb.Member) (*pb.MemberUpdateResponse, error) {
	if !s.isLeader() {
		return nil, errNotLeader
	}
	if len(m.ClientURLs) != 1 || !s.isMember(m.ID) {
		return nil, status.Error(codes.InvalidArgument, "etcdserver: publish: one address of a member, please")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	err := s.changeConf(ctx, func(ctx context.Context) error {
		return s.cfg.Node.SetEtcdAddr(ctx, raftpb.NodeID(m.ID), m.ClientURLs[0])
	})
	if err != nil {
		return nil, nodeError(ctx, err)
	}
	return &pb.MemberUpdateResponse{Header: s.header(0)}, nil
}

// publishLoop keeps this member's etcd address in the member table: the
// leader sets its own, a follower asks the leader.
func (s *Server) publishLoop() {
	defer s.bg.Done()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var next time.Time
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-s.stopc:
			return
		case <-s.cfg.Node.Done():
			return
		case <-t.C:
		}
		lead, _, role := s.cfg.Node.Leader()
		if lead == raftpb.None || role == raft.Removed || time.Now().Before(next) || s.published() {
			continue
		}
		if err := s.publish(role == raft.Leader); err != nil {
			s.cfg.Logger.Debug("publishing the etcd address", "err", err)
			next = time.Now().Add(backoff)
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
	}
}

func (s *Server) publish(leading bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	if leading {
		return s.cfg.Node.SetEtcdAddr(ctx, raftpb.NodeID(s.cfg.ID), s.cfg.Advertise)
	}
	conn, fctx, err := s.leader(ctx)
	if err != nil || conn == nil {
		return err
	}
	return conn.Invoke(fctx, publishMethod, &pb.Member{ID: s.cfg.ID, ClientURLs: []string{s.cfg.Advertise}}, new(pb.MemberUpdateResponse))
}

// published reports whether the member table has this member's address
// (a member not in the table yet has nothing to publish).
func (s *Server) published() bool {
	for _, m := range s.cfg.Node.Status().Members {
		if m.ID == raftpb.NodeID(s.cfg.ID) {
			return m.EtcdAddr == s.cfg.Advertise
		}
	}
	return true
}
