package etcdapi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/raftkv/raftkv/kv"
)

// A follower forwards its hot writes (Put, DeleteRange, Txn, LeaseGrant,
// LeaseRevoke) to the leader over one long-lived bidirectional stream per
// leader, not one gRPC call each: a sender goroutine puts whatever writes
// are queued into one message (a frame), and the leader answers each
// write by its id, its answers likewise gathered into frames by one
// writer goroutine. A unary call per write costs an HTTP/2 stream
// (headers, flow control, a goroutine on each side, the metadata) that
// was the largest single cost of a forwarded write. The rarer forwarded
// requests (compaction, membership, leadership, keep-alives) keep their
// own calls.
//
// The leader runs a write from the stream through the same handler as a
// forwarded unary call (same idempotency key, same not-leader refusal,
// same errors); an error travels as its gRPC code and message, so the
// follower classifies and retries it as it would the unary call's.
//
// Request frame: version byte, then items:
//
//	write:  1, id, kind, timeout (ns, 0 none), key (len, bytes), request (len, proto)
//	cancel: 2, id
//
// Answer frame: version byte, then per write: id, code, and for code 0
// the applied index and the response (len, proto), otherwise the error
// message (len, bytes). Numbers are unsigned varints.

const (
	forwardMethod = "/raftkv.etcdapi.Forward/Writes"
	// fwdFrameBytes bounds a frame's writes (one frame may hold a larger
	// answer alone); a write larger than that takes its own unary call.
	fwdFrameBytes = 1 << 20
	// fwdMaxInFlight bounds the writes pending on one stream; past it a
	// write is refused with etcd's "too many requests".
	fwdMaxInFlight = 4096
	fwdCodecName   = "raftkv-forward"
	frameVersion   = 1
	itemWrite      = 1
	itemCancel     = 2
	// fwdItemOverhead bounds an item's bytes besides its request.
	fwdItemOverhead = 1 + 3*binary.MaxVarintLen64 + 1 + binary.MaxVarintLen64 + kv.MaxIdempotencyKeyBytes
	// clusterIDKey and memberIDKey name, in the stream's metadata, the
	// cluster and member that opened it.
	clusterIDKey = "raftkv-cluster-id"
	memberIDKey  = "raftkv-member-id"
)

// fwdKind is a write's method on the stream.
type fwdKind byte

const (
	fwdNone fwdKind = iota // a unary call
	fwdPut
	fwdDeleteRange
	fwdTxn
	fwdLeaseGrant
	fwdLeaseRevoke
)

// fwdVia says how a request travels to the leader: on the stream as kind
// with req, or (kind fwdNone) by its own call.
type fwdVia struct {
	kind fwdKind
	req  proto.Message
}

var forwardServiceDesc = grpc.ServiceDesc{
	ServiceName: "raftkv.etcdapi.Forward",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Writes",
		Handler:       func(srv any, stream grpc.ServerStream) error { return srv.(*Server).serveForwarded(stream) },
		ServerStreams: true,
		ClientStreams: true,
	}},
	Metadata: "raftkv/etcdapi",
}

var fwdStreamDesc = grpc.StreamDesc{StreamName: "Writes", ServerStreams: true, ClientStreams: true}

func init() { encoding.RegisterCodecV2(fwdCodec{}) }

// fwdFrame is one stream message: the frame's bytes, whose reference
// passes to gRPC when sent and to the receiver when received.
type fwdFrame struct{ buf mem.Buffer }

// fwdCodec carries frames as they are, with no protobuf wrapping. gRPC
// picks it by content subtype on both sides.
type fwdCodec struct{}

func (fwdCodec) Name() string { return fwdCodecName }

func (fwdCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*fwdFrame)
	if !ok || f.buf == nil {
		return nil, fmt.Errorf("etcdapi: forwarding codec: cannot encode %T", v)
	}
	return mem.BufferSlice{f.buf}, nil
}

func (fwdCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*fwdFrame)
	if !ok {
		return fmt.Errorf("etcdapi: forwarding codec: cannot decode into %T", v)
	}
	f.buf = data.MaterializeToBuffer(mem.DefaultBufferPool())
	return nil
}

// frameReader reads a frame's fields; the first error sticks.
type frameReader struct {
	b   []byte
	err error
}

var errShortFrame = errors.New("frame cut short")

func (r *frameReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShortFrame
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *frameReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = errShortFrame
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *frameReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errShortFrame
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// ---- follower side ----

// errNoForwardStream says the leader does not serve the stream (an older
// version): the write takes a unary call, as before.
var errNoForwardStream = errors.New("etcdapi: the leader does not take forwarded writes on a stream")

// fwdCall is one write on a follower's stream.
type fwdCall struct {
	id      uint64
	kind    fwdKind
	key     string
	timeout time.Duration
	req     proto.Message
	size    int // req's encoded size, computed before queueing
	resp    proto.Message
	sent    bool // guarded by the stream's mu: handed to gRPC
	done    chan struct{}
	index   uint64
	err     error
}

// fwdStats counts a follower's use of its streams.
type fwdStats struct {
	writes  atomic.Uint64 // writes sent
	frames  atomic.Uint64 // frames sent
	unknown atomic.Uint64 // writes sent whose stream broke before their answer
}

// fwdStream is a follower's stream to the leader at conn.
type fwdStream struct {
	conn   *grpc.ClientConn
	md     metadata.MD // names this member and its cluster to the leader
	logger *slog.Logger
	stats  *fwdStats
	// ended, if set, learns that the stream ended and whether the leader
	// does not serve it at all.
	ended  func(unimplemented bool)
	cancel context.CancelFunc
	wake   chan struct{} // the sender has work

	mu      sync.Mutex
	pending map[uint64]*fwdCall // sent or queued, not answered
	queue   []*fwdCall          // not sent yet
	cancels []uint64            // sent, then abandoned by their callers
	nextID  uint64
	closed  bool // no call is taken any more
}

// newFwdStream opens a stream on conn and serves it on its own
// goroutines until it breaks or is canceled; wg counts them.
func newFwdStream(conn *grpc.ClientConn, md metadata.MD, logger *slog.Logger, stats *fwdStats,
	ended func(unimplemented bool), wg *sync.WaitGroup) *fwdStream {
	ctx, cancel := context.WithCancel(context.Background())
	st := &fwdStream{conn: conn, md: md, logger: logger, stats: stats, ended: ended, cancel: cancel,
		wake: make(chan struct{}, 1), pending: map[uint64]*fwdCall{}}
	wg.Add(1)
	go func() {
		defer wg.Done()
		st.run(ctx)
	}()
	return st
}

// fwdStreamFor returns the stream to the leader at conn, opening one if
// there is none or the last one ended; nil when the leader at conn does
// not serve the stream.
func (s *Server) fwdStreamFor(conn *grpc.ClientConn) (*fwdStream, error) {
	s.fwdMu.Lock()
	defer s.fwdMu.Unlock()
	if s.fwdStopped {
		return nil, rpctypes.ErrGRPCStopped
	}
	if s.noStream == conn {
		return nil, nil
	}
	if st := s.fwd; st != nil && st.conn == conn {
		st.mu.Lock()
		closed := st.closed
		st.mu.Unlock()
		if !closed {
			return st, nil
		}
	}
	if s.fwd != nil {
		s.fwd.cancel()
	}
	md := metadata.Pairs(forwardedKey, "1",
		clusterIDKey, strconv.FormatUint(s.cfg.Node.ClusterID(), 10),
		memberIDKey, strconv.FormatUint(s.cfg.ID, 10))
	ended := func(unimplemented bool) {
		if unimplemented {
			s.fwdMu.Lock()
			s.noStream = conn
			s.fwdMu.Unlock()
		}
	}
	st := newFwdStream(conn, md, s.cfg.Logger, &s.fwdStats, ended, &s.bg)
	s.fwd = st
	return st, nil
}

// forwardOnStream sends one write to the leader at conn on the stream and
// waits for its answer, decoded into a new T, and the index it applied at.
func forwardOnStream[T proto.Message](ctx context.Context, s *Server, conn *grpc.ClientConn, via fwdVia, key string) (T, uint64, error) {
	var zero T
	size := proto.Size(via.req)
	if size > fwdFrameBytes-fwdItemOverhead || len(key) > kv.MaxIdempotencyKeyBytes {
		return zero, 0, errNoForwardStream
	}
	st, err := s.fwdStreamFor(conn)
	if err != nil {
		return zero, 0, err
	}
	if st == nil {
		return zero, 0, errNoForwardStream
	}
	resp := zero.ProtoReflect().New().Interface().(T)
	c := &fwdCall{kind: via.kind, key: key, req: via.req, size: size, resp: resp}
	if err := st.call(ctx, c); err != nil {
		return zero, 0, err
	}
	return resp, c.index, nil
}

// call sends c on the stream and waits for its answer, within ctx.
func (st *fwdStream) call(ctx context.Context, c *fwdCall) error {
	c.done = make(chan struct{})
	if d, ok := ctx.Deadline(); ok {
		c.timeout = max(time.Until(d), 1)
	}
	if err := st.enqueue(c); err != nil {
		return err
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		if st.forget(c) {
			// As a unary call ended by its context: forwardError makes
			// it an unknown outcome.
			return status.FromContextError(ctx.Err()).Err()
		}
		<-c.done // answered or failed meanwhile
	}
	return c.err
}

func (st *fwdStream) enqueue(c *fwdCall) error {
	st.mu.Lock()
	switch {
	case st.closed:
		st.mu.Unlock()
		// Not sent: tried again on another stream.
		return rpctypes.ErrGRPCNoLeader
	case len(st.pending)+len(st.cancels) >= fwdMaxInFlight || len(st.queue) >= fwdMaxInFlight:
		// A write given up on leaves pending but stays queued (unsent) or
		// becomes a cancellation (sent) until the sender runs again: while
		// it is stalled those count against the cap too.
		st.mu.Unlock()
		return rpctypes.ErrGRPCRequestTooManyRequests
	}
	st.nextID++
	c.id = st.nextID
	st.pending[c.id] = c
	st.queue = append(st.queue, c)
	st.mu.Unlock()
	st.stats.writes.Add(1)
	st.signal()
	return nil
}

func (st *fwdStream) signal() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// forget removes c, whose caller gives up on it, from the pending table;
// false if it was answered or failed already. A write already sent is
// canceled on the leader too.
func (st *fwdStream) forget(c *fwdCall) bool {
	st.mu.Lock()
	if st.pending[c.id] != c {
		st.mu.Unlock()
		return false
	}
	delete(st.pending, c.id)
	if c.sent {
		st.cancels = append(st.cancels, c.id)
	}
	st.mu.Unlock()
	if c.sent {
		st.signal()
	}
	return true
}

// run opens the stream and serves it until it breaks or ctx ends; then
// every write pending on it fails.
func (st *fwdStream) run(ctx context.Context) {
	defer st.cancel()
	cs, err := st.conn.NewStream(metadata.NewOutgoingContext(ctx, st.md), &fwdStreamDesc, forwardMethod, grpc.ForceCodecV2(fwdCodec{}))
	if err != nil {
		st.fail(err)
		return
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		if err := st.send(ctx, cs); err != nil {
			st.cancel() // ends the receiver too
		}
	}()
	err = st.receive(cs)
	st.cancel()
	<-sent
	st.fail(err)
}

// send puts the queued writes and cancellations into frames until ctx
// ends or a send fails.
func (st *fwdStream) send(ctx context.Context, cs grpc.ClientStream) error {
	var buf []byte
	var batch []*fwdCall
	var cancels []uint64
	var f fwdFrame
	flush := func() error {
		f.buf = mem.Copy(buf, mem.DefaultBufferPool())
		err := cs.SendMsg(&f)
		f.buf = nil
		buf = append(buf[:0], frameVersion)
		st.stats.frames.Add(1)
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-st.wake:
		}
		st.mu.Lock()
		batch, st.queue = st.queue, batch[:0]
		cancels, st.cancels = st.cancels, cancels[:0]
		n := 0
		for _, c := range batch {
			// A write abandoned before it was sent is dropped.
			if st.pending[c.id] == c {
				c.sent = true
				batch[n] = c
				n++
			}
		}
		clear(batch[n:])
		batch = batch[:n]
		st.mu.Unlock()

		buf = append(buf[:0], frameVersion)
		for _, id := range cancels {
			buf = append(buf, itemCancel)
			buf = binary.AppendUvarint(buf, id)
		}
		for i, c := range batch {
			if len(buf) > 1 && len(buf)+fwdItemOverhead+c.size > fwdFrameBytes {
				if err := flush(); err != nil {
					return err
				}
			}
			buf = appendWrite(buf, c)
			batch[i] = nil
		}
		if len(buf) > 1 {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = batch[:0]
	}
}

func appendWrite(buf []byte, c *fwdCall) []byte {
	buf = append(buf, itemWrite)
	buf = binary.AppendUvarint(buf, c.id)
	buf = append(buf, byte(c.kind))
	buf = binary.AppendUvarint(buf, uint64(c.timeout))
	buf = binary.AppendUvarint(buf, uint64(len(c.key)))
	buf = append(buf, c.key...)
	buf = binary.AppendUvarint(buf, uint64(c.size))
	// The size was computed just before queueing, on an unchanging
	// request.
	buf, _ = proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(buf, c.req)
	return buf
}

// receive hands each answer to its write until the stream ends.
func (st *fwdStream) receive(cs grpc.ClientStream) error {
	var f fwdFrame
	for {
		if err := cs.RecvMsg(&f); err != nil {
			return err
		}
		err := st.answer(f.buf.ReadOnlyData())
		f.buf.Free()
		f.buf = nil
		if err != nil {
			st.logger.Warn("forwarding: the leader's answer frame is malformed", "err", err)
			return status.Errorf(codes.Internal, "etcdapi: forwarding: the leader's answer: %v", err)
		}
	}
}

func (st *fwdStream) answer(b []byte) error {
	r := frameReader{b: b}
	if v := r.byte(); r.err == nil && v != frameVersion {
		return fmt.Errorf("frame version %d unknown", v)
	}
	for len(r.b) > 0 && r.err == nil {
		id := r.uvarint()
		code := r.uvarint()
		var index uint64
		if code == 0 {
			index = r.uvarint()
		}
		body := r.bytes()
		if r.err != nil {
			break
		}
		st.mu.Lock()
		c := st.pending[id]
		delete(st.pending, id)
		st.mu.Unlock()
		if c == nil {
			continue // abandoned by its caller
		}
		if code == 0 {
			c.index = index
			if err := proto.Unmarshal(body, c.resp); err != nil {
				c.err = status.Errorf(codes.Internal, "etcdapi: forwarding: the leader's response: %v", err)
			}
		} else {
			c.err = status.Error(codes.Code(code), string(body))
		}
		close(c.done)
	}
	return r.err
}

// fail ends the stream: every write still pending on it gets the error a
// unary call would. One sent may have applied, an unknown outcome (its
// idempotency key makes the retry safe); one not sent, or refused with
// the stream, did not.
func (st *fwdStream) fail(err error) {
	st.mu.Lock()
	st.closed = true
	calls := st.pending
	st.pending, st.queue, st.cancels = nil, nil, nil
	st.mu.Unlock()
	code := status.Code(err)
	if st.ended != nil {
		st.ended(code == codes.Unimplemented)
	}
	for _, c := range calls {
		switch {
		case code == codes.Unimplemented:
			c.err = errNoForwardStream
		case code == codes.PermissionDenied:
			c.err = err
		case !c.sent:
			c.err = rpctypes.ErrGRPCNoLeader
		default:
			c.err = rpctypes.ErrGRPCTimeoutDueToLeaderFail
			st.stats.unknown.Add(1)
		}
		close(c.done)
	}
}

// stopForwarding ends the stream to the leader and opens no other.
func (s *Server) stopForwarding() {
	s.fwdMu.Lock()
	defer s.fwdMu.Unlock()
	s.fwdStopped = true
	if s.fwd != nil {
		s.fwd.cancel()
		s.fwd = nil
	}
}

// ---- leader side ----

// fwdServe is the leader's end of one follower's stream.
type fwdServe struct {
	s      *Server
	stream grpc.ServerStream
	wake   chan struct{} // the writer has answers
	wg     sync.WaitGroup

	mu      sync.Mutex
	running map[uint64]context.CancelFunc
	answers []fwdAnswer
	closing bool // no more answers: the writer sends what it has and ends
}

type fwdAnswer struct {
	id    uint64
	index uint64
	resp  proto.Message
	err   error
}

// fwdWrite is the context of a write from the stream, which carries its
// idempotency key and learns the log index it applied at (one object for
// what would be a context value and its content).
type fwdWrite struct {
	context.Context
	key   string
	index uint64
}

type fwdWriteKey struct{}

func (w *fwdWrite) Value(k any) any {
	if k == (fwdWriteKey{}) {
		return w
	}
	return w.Context.Value(k)
}

func fwdWriteOf(ctx context.Context) *fwdWrite {
	w, _ := ctx.Value(fwdWriteKey{}).(*fwdWrite)
	return w
}

// checkForwarder refuses a stream not opened by another member of this
// cluster.
func (s *Server) checkForwarder(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	one := func(k string) (uint64, bool) {
		v := md.Get(k)
		if len(v) != 1 {
			return 0, false
		}
		n, err := strconv.ParseUint(v[0], 10, 64)
		return n, err == nil
	}
	cluster, ok1 := one(clusterIDKey)
	member, ok2 := one(memberIDKey)
	switch {
	case !forwarded(ctx) || !ok1 || !ok2:
		return status.Error(codes.PermissionDenied, "etcdserver: forwarded writes: the stream names no cluster and member")
	case cluster != s.cfg.Node.ClusterID():
		return status.Errorf(codes.PermissionDenied, "etcdserver: forwarded writes: cluster %x is not this member's cluster %x", cluster, s.cfg.Node.ClusterID())
	case member == s.cfg.ID || !s.isMember(member):
		return status.Errorf(codes.PermissionDenied, "etcdserver: forwarded writes: %x is not another member of this cluster", member)
	}
	return nil
}

// serveForwarded serves one follower's stream: each write runs on its own
// goroutine through the handler of its method; a writer goroutine sends
// the answers.
func (s *Server) serveForwarded(stream grpc.ServerStream) error {
	ctx := stream.Context()
	if err := s.checkForwarder(ctx); err != nil {
		return err
	}
	l := &fwdServe{s: s, stream: stream, wake: make(chan struct{}, 1), running: map[uint64]context.CancelFunc{}}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	written := make(chan error, 1)
	go func() { written <- l.write(wctx) }()
	var f fwdFrame
	for {
		err := stream.RecvMsg(&f)
		if errors.Is(err, io.EOF) {
			// The follower is done sending: answer what runs, then end.
			l.wg.Wait()
			l.mu.Lock()
			l.closing = true
			l.mu.Unlock()
			l.signal()
			return <-written
		}
		if err != nil {
			return err
		}
		err = l.dispatch(ctx, f.buf.ReadOnlyData())
		f.buf.Free()
		f.buf = nil
		if err != nil {
			s.cfg.Logger.Warn("refusing a malformed frame of forwarded writes", "err", err)
			return status.Errorf(codes.InvalidArgument, "etcdserver: forwarded writes: %v", err)
		}
	}
}

func (l *fwdServe) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// dispatch starts the writes of one frame and cancels those it names.
func (l *fwdServe) dispatch(ctx context.Context, b []byte) error {
	r := frameReader{b: b}
	if v := r.byte(); r.err == nil && v != frameVersion {
		return fmt.Errorf("frame version %d unknown", v)
	}
	for len(r.b) > 0 && r.err == nil {
		switch item := r.byte(); item {
		case itemCancel:
			id := r.uvarint()
			l.mu.Lock()
			if cancel := l.running[id]; cancel != nil {
				cancel()
			}
			l.mu.Unlock()
		case itemWrite:
			id := r.uvarint()
			kind := fwdKind(r.byte())
			timeout := r.uvarint()
			key := r.bytes()
			body := r.bytes()
			if r.err != nil {
				break
			}
			if timeout > uint64(l.s.cfg.RequestTimeout) {
				timeout = uint64(l.s.cfg.RequestTimeout)
			}
			if err := l.start(ctx, id, kind, time.Duration(timeout), string(key), body); err != nil {
				return err
			}
		default:
			if r.err == nil {
				return fmt.Errorf("item kind %d unknown", item)
			}
		}
	}
	return r.err
}

// start runs one write; an error refuses the whole stream.
func (l *fwdServe) start(ctx context.Context, id uint64, kind fwdKind, timeout time.Duration, key string, body []byte) error {
	// Answers wait for the writer; a follower that keeps sending while it
	// reads none (its writer stalled) would queue them without end.
	l.mu.Lock()
	waiting := len(l.answers)
	l.mu.Unlock()
	if waiting >= 2*fwdMaxInFlight {
		return fmt.Errorf("%d answers wait unread", waiting)
	}
	var req proto.Message
	switch kind {
	case fwdPut:
		req = new(pb.PutRequest)
	case fwdDeleteRange:
		req = new(pb.DeleteRangeRequest)
	case fwdTxn:
		req = new(pb.TxnRequest)
	case fwdLeaseGrant:
		req = new(pb.LeaseGrantRequest)
	case fwdLeaseRevoke:
		req = new(pb.LeaseRevokeRequest)
	default:
		l.answer(fwdAnswer{id: id, err: status.Errorf(codes.Unimplemented, "etcdserver: forwarded write of unknown kind %d", kind)})
		return nil
	}
	if err := proto.Unmarshal(body, req); err != nil {
		l.answer(fwdAnswer{id: id, err: status.Errorf(codes.Internal, "grpc: error unmarshalling request: %v", err)})
		return nil
	}
	l.mu.Lock()
	if _, dup := l.running[id]; dup {
		l.mu.Unlock()
		return fmt.Errorf("write %d sent twice", id)
	}
	if len(l.running)+len(l.answers) >= fwdMaxInFlight {
		l.mu.Unlock()
		l.answer(fwdAnswer{id: id, err: rpctypes.ErrGRPCRequestTooManyRequests})
		return nil
	}
	w := &fwdWrite{Context: ctx, key: key}
	var wctx context.Context
	var cancel context.CancelFunc
	if timeout > 0 {
		wctx, cancel = context.WithTimeout(w, timeout)
	} else {
		wctx, cancel = context.WithCancel(w)
	}
	l.running[id] = cancel
	l.wg.Add(1)
	l.mu.Unlock()
	go l.run(wctx, cancel, id, kind, req, w)
	return nil
}

func (l *fwdServe) run(ctx context.Context, cancel context.CancelFunc, id uint64, kind fwdKind, req proto.Message, w *fwdWrite) {
	defer l.wg.Done()
	resp, err := l.s.handleForwarded(ctx, kind, req)
	cancel()
	a := fwdAnswer{id: id, err: err}
	if err == nil {
		a.resp, a.index = resp, w.index
	}
	l.mu.Lock()
	delete(l.running, id)
	l.answers = append(l.answers, a)
	l.mu.Unlock()
	l.signal()
}

func (l *fwdServe) answer(a fwdAnswer) {
	l.mu.Lock()
	l.answers = append(l.answers, a)
	l.mu.Unlock()
	l.signal()
}

// handleForwarded runs a write from the stream as its unary call would
// run on this member.
func (s *Server) handleForwarded(ctx context.Context, kind fwdKind, req proto.Message) (proto.Message, error) {
	switch kind {
	case fwdPut:
		return s.kv.Put(ctx, req.(*pb.PutRequest))
	case fwdDeleteRange:
		return s.kv.DeleteRange(ctx, req.(*pb.DeleteRangeRequest))
	case fwdTxn:
		return s.kv.Txn(ctx, req.(*pb.TxnRequest))
	case fwdLeaseGrant:
		return s.lease.LeaseGrant(ctx, req.(*pb.LeaseGrantRequest))
	default:
		return s.lease.LeaseRevoke(ctx, req.(*pb.LeaseRevokeRequest))
	}
}

// write sends the answers, as many as are ready per frame, until ctx
// ends, a send fails, or the stream closes.
func (l *fwdServe) write(ctx context.Context) error {
	var buf []byte
	var batch []fwdAnswer
	var f fwdFrame
	flush := func() error {
		f.buf = mem.Copy(buf, mem.DefaultBufferPool())
		err := l.stream.SendMsg(&f)
		f.buf = nil
		buf = append(buf[:0], frameVersion)
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.wake:
		}
		l.mu.Lock()
		batch, l.answers = l.answers, batch[:0]
		closing := l.closing
		l.mu.Unlock()
		buf = append(buf[:0], frameVersion)
		for i := range batch {
			a := &batch[i]
			size := 0
			if a.err == nil {
				size = proto.Size(a.resp)
			}
			if len(buf) > 1 && len(buf)+size+4*binary.MaxVarintLen64 > fwdFrameBytes {
				if err := flush(); err != nil {
					return err
				}
			}
			buf = appendAnswer(buf, a, size)
			*a = fwdAnswer{}
		}
		if len(buf) > 1 {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = batch[:0]
		if closing {
			return nil
		}
	}
}

func appendAnswer(buf []byte, a *fwdAnswer, size int) []byte {
	buf = binary.AppendUvarint(buf, a.id)
	if a.err != nil {
		st := status.Convert(a.err)
		if st.Code() == codes.OK {
			st = status.New(codes.Unknown, a.err.Error())
		}
		buf = binary.AppendUvarint(buf, uint64(st.Code()))
		buf = binary.AppendUvarint(buf, uint64(len(st.Message())))
		return append(buf, st.Message()...)
	}
	buf = binary.AppendUvarint(buf, 0)
	buf = binary.AppendUvarint(buf, a.index)
	buf = binary.AppendUvarint(buf, uint64(size))
	buf, _ = proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(buf, a.resp)
	return buf
}
