package etcdapi

import (
	"context"
	"crypto/sha256"
	"hash"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/api/v3/version"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftkv/raftkv/node"
	"github.com/raftkv/raftkv/raft"
	raftpb "github.com/raftkv/raftkv/raftpb"
)

// snapshotChunkBytes is the blob size of one Snapshot response.
const snapshotChunkBytes = 64 << 10

type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	s *Server
}

func (m *maintenanceServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	st := m.s.cfg.Node.Status()
	out := &pb.StatusResponse{Header: m.s.header(0), Version: version.Version, Leader: uint64(st.Lead),
		RaftIndex: uint64(st.Commit), RaftTerm: uint64(st.Term), RaftAppliedIndex: uint64(st.Applied),
		IsLearner: st.Role == raft.Learner, StorageVersion: version.Version}
	if st.Err != nil {
		out.Errors = []string{st.Err.Error()}
	}
	// The database size is the size of the store's snapshot stream (what
	// a member sends a new member), written to a counter.
	if view, err := m.s.cfg.Store.Snapshot(); err == nil {
		n, _ := view.WriteTo(io.Discard)
		out.DbSize, out.DbSizeInUse = n, n
	}
	if st.Lead == raftpb.None {
		out.Errors = append(out.Errors, rpctypes.ErrGRPCNoLeader.Error())
	}
	return out, nil
}

// Alarm lists the no-space alarms members have raised (a full disk or
// the state quota; raftkv raises and clears them itself, so activate and
// deactivate only list them too).
func (m *maintenanceServer) Alarm(context.Context, *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	out := &pb.AlarmResponse{Header: m.s.header(0)}
	for _, x := range m.s.cfg.Node.Status().Members {
		if x.Alarm == node.AlarmNoSpace {
			out.Alarms = append(out.Alarms, &pb.AlarmMember{MemberID: uint64(x.ID), Alarm: pb.AlarmType_NOSPACE})
		}
	}
	return out, nil
}

func (m *maintenanceServer) Hash(ctx context.Context, _ *pb.HashRequest) (*pb.HashResponse, error) {
	return &pb.HashResponse{Header: m.s.header(0), Hash: uint32(m.s.cfg.Store.Hash())}, nil
}

// HashKV hashes the whole store as it is now (the revision asked for is
// not used: the hash is of the present state with its history).
func (m *maintenanceServer) HashKV(ctx context.Context, _ *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	rev, compacted := m.s.cfg.Store.Revision()
	return &pb.HashKVResponse{Header: m.s.header(rev), Hash: uint32(m.s.cfg.Store.Hash()), CompactRevision: compacted, HashRevision: rev}, nil
}

func (m *maintenanceServer) Defragment(context.Context, *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	return &pb.DefragmentResponse{Header: m.s.header(0)}, nil
}

func (m *maintenanceServer) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	if !m.s.isLeader() {
		return nil, rpctypes.ErrGRPCNotLeader
	}
	voter := false
	for _, x := range m.s.cfg.Node.Status().Members {
		if uint64(x.ID) == r.TargetID && x.Voter {
			voter = true
		}
	}
	if !voter {
		return nil, rpctypes.ErrGRPCBadLeaderTransferee
	}
	ctx, cancel := context.WithTimeout(ctx, m.s.cfg.RequestTimeout)
	defer cancel()
	if err := m.s.cfg.Node.TransferLeadership(ctx, raftpb.NodeID(r.TargetID)); err != nil {
		return nil, nodeError(ctx, err)
	}
	return &pb.MoveLeaderResponse{Header: m.s.header(0)}, nil
}

// snapshotWriter sends what is written to it as Snapshot responses,
// keeping its length and SHA-256.
type snapshotWriter struct {
	stream pb.Maintenance_SnapshotServer
	first  bool
	n      int64
	sum    hash.Hash
}

func (w *snapshotWriter) Write(b []byte) (int, error) {
	n := len(b)
	w.n += int64(n)
	w.sum.Write(b)
	for len(b) > 0 {
		c := b[:min(len(b), snapshotChunkBytes)]
		resp := &pb.SnapshotResponse{Header: nil, RemainingBytes: 1, Blob: c}
		if w.first {
			resp.Version, w.first = version.Version, false
		}
		if err := w.stream.Send(resp); err != nil {
			return 0, err
		}
		b = b[len(c):]
	}
	return n, nil
}

// Snapshot streams the store in raftkv's snapshot format, laid out as
// etcd lays out its database: zero-padded to a multiple of 512 bytes and
// followed by the SHA-256 of what precedes, which etcd's client checks.
// It is not a bbolt file: `etcdutl snapshot restore` cannot read it.
func (m *maintenanceServer) Snapshot(_ *pb.SnapshotRequest, stream pb.Maintenance_SnapshotServer) error {
	view, err := m.s.cfg.Store.Snapshot()
	if err != nil {
		return status.Error(codes.Internal, "etcdserver: "+err.Error())
	}
	w := &snapshotWriter{stream: stream, first: true, sum: sha256.New()}
	if _, err := view.WriteTo(w); err != nil {
		return err
	}
	if pad := (512 - w.n%512) % 512; pad > 0 {
		if _, err := w.Write(make([]byte, pad)); err != nil {
			return err
		}
	}
	return stream.Send(&pb.SnapshotResponse{Header: m.s.header(0), RemainingBytes: 0, Blob: w.sum.Sum(nil)})
}

type authServer struct {
	pb.UnimplementedAuthServer
	s *Server
}

var errAuthNotSupported = status.Error(codes.FailedPrecondition, "etcdserver: authentication is not supported by raftkv")

func (a *authServer) AuthStatus(context.Context, *pb.AuthStatusRequest) (*pb.AuthStatusResponse, error) {
	return &pb.AuthStatusResponse{Header: a.s.header(0), Enabled: false}, nil
}

func (a *authServer) Authenticate(context.Context, *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	return nil, rpctypes.ErrGRPCAuthNotEnabled
}

func (a *authServer) AuthEnable(context.Context, *pb.AuthEnableRequest) (*pb.AuthEnableResponse, error) {
	return nil, errAuthNotSupported
}

func (a *authServer) AuthDisable(context.Context, *pb.AuthDisableRequest) (*pb.AuthDisableResponse, error) {
	return &pb.AuthDisableResponse{Header: a.s.header(0)}, nil
}
