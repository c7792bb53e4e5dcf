package etcdapi

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/raftkv/raftkv/internal/rawio"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
	"github.com/raftkv/raftkv/raft"
	raftpb "github.com/raftkv/raftkv/raftpb"
)

// Lessor is the leader's lease clock, which lives with the lease expiry
// loop (server.Server implements it).
type Lessor interface {
	// RenewLease renews a lease on the leader and returns its TTL; ok is
	// false when the lease does not exist or this member does not lead.
	RenewLease(ctx context.Context, id int64) (ttl int64, ok bool, err error)
	// LeaseRemaining is a lease's remaining TTL on the leader's clock.
	LeaseRemaining(id int64) (ttl int64, ok bool)
	// StartLease gives a lease just granted its whole TTL from now.
	StartLease(id int64)
	// MinLeaseTTL is the shortest TTL granted.
	MinLeaseTTL() int64
}

// Config is what a Server needs. Node, Store and Lessor are required.
type Config struct {
	ID     uint64
	Node   *node.Node
	Store  *kv.Store
	Lessor Lessor
	// Advertise is the etcd address others should use (published in the
	// member table while this member leads).
	Advertise string
	// TLS, if set, is mutual TLS for this listener and for forwarding to
	// the leader, as for the other listeners.
	TLS *tls.Config
	// RequestTimeout bounds a proposal or read barrier. Default 5s.
	RequestTimeout time.Duration
	// ReadBarrier, if set, is the linearizable read barrier, in place of
	// Node.ReadIndex: the raftkv server's, which shares one barrier among
	// the reads that arrive together. It must bound its own wait (the
	// server's ends a round after its request timeout): a read's first
	// attempt gives it the client's context as it is.
	ReadBarrier func(context.Context) error
	// MaxRequestBytes bounds a request. Default 1.5 MiB plus the store's
	// largest value.
	MaxRequestBytes int
	// ProgressInterval is how often a watch with progress_notify gets a
	// progress notification while nothing matches. Default 10 minutes, as
	// etcd's.
	ProgressInterval time.Duration
	// ElectionTimeout is the members' (default 1s): a watch stream that
	// requires a leader ends after three without one.
	ElectionTimeout time.Duration
	Logger          *slog.Logger
}

// streamWorkers is how many goroutines serve the listener's requests: as
// many as the requests a member typically has waiting on Raft at once.
const streamWorkers = 64

// windowBytes is the listener's HTTP/2 flow-control window, per stream
// and per connection: what a client may send unread.
const windowBytes = 4 << 20

// indexKey carries, in the leader's answer to a forwarded write, the log
// index the write applied at, so that the follower answers only once it
// has applied it too: a client that writes through a member and then
// reads or watches there locally sees its write, as with etcd.
const indexKey = "raftkv-applied-index"

// fragmentBytes is the largest watch response a watch that asked for
// fragments gets (one event may exceed it alone), as etcd uses its
// request limit.
func (c Config) fragmentBytes() int { return c.MaxRequestBytes }

// forwardedKey marks a request a follower forwarded to the leader.
const forwardedKey = "raftkv-forwarded"

// Server is the etcd v3 API of one member.
type Server struct {
	cfg  Config
	grpc *grpc.Server

	kv    *kvServer
	lease *leaseServer

	mu   sync.Mutex
	conn *grpc.ClientConn // to connAddr, the leader's etcd address
	addr string

	// The stream forwarded writes take to the leader (forward.go).
	fwdMu      sync.Mutex
	fwd        *fwdStream
	noStream   *grpc.ClientConn // a leader's conn without the stream: unary calls
	fwdStopped bool
	fwdStats   fwdStats

	// expiries bounds proposals made without a deadline of their own.
	expiries *node.Expiries

	stopc chan struct{}
	bg    sync.WaitGroup
}

// New builds the server; Serve starts it.
func New(cfg Config) (*Server, error) {
	if cfg.Node == nil || cfg.Store == nil || cfg.Lessor == nil {
		return nil, errors.New("etcdapi: Node, Store and Lessor are required")
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 3<<19 + cfg.Store.Config().MaxValueBytes
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = 10 * time.Minute
	}
	if cfg.ElectionTimeout <= 0 {
		cfg.ElectionTimeout = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxRequestBytes + 1<<20),
		grpc.MaxSendMsgSize(1<<31 - 1),
		grpc.MaxConcurrentStreams(1 << 16),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Serve requests on long-lived goroutines whose stacks have already
		// grown, instead of a new goroutine per request that grows its
		// stack while decoding the request (copystack was 5% of a range's
		// CPU). A request that finds every worker busy gets its own
		// goroutine, as without workers.
		grpc.NumStreamWorkers(streamWorkers),
		// Fixed flow-control windows turn off gRPC's bandwidth-delay
		// probing, a ping (a frame each way, with its reads and writes)
		// after data on a connection; a request here is far smaller than
		// either window.
		grpc.InitialWindowSize(windowBytes),
		grpc.InitialConnWindowSize(windowBytes),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	s := &Server{cfg: cfg, grpc: grpc.NewServer(opts...), expiries: node.NewExpiries(cfg.RequestTimeout), stopc: make(chan struct{})}
	s.kv, s.lease = &kvServer{s: s}, &leaseServer{s: s}
	pb.RegisterKVServer(s.grpc, s.kv)
	pb.RegisterWatchServer(s.grpc, &watchServer{s: s})
	pb.RegisterLeaseServer(s.grpc, s.lease)
	pb.RegisterClusterServer(s.grpc, &clusterServer{s: s})
	pb.RegisterMaintenanceServer(s.grpc, &maintenanceServer{s: s})
	pb.RegisterAuthServer(s.grpc, &authServer{s: s})
	s.grpc.RegisterService(&publishServiceDesc, s)
	s.grpc.RegisterService(&forwardServiceDesc, s)
	return s, nil
}

// Serve serves l until Stop, and keeps this member's address published
// while it leads.
func (s *Server) Serve(l net.Listener) {
	if s.cfg.Advertise == "" {
		s.cfg.Advertise = l.Addr().String()
	}
	s.bg.Add(2)
	go func() {
		defer s.bg.Done()
		if err := s.grpc.Serve(rawio.Listener{Listener: l}); err != nil {
			s.cfg.Logger.Debug("etcd listener stopped", "err", err)
		}
	}()
	go s.publishLoop()
}

// Addr is the advertised address.
func (s *Server) Addr() string { return s.cfg.Advertise }

// Stop closes every stream and connection.
func (s *Server) Stop() {
	select {
	case <-s.stopc:
		return
	default:
	}
	close(s.stopc)
	s.grpc.Stop()
	s.stopForwarding()
	s.bg.Wait()
	s.mu.Lock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	s.mu.Unlock()
}

func (s *Server) header(rev int64) *pb.ResponseHeader {
	h := &pb.ResponseHeader{}
	s.fillHeader(h, rev)
	return h
}

// fillHeader fills h, a header not yet shared, for this member at rev
// (0: the store's current revision).
func (s *Server) fillHeader(h *pb.ResponseHeader, rev int64) {
	_, term, _ := s.cfg.Node.Leader()
	if rev == 0 {
		rev, _ = s.cfg.Store.Revision()
	}
	h.ClusterId, h.MemberId, h.Revision, h.RaftTerm = s.cfg.Node.ClusterID(), s.cfg.ID, rev, uint64(term)
}

func (s *Server) hasLeader() bool {
	lead, _, role := s.cfg.Node.Leader()
	return lead != raftpb.None && role != raft.Removed
}

func (s *Server) isLeader() bool {
	_, _, role := s.cfg.Node.Leader()
	return role == raft.Leader
}

// leader returns a connection to the leader to forward ctx's request to,
// with the context to use; nil when this member leads. A request already
// forwarded once, or no known leader, is an error.
func (s *Server) leader(ctx context.Context) (*grpc.ClientConn, context.Context, error) {
	conn, err := s.leaderConn(ctx)
	if conn == nil || err != nil {
		return nil, ctx, err
	}
	return conn, forwardContext(ctx), nil
}

// leaderConn is leader without the forwarding context.
func (s *Server) leaderConn(ctx context.Context) (*grpc.ClientConn, error) {
	lead, _, role := s.cfg.Node.Leader()
	if role == raft.Leader {
		return nil, nil
	}
	if forwarded(ctx) {
		return nil, errNotLeader
	}
	if lead == raftpb.None {
		return nil, errNoLeader
	}
	m, _ := s.cfg.Node.Member(lead)
	addr := m.EtcdAddr
	if addr == "" {
		return nil, errNoLeader
	}
	return s.connTo(addr)
}

// forwardContext is ctx with the outgoing metadata of its request
// forwarded: marked so, with the client's own metadata (require-leader
// and the like) passed on, in one addition to the context; the client's
// other metadata is neither needed nor copied.
func forwardContext(ctx context.Context) context.Context {
	pairs := make([]string, 0, 6)
	pairs = append(pairs, forwardedKey, "1")
	for _, k := range passedOn {
		for _, v := range metadata.ValueFromIncomingContext(ctx, k) {
			pairs = append(pairs, k, v)
		}
	}
	return metadata.AppendToOutgoingContext(ctx, pairs...)
}

// passedOn are the client metadata keys a forwarded request keeps.
var passedOn = [...]string{rpctypes.MetadataRequireLeaderKey, "client-api-version"}

func (s *Server) connTo(addr string) (*grpc.ClientConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil && s.addr == addr {
		return s.conn, nil
	}
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	creds := insecure.NewCredentials()
	if s.cfg.TLS != nil {
		creds = credentials.NewTLS(s.cfg.TLS)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds), grpc.WithContextDialer(dialRaw),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<31-1), grpc.MaxCallSendMsgSize(s.cfg.MaxRequestBytes+1<<20)))
	if err != nil {
		return nil, fmt.Errorf("etcdapi: dial leader %s: %w", addr, err)
	}
	s.conn, s.addr = conn, addr
	return conn, nil
}

// dialRaw dials a leader's etcd address for forwarded requests; the
// connection reads and writes through rawio, as the listener's do.
func dialRaw(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return rawio.Wrap(c), nil
}

// propose validates cmd and proposes it on this member, the leader, with
// the request's idempotency key.
func (s *Server) propose(ctx context.Context, cmd kv.Command) (*kv.Result, error) {
	cmd.IdempotencyKey = idempotencyKey(ctx)
	if err := s.cfg.Store.Config().Validate(&cmd); err != nil {
		return nil, kvError(err)
	}
	// A request that onLeader already bounds needs no second timer; one
	// that it does not (its first attempt on the leader) shares a
	// coarse one.
	var expired <-chan struct{}
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > s.cfg.RequestTimeout {
		expired = s.expiries.After(s.cfg.RequestTimeout)
	}
	// Through a step-down, as an etcd member: a write the next leader
	// commits is answered with its result, not "timed out, possibly due
	// to previous leader failure" (a leader starved of CPU for an
	// election timeout otherwise fails every write it had in flight).
	out, err := s.cfg.Node.ProposeThroughStepDown(ctx, kv.EncodeCommand(cmd), expired)
	if err != nil {
		return nil, nodeError(ctx, err)
	}
	res, ok := out.(*kv.Result)
	if !ok {
		return nil, fmt.Errorf("etcdapi: state machine answered %T", out)
	}
	if w := fwdWriteOf(ctx); w != nil {
		w.index = uint64(res.Index)
		s.cfg.Node.SendCommit() // the forwarding member waits to apply it (catchUp)
	} else if forwarded(ctx) {
		grpc.SetHeader(ctx, metadata.Pairs(indexKey, strconv.FormatUint(uint64(res.Index), 10)))
		s.cfg.Node.SendCommit()
	}
	if !res.OK() {
		return nil, kvError(res.Err())
	}
	return res, nil
}

// barrier runs the read barrier a read asks for, waiting out a leader
// election (as etcd does) within the request timeout.
func (s *Server) barrier(ctx context.Context, serializable bool) error {
	if serializable {
		return nil
	}
	barrier := s.cfg.ReadBarrier
	if barrier != nil {
		// ReadBarrier bounds its own wait: the first attempt, which
		// almost always succeeds, takes no timer of its own.
		err := barrier(ctx)
		if err == nil {
			return nil
		}
		if !leadershipMoving(err) {
			return nodeError(ctx, err)
		}
	} else {
		barrier = s.cfg.Node.ReadIndex
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	for first := s.cfg.ReadBarrier == nil; ; first = false {
		if !first && !s.pause(ctx) {
			return rpctypes.ErrGRPCNoLeader
		}
		err := barrier(ctx)
		if err == nil {
			return nil
		}
		if !leadershipMoving(err) {
			return nodeError(ctx, err)
		}
	}
}

// leadershipMoving reports whether a read barrier failed because there is
// no leader here yet or it is being handed over: worth trying again.
func leadershipMoving(err error) bool {
	var nl *node.NotLeaderError
	return errors.As(err, &nl) || errors.Is(err, node.ErrTransferring)
}

// headerIndex is the index in a leader's answer to a forwarded unary
// write (0 if none).
func headerIndex(md metadata.MD) uint64 {
	v := md.Get(indexKey)
	if len(v) == 0 {
		return 0
	}
	index, err := strconv.ParseUint(v[0], 10, 64)
	if err != nil {
		return 0
	}
	return index
}

// catchUp waits until this member has applied index, from a leader's
// answer to a forwarded write (0: nothing to wait for).
func (s *Server) catchUp(ctx context.Context, index uint64) error {
	if index == 0 {
		return nil
	}
	switch err := s.cfg.Node.WaitApplied(ctx, raftpb.Index(index)); {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		// Applied on the leader; this member is behind.
		return rpctypes.ErrGRPCTimeoutWaitAppliedIndex
	default:
		return rpctypes.ErrGRPCStopped
	}
}

// pause waits a moment between attempts; false when ctx ended.
func (s *Server) pause(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-s.stopc:
		return false
	case <-time.After(retryInterval):
		return true
	}
}

// retryInterval is the wait before trying a request that was definitely
// not applied (no leader yet, or the leader moved) again.
const retryInterval = 10 * time.Millisecond

// retryable reports whether err says the request was definitely not
// applied because of where leadership is: then it is tried again.
func retryable(err error) bool {
	return errors.Is(err, rpctypes.ErrGRPCNoLeader) || errors.Is(err, rpctypes.ErrGRPCNotLeader) ||
		errors.Is(err, rpctypes.ErrGRPCLeaderChanged)
}

// forwardError classifies the failure of a forwarded request: one that
// never reached the leader (no connection) is definitely not applied and
// is tried again; one whose connection broke in flight may or may not
// have applied, which etcd reports as a timeout due to leader failure.
//
// A forward ended as canceled or past its deadline (its connection closed
// because the leader moved, say) may have applied too, and must not reach
// the client with those codes: the etcd client takes them for its own
// call's timeout and, its context still alive, sends the write again as a
// new request, which the exactly-once table cannot tell from another.
func forwardError(err error) error {
	st, ok := status.FromError(err)
	if ok && (st.Code() == codes.Canceled || st.Code() == codes.DeadlineExceeded) {
		return rpctypes.ErrGRPCTimeoutDueToLeaderFail
	}
	if err == nil || !ok || st.Code() != codes.Unavailable || retryable(err) {
		return err
	}
	if strings.Contains(st.Message(), "connection error") || strings.Contains(st.Message(), "dialing") {
		return rpctypes.ErrGRPCNoLeader
	}
	if strings.HasPrefix(st.Message(), "etcdserver: ") {
		return err
	}
	return rpctypes.ErrGRPCTimeoutDueToLeaderFail
}

func forwarded(ctx context.Context) bool {
	return fwdWriteOf(ctx) != nil || len(metadata.ValueFromIncomingContext(ctx, forwardedKey)) > 0
}

// onLeader runs a request on the leader: local if this member leads,
// remote (forwarding) otherwise. While leadership is unknown or moving it
// tries again, within the request timeout, as an etcd member waits for a
// leader. A forwarded request that finds no leader here goes back to the
// member that forwarded it, which tries again.
//
// A request forwarded to the leader carries an idempotency key (kv's
// exactly-once table), the same on every later attempt, so when such an
// attempt's outcome is unknown (the connection to the leader broke in
// flight, or the leader lost leadership) an idempotent request is tried
// again too: the store applies it at most once and the retry answers with
// the first attempt's result. A request this member serves as leader
// from the start carries no key, as with etcd: its command stays short and
// takes no entry in the table, and an unknown outcome of it is the
// client's answer (at most once). Membership changes are not idempotent
// that way and are not retried.
func onLeader[T response](ctx context.Context, s *Server, idempotent bool,
	local func(context.Context) (T, error), remote func(*grpc.ClientConn, context.Context, grpc.CallOption) (T, error)) (T, error) {
	return onLeaderVia(ctx, s, idempotent, fwdVia{}, local, remote)
}

type response interface {
	GetHeader() *pb.ResponseHeader
	proto.Message
}

// onLeaderVia is onLeader for a write that a follower forwards on the
// stream to the leader (forward.go) as via says, by remote only when
// the leader does not take the stream or the write is too large for it.
func onLeaderVia[T response](ctx context.Context, s *Server, idempotent bool, via fwdVia,
	local func(context.Context) (T, error), remote func(*grpc.ClientConn, context.Context, grpc.CallOption) (T, error)) (T, error) {
	var zero T
	if forwarded(ctx) {
		if !s.isLeader() {
			return zero, errNotLeader
		}
		return local(ctx)
	}
	if via.kind != fwdNone && s.isLeader() {
		// The common case, a write on the leader, takes no timer of its
		// own: propose bounds it with a shared one. Only a retry needs
		// the request's deadline.
		out, err := local(ctx)
		if err == nil || !retryable(err) || !s.pause(ctx) {
			return out, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	key := "" // made for the first forwarded attempt, kept for the rest
	for {
		conn, err := s.leaderConn(ctx)
		if conn != nil && key == "" {
			key = newIdempotencyKey()
			ctx = context.WithValue(ctx, idempotencyCtxKey{}, key)
		}
		var out T
		switch {
		case err != nil:
		case conn == nil:
			out, err = local(ctx)
		default:
			var index uint64
			err = errNoForwardStream
			if via.kind != fwdNone {
				out, index, err = forwardOnStream[T](ctx, s, conn, via, key)
			}
			if errors.Is(err, errNoForwardStream) {
				var md metadata.MD
				fctx := metadata.AppendToOutgoingContext(forwardContext(ctx), idempotencyMDKey, key)
				out, err = remote(conn, fctx, grpc.Header(&md))
				index = headerIndex(md)
			}
			err = forwardError(err)
			if err == nil {
				err = s.catchUp(ctx, index)
			}
			if err == nil && out.GetHeader() != nil {
				// The answer is this member's, as with etcd's followers.
				out.GetHeader().MemberId = s.cfg.ID
			}
		}
		again := retryable(err) || (idempotent && key != "" && errors.Is(err, rpctypes.ErrGRPCTimeoutDueToLeaderFail))
		if err == nil || !again {
			return out, err
		}
		if !s.pause(ctx) {
			return zero, err
		}
	}
}

// idempotencyMDKey carries a forwarded request's idempotency key.
const idempotencyMDKey = "raftkv-idempotency-key"

type idempotencyCtxKey struct{}

// newIdempotencyKey is 16 random bytes in hex: unique without coordination.
func newIdempotencyKey() string {
	var b [16]byte
	rand.Read(b[:])
	return "etcd-" + hex.EncodeToString(b[:])
}

// idempotencyKey is the key of the request ctx belongs to ("" if none).
func idempotencyKey(ctx context.Context) string {
	if k, ok := ctx.Value(idempotencyCtxKey{}).(string); ok {
		return k
	}
	if w := fwdWriteOf(ctx); w != nil {
		if len(w.key) > kv.MaxIdempotencyKeyBytes {
			return ""
		}
		return w.key
	}
	if v := metadata.ValueFromIncomingContext(ctx, idempotencyMDKey); len(v) == 1 && len(v[0]) <= kv.MaxIdempotencyKeyBytes {
		return v[0]
	}
	return ""
}
