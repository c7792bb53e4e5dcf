package etcdapi

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"

	"github.com/raftkv/raftkv/node"
	raftpb "github.com/raftkv/raftkv/raftpb"
)

type clusterServer struct {
	pb.UnimplementedClusterServer
	s *Server
}

func (s *Server) scheme() string {
	if s.cfg.TLS != nil {
		return "https://"
	}
	return "http://"
}

func (s *Server) toMember(m node.Member) *pb.Member {
	out := &pb.Member{ID: uint64(m.ID), Name: fmt.Sprint(m.ID), IsLearner: !m.Voter}
	if m.PeerAddr != "" {
		out.PeerURLs = []string{s.scheme() + m.PeerAddr}
	}
	if m.EtcdAddr != "" {
		out.ClientURLs = []string{s.scheme() + m.EtcdAddr}
	}
	return out
}

func (s *Server) members() []*pb.Member {
	var out []*pb.Member
	for _, m := range s.cfg.Node.Status().Members {
		out = append(out, s.toMember(m))
	}
	return out
}

func (c *clusterServer) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if err := c.s.barrier(ctx, !r.Linearizable); err != nil {
		return nil, err
	}
	return &pb.MemberListResponse{Header: c.s.header(0), Members: c.s.members()}, nil
}

// peerAddr takes host:port from an etcd peer URL.
func peerAddr(urls []string) (string, error) {
	if len(urls) != 1 {
		return "", rpctypes.ErrGRPCMemberBadURLs
	}
	u := urls[0]
	if strings.Contains(u, "://") {
		p, err := url.Parse(u)
		if err != nil || p.Host == "" {
			return "", rpctypes.ErrGRPCMemberBadURLs
		}
		u = p.Host
	}
	if u == "" {
		return "", rpctypes.ErrGRPCMemberBadURLs
	}
	return u, nil
}

func (c *clusterServer) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	if _, err := peerAddr(r.PeerURLs); err != nil {
		return nil, err
	}
	return onLeader(ctx, c.s, false, func(ctx context.Context) (*pb.MemberAddResponse, error) { return c.memberAdd(ctx, r) },
		func(c *grpc.ClientConn, ctx context.Context, o grpc.CallOption) (*pb.MemberAddResponse, error) {
			return pb.NewClusterClient(c).MemberAdd(ctx, r, o)
		})
}

func (c *clusterServer) memberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	addr, err := peerAddr(r.PeerURLs)
	if err != nil {
		return nil, err
	}
	st := c.s.cfg.Node.Status()
	for _, m := range st.Members {
		if m.PeerAddr == addr {
			return nil, rpctypes.ErrGRPCPeerURLExist
		}
	}
	id := newMemberID(st.Members)
	ctx, cancel := context.WithTimeout(ctx, c.s.cfg.RequestTimeout)
	defer cancel()
	if err := c.s.changeConf(ctx, func(ctx context.Context) error {
		return c.s.cfg.Node.AddLearner(ctx, node.Member{ID: id, PeerAddr: addr})
	}); err != nil {
		return nil, nodeError(ctx, err)
	}
	if !r.IsLearner {
		// etcd adds a voter at once; here that is a learner made a voter.
		voters := []raftpb.NodeID{id}
		for _, m := range c.s.cfg.Node.Status().Members {
			if m.Voter {
				voters = append(voters, m.ID)
			}
		}
		if err := c.s.changeConf(ctx, func(ctx context.Context) error { return c.s.cfg.Node.ChangeVoters(ctx, voters) }); err != nil {
			return nil, nodeError(ctx, err)
		}
	}
	return &pb.MemberAddResponse{Header: c.s.header(0), Member: &pb.Member{ID: uint64(id), PeerURLs: r.PeerURLs, IsLearner: r.IsLearner},
		Members: c.s.members()}, nil
}

// newMemberID picks an unused random id, as etcd does.
func newMemberID(ms []node.Member) raftpb.NodeID {
	for {
		var b [8]byte
		rand.Read(b[:])
		id := raftpb.NodeID(binary.BigEndian.Uint64(b[:]) >> 1)
		if id != 0 && !slices.ContainsFunc(ms, func(m node.Member) bool { return m.ID == id }) {
			return id
		}
	}
}

func (c *clusterServer) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	return onLeader(ctx, c.s, false, func(ctx context.Context) (*pb.MemberRemoveResponse, error) { return c.memberRemove(ctx, r) },
		func(c *grpc.ClientConn, ctx context.Context, o grpc.CallOption) (*pb.MemberRemoveResponse, error) {
			return pb.NewClusterClient(c).MemberRemove(ctx, r, o)
		})
}

func (c *clusterServer) memberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	if !c.s.isMember(r.ID) {
		return nil, rpctypes.ErrGRPCMemberNotFound
	}
	ctx, cancel := context.WithTimeout(ctx, c.s.cfg.RequestTimeout)
	defer cancel()
	if err := c.s.changeConf(ctx, func(ctx context.Context) error { return c.s.cfg.Node.RemoveMember(ctx, raftpb.NodeID(r.ID)) }); err != nil {
		return nil, nodeError(ctx, err)
	}
	return &pb.MemberRemoveResponse{Header: c.s.header(0), Members: c.s.members()}, nil
}

func (s *Server) isMember(id uint64) bool {
	return slices.ContainsFunc(s.cfg.Node.Status().Members, func(m node.Member) bool { return uint64(m.ID) == id })
}

func (c *clusterServer) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	return onLeader(ctx, c.s, false, func(ctx context.Context) (*pb.MemberPromoteResponse, error) { return c.memberPromote(ctx, r) },
		func(c *grpc.ClientConn, ctx context.Context, o grpc.CallOption) (*pb.MemberPromoteResponse, error) {
			return pb.NewClusterClient(c).MemberPromote(ctx, r, o)
		})
}

func (c *clusterServer) memberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	var found, learner bool
	for _, m := range c.s.cfg.Node.Status().Members {
		if uint64(m.ID) == r.ID {
			found, learner = true, !m.Voter
		}
	}
	switch {
	case !found:
		return nil, rpctypes.ErrGRPCMemberNotFound
	case !learner:
		return nil, rpctypes.ErrGRPCMemberNotLearner
	case !c.s.learnerReady(raftpb.NodeID(r.ID)):
		return nil, rpctypes.ErrGRPCLearnerNotReady
	}
	ctx, cancel := context.WithTimeout(ctx, c.s.cfg.RequestTimeout)
	defer cancel()
	if err := c.s.changeConf(ctx, func(ctx context.Context) error { return c.s.cfg.Node.Promote(ctx, raftpb.NodeID(r.ID)) }); err != nil {
		return nil, nodeError(ctx, err)
	}
	return &pb.MemberPromoteResponse{Header: c.s.header(0), Members: c.s.members()}, nil
}

func (c *clusterServer) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	if _, err := peerAddr(r.PeerURLs); err != nil {
		return nil, err
	}
	return onLeader(ctx, c.s, false, func(ctx context.Context) (*pb.MemberUpdateResponse, error) { return c.memberUpdate(ctx, r) },
		func(c *grpc.ClientConn, ctx context.Context, o grpc.CallOption) (*pb.MemberUpdateResponse, error) {
			return pb.NewClusterClient(c).MemberUpdate(ctx, r, o)
		})
}

// memberUpdate changes a member's peer address in the replicated member
// table; every member's transport then dials the new one.
func (c *clusterServer) memberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	addr, err := peerAddr(r.PeerURLs)
	if err != nil {
		return nil, err
	}
	if !c.s.isMember(r.ID) {
		return nil, rpctypes.ErrGRPCMemberNotFound
	}
	for _, m := range c.s.cfg.Node.Status().Members {
		if m.PeerAddr == addr && uint64(m.ID) != r.ID {
			return nil, rpctypes.ErrGRPCPeerURLExist
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.s.cfg.RequestTimeout)
	defer cancel()
	err = c.s.changeConf(ctx, func(ctx context.Context) error { return c.s.cfg.Node.SetPeerAddr(ctx, raftpb.NodeID(r.ID), addr) })
	if errors.Is(err, node.ErrInvalidChange) {
		return nil, rpctypes.ErrGRPCPeerURLExist // another member took the address meanwhile
	}
	if err != nil {
		return nil, nodeError(ctx, err)
	}
	return &pb.MemberUpdateResponse{Header: c.s.header(0), Members: c.s.members()}, nil
}

// learnerReady is etcd's rule for a promotion: the learner holds at least
// 90% of the leader's log. (The node refuses a larger lag on its own.)
func (s *Server) learnerReady(id raftpb.NodeID) bool {
	st := s.cfg.Node.Status()
	pr, ok := st.Progress[id]
	return ok && pr.Match > 0 && float64(pr.Match) >= 0.9*float64(st.Commit)
}

// changeConf runs a membership change, waiting while another one (this
// member publishing its address, say) is in progress: that refusal
// changed nothing.
func (s *Server) changeConf(ctx context.Context, change func(context.Context) error) error {
	for {
		err := change(ctx)
		if !errors.Is(err, node.ErrChangeInProgress) || !s.pause(ctx) {
			return err
		}
	}
}
