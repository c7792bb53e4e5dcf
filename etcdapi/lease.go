package etcdapi

import (
	"context"
	"errors"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"

	"github.com/raftkv/raftkv/kv"
)

type leaseServer struct {
	pb.UnimplementedLeaseServer
	s *Server
}

func (l *leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if r.TTL > kv.MaxLeaseTTL {
		return nil, rpctypes.ErrGRPCLeaseTTLTooLarge
	}
	return onLeader(ctx, l.s, func(ctx context.Context) (*pb.LeaseGrantResponse, error) { return l.grant(ctx, r) },
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
	// Start the lease's clock now rather than at the expiry loop's next tick.
	l.s.cfg.Lessor.LeaseRemaining(res.Lease)
	return &pb.LeaseGrantResponse{Header: l.s.header(res.Revision), ID: res.Lease, TTL: res.TTL}, nil
}

func (l *leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	return onLeader(ctx, l.s, func(ctx context.Context) (*pb.LeaseRevokeResponse, error) { return l.revoke(ctx, r) },
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
	return onLeader(ctx, l.s, func(ctx context.Context) (*pb.LeaseTimeToLiveResponse, error) { return l.timeToLive(ctx, r) },
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

// LeaseKeepAlive renews leases on the leader; a follower relays the whole
// stream to the leader (the client opens a new stream if it breaks).
func (l *leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		conn, fctx, err := l.s.leader(ctx)
		if err != nil {
			return err
		}
		if conn != nil {
			return l.relayKeepAlive(fctx, pb.NewLeaseClient(conn), stream, req)
		}
		ttl, ok, err := l.s.cfg.Lessor.RenewLease(ctx, req.ID)
		if err != nil {
			return nodeError(ctx, err)
		}
		if !ok {
			if !l.s.isLeader() {
				continue // lost leadership: the next request is relayed
			}
			ttl = 0 // etcd answers an unknown lease with TTL 0
		}
		if err := stream.Send(&pb.LeaseKeepAliveResponse{Header: l.s.header(0), ID: req.ID, TTL: ttl}); err != nil {
			return err
		}
	}
}

func (l *leaseServer) relayKeepAlive(ctx context.Context, c pb.LeaseClient, stream pb.Lease_LeaseKeepAliveServer, first *pb.LeaseKeepAliveRequest) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	up, err := c.LeaseKeepAlive(ctx)
	if err != nil {
		return nodeError(ctx, err)
	}
	if err := up.Send(first); err != nil {
		return rpctypes.ErrGRPCLeaderChanged
	}
	errc := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				up.CloseSend()
				errc <- nil
				return
			}
			if err := up.Send(req); err != nil {
				errc <- rpctypes.ErrGRPCLeaderChanged
				return
			}
		}
	}()
	for {
		resp, err := up.Recv()
		if err != nil {
			select {
			case e := <-errc:
				return e // the client closed its side, or the leader went away
			default:
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return rpctypes.ErrGRPCLeaderChanged
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}
