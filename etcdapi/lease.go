package etcdapi

import (
	"context"
	"errors"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/raftkv/raftkv/kv"
	raftpb "github.com/raftkv/raftkv/raftpb"
)

type leaseServer struct {
	pb.UnimplementedLeaseServer
	s *Server
}

func (l *leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if r.TTL > kv.MaxLeaseTTL {
		return nil, rpctypes.ErrGRPCLeaseTTLTooLarge
	}
	return onLeaderVia(ctx, l.s, true, fwdVia{fwdLeaseGrant, r}, func(ctx context.Context) (*pb.LeaseGrantResponse, error) { return l.grant(ctx, r) },
		func(c *grpc.ClientConn, ctx context.Context, o grpc.CallOption) (*pb.LeaseGrantResponse, error) {
			return pb.NewLeaseClient(c).LeaseGrant(ctx, r, o)
		})
}

func (l *leaseServer) grant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	ttl := max(r.TTL, l.s.cfg.Lessor.MinLeaseTTL())
	res, err := l.s.propose(ctx, kv.Command{Op: kv.OpLeaseGrant, Lease: r.ID, TTL: ttl})
	if err != nil {
		return nil, err
	}
	// Start the lease's clock now rather than at the expiry loop's next
	// tick, replacing any deadline a revoked lease of this id left.
	l.s.cfg.Lessor.StartLease(res.Lease)
	return &pb.LeaseGrantResponse{Header: l.s.header(res.Revision), ID: res.Lease, TTL: res.TTL}, nil
}

func (l *leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	return onLeaderVia(ctx, l.s, true, fwdVia{fwdLeaseRevoke, r}, func(ctx context.Context) (*pb.LeaseRevokeResponse, error) { return l.revoke(ctx, r) },
		func(c *grpc.ClientConn, ctx context.Context, o grpc.CallOption) (*pb.LeaseRevokeResponse, error) {
			return pb.NewLeaseClient(c).LeaseRevoke(ctx, r, o)
		})
}

func (l *leaseServer) revoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	res, err := l.s.propose(ctx, kv.Command{Op: kv.OpLeaseRevoke, Lease: r.ID})
	if err != nil {
		return nil, err
	}
	return &pb.LeaseRevokeResponse{Header: l.s.header(res.Revision)}, nil
}

func (l *leaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	return onLeader(ctx, l.s, true, func(ctx context.Context) (*pb.LeaseTimeToLiveResponse, error) { return l.timeToLive(ctx, r) },
		func(c *grpc.ClientConn, ctx context.Context, o grpc.CallOption) (*pb.LeaseTimeToLiveResponse, error) {
			return pb.NewLeaseClient(c).LeaseTimeToLive(ctx, r, o)
		})
}

func (l *leaseServer) timeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	// The answer must not precede a grant or revoke that completed.
	if err := l.s.barrier(ctx, false); err != nil {
		return nil, err
	}
	info, keys, ok := l.s.cfg.Store.Lease(r.ID, r.Keys)
	rem, ok2 := l.s.cfg.Lessor.LeaseRemaining(r.ID)
	if !ok || !ok2 {
		// etcd answers an unknown lease with TTL -1.
		return &pb.LeaseTimeToLiveResponse{Header: l.s.header(0), ID: r.ID, TTL: -1}, nil
	}
	out := &pb.LeaseTimeToLiveResponse{Header: l.s.header(0), ID: r.ID, TTL: rem, GrantedTTL: info.TTL}
	for _, k := range keys {
		out.Keys = append(out.Keys, []byte(k))
	}
	return out, nil
}

func (l *leaseServer) LeaseLeases(ctx context.Context, _ *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	if err := l.s.barrier(ctx, false); err != nil {
		return nil, err
	}
	out := &pb.LeaseLeasesResponse{Header: l.s.header(0)}
	for _, ls := range l.s.cfg.Store.Leases() {
		out.Leases = append(out.Leases, &pb.LeaseStatus{ID: ls.ID})
	}
	return out, nil
}

// LeaseKeepAlive renews leases on the leader, one request at a time. A
// follower relays each request to the leader over one upstream stream,
// opened again after leadership moves; a keep-alive is idempotent, so a
// relay that fails is tried again, within the request timeout.
func (l *leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	ctx := stream.Context()
	r := &keepAliveRelay{parent: ctx}
	defer r.close()
	// Whether the stream came from a follower is fixed for its life; the
	// metadata lookup costs more than a renewal.
	fwd := forwarded(ctx)
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp, err := l.keepAlive(ctx, fwd, r, req)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// keepAliveRelay is a follower's upstream keep-alive stream to the leader.
// It lives as long as the client's stream (parent), not one request, so
// that one upstream stream carries every renewal of the client's.
type keepAliveRelay struct {
	parent context.Context
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	up     pb.Lease_LeaseKeepAliveClient
	// lead is the leader conn was found for: while it leads, the next
	// renewal goes up the same stream without looking its address up.
	lead raftpb.NodeID
}

func (r *keepAliveRelay) close() {
	if r.cancel != nil {
		r.cancel()
	}
	r.conn, r.cancel, r.up, r.lead = nil, nil, nil, raftpb.None
}

// keepAlive answers one keep-alive: renewed here on the leader, relayed
// to it by a follower. fwd says the stream is a follower's relay.
func (l *leaseServer) keepAlive(ctx context.Context, fwd bool, r *keepAliveRelay, req *pb.LeaseKeepAliveRequest) (*pb.LeaseKeepAliveResponse, error) {
	s := l.s
	if fwd {
		return l.renewHere(ctx, req.ID)
	}
	// The leader renews from its clock without waiting (RenewLease bounds
	// the proposal it may need), so it skips the request's own timeout.
	if s.isLeader() {
		r.close()
		resp, err := l.renewHere(ctx, req.ID)
		if err == nil || !(retryable(err) || status.Code(err) == codes.Unavailable) {
			return resp, err
		}
		// Leadership moved meanwhile, or the outcome is unknown: try
		// again below, as any failed attempt is.
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	for {
		lead, _, _ := s.cfg.Node.Leader()
		var conn *grpc.ClientConn
		var fctx context.Context
		var err error
		if r.up != nil && lead == r.lead && lead != raftpb.NodeID(s.cfg.ID) {
			conn, fctx = r.conn, ctx
		} else {
			conn, fctx, err = s.leader(ctx)
		}
		var resp *pb.LeaseKeepAliveResponse
		switch {
		case err != nil:
		case conn == nil:
			r.close()
			resp, err = l.renewHere(ctx, req.ID)
		default:
			resp, err = r.relay(fctx, conn, req)
			if err == nil {
				r.lead = lead
				resp.Header.MemberId = s.cfg.ID
			}
		}
		if err == nil {
			return resp, nil
		}
		if !retryable(err) {
			if status.Code(err) != codes.Unavailable && !errors.Is(err, errRelay) {
				return nil, err
			}
			r.close() // the upstream broke: open another
		}
		if !s.pause(ctx) {
			return nil, err
		}
	}
}

// errRelay marks a failure of the upstream stream itself.
var errRelay = errors.New("etcdapi: keep-alive relay failed")

// relay sends req upstream on conn and waits for its answer, within
// ctx (one request's deadline, carrying the metadata to forward).
func (r *keepAliveRelay) relay(ctx context.Context, conn *grpc.ClientConn, req *pb.LeaseKeepAliveRequest) (*pb.LeaseKeepAliveResponse, error) {
	if r.conn != conn {
		r.close()
		md, _ := metadata.FromOutgoingContext(ctx)
		sctx, cancel := context.WithCancel(metadata.NewOutgoingContext(r.parent, md))
		up, err := pb.NewLeaseClient(conn).LeaseKeepAlive(sctx)
		if err != nil {
			cancel()
			return nil, errRelay
		}
		r.conn, r.cancel, r.up = conn, cancel, up
	}
	// A request that outlives ctx ends the upstream stream, which
	// unblocks Recv; the next request opens another.
	stop := context.AfterFunc(ctx, r.cancel)
	if err := r.up.Send(req); err != nil {
		stop()
		r.close()
		return nil, errRelay
	}
	resp, err := r.up.Recv()
	if !stop() {
		// ctx ended and cancelled the stream (an answer that came first
		// still counts).
		r.close()
	}
	if err != nil {
		r.close()
		if retryable(err) {
			return nil, err
		}
		return nil, errRelay
	}
	return resp, nil
}

// renewHere renews on this member, which must lead.
func (l *leaseServer) renewHere(ctx context.Context, id int64) (*pb.LeaseKeepAliveResponse, error) {
	ttl, ok, err := l.s.cfg.Lessor.RenewLease(ctx, id)
	if err == nil && !ok && l.s.isLeader() {
		// A leader that has just taken over may not have applied a grant
		// that completed before (etcd's leader waits likewise): look
		// again once it has applied all it knows to be committed.
		if err := l.s.barrier(ctx, false); err != nil {
			return nil, err
		}
		ttl, ok, err = l.s.cfg.Lessor.RenewLease(ctx, id)
	}
	if err != nil {
		return nil, nodeError(ctx, err)
	}
	if !ok {
		if !l.s.isLeader() {
			return nil, errNotLeader
		}
		ttl = 0 // etcd answers an unknown lease with TTL 0
	}
	return &pb.LeaseKeepAliveResponse{Header: l.s.header(0), ID: id, TTL: ttl}, nil
}
