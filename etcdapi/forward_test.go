package etcdapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// fwdItem is a request frame's item as a fake leader reads it.
type fwdItem struct {
	cancel bool
	id     uint64
	kind   fwdKind
	key    string
	req    []byte
}

func readItems(b []byte) ([]fwdItem, error) {
	r := frameReader{b: b}
	if v := r.byte(); v != frameVersion {
		return nil, fmt.Errorf("version %d", v)
	}
	var out []fwdItem
	for len(r.b) > 0 && r.err == nil {
		switch r.byte() {
		case itemCancel:
			out = append(out, fwdItem{cancel: true, id: r.uvarint()})
		case itemWrite:
			it := fwdItem{id: r.uvarint(), kind: fwdKind(r.byte())}
			r.uvarint()
			it.key = string(r.bytes())
			it.req = r.bytes()
			out = append(out, it)
		default:
			return nil, errors.New("unknown item")
		}
	}
	return out, r.err
}

// fakeFwdLeader serves the forwarding stream with serve; a leader that
// takes nothing else.
func fakeFwdLeader(t *testing.T, serve func(grpc.ServerStream) error) *grpc.ClientConn {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	desc := forwardServiceDesc
	desc.Streams = []grpc.StreamDesc{{StreamName: "Writes", ServerStreams: true, ClientStreams: true,
		Handler: func(_ any, st grpc.ServerStream) error { return serve(st) }}}
	gs := grpc.NewServer()
	if serve != nil {
		gs.RegisterService(&desc, struct{}{})
	}
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// testStream opens a follower's stream on conn; the test waits for its
// goroutines to end.
func testStream(t *testing.T, conn *grpc.ClientConn) (*fwdStream, *fwdStats) {
	t.Helper()
	stats := new(fwdStats)
	var wg sync.WaitGroup
	st := newFwdStream(conn, metadata.Pairs(forwardedKey, "1"), slog.New(slog.DiscardHandler), stats, nil, &wg)
	t.Cleanup(func() {
		st.cancel()
		wg.Wait()
	})
	return st, stats
}

func putCall(k string) *fwdCall {
	req := &pb.PutRequest{Key: []byte(k), Value: []byte("v")}
	return &fwdCall{kind: fwdPut, key: "key-" + k, req: req, size: proto.Size(req), resp: new(pb.PutResponse)}
}

func (st *fwdStream) pendingLen() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.pending)
}

func sendAnswers(st grpc.ServerStream, as ...fwdAnswer) error {
	buf := []byte{frameVersion}
	for i := range as {
		size := 0
		if as[i].err == nil {
			size = proto.Size(as[i].resp)
		}
		buf = appendAnswer(buf, &as[i], size)
	}
	return st.SendMsg(&fwdFrame{buf: mem.SliceBuffer(buf)})
}

// TestForwardStreamAnswersByID sends hundreds of writes at once: each gets
// its own answer, matched by id whatever the order the leader answers in,
// and they travel in fewer frames than writes.
func TestForwardStreamAnswersByID(t *testing.T) {
	conn := fakeFwdLeader(t, func(s grpc.ServerStream) error {
		for {
			f := new(fwdFrame)
			if err := s.RecvMsg(f); err != nil {
				return err
			}
			items, err := readItems(f.buf.ReadOnlyData())
			f.buf.Free()
			if err != nil {
				return status.Error(codes.InvalidArgument, err.Error())
			}
			var as []fwdAnswer
			for i := len(items) - 1; i >= 0; i-- { // answered backwards
				it := items[i]
				req := new(pb.PutRequest)
				proto.Unmarshal(it.req, req)
				if string(req.Key) == "fail" {
					as = append(as, fwdAnswer{id: it.id, err: rpctypes.ErrGRPCLeaseNotFound})
					continue
				}
				as = append(as, fwdAnswer{id: it.id, index: it.id + 100,
					resp: &pb.PutResponse{Header: &pb.ResponseHeader{Revision: int64(it.id)}, PrevKv: nil}})
			}
			if err := sendAnswers(s, as...); err != nil {
				return err
			}
		}
	})
	st, stats := testStream(t, conn)
	const n = 500
	var wg sync.WaitGroup
	errs := make(chan error, n+1)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := putCall(fmt.Sprint(i))
			if err := st.call(context.Background(), c); err != nil {
				errs <- err
				return
			}
			if rev := c.resp.(*pb.PutResponse).Header.Revision; uint64(rev) != c.id || c.index != c.id+100 {
				errs <- fmt.Errorf("write %d answered with revision %d, index %d", c.id, rev, c.index)
			}
		}()
	}
	wg.Wait()
	err := st.call(context.Background(), putCall("fail"))
	if !errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) {
		t.Errorf("an error answer came back as %v, want %v", err, rpctypes.ErrGRPCLeaseNotFound)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if w, f := stats.writes.Load(), stats.frames.Load(); w != n+1 || f >= w {
		t.Errorf("%d writes in %d frames", w, f)
	}
	if p := st.pendingLen(); p != 0 {
		t.Errorf("%d writes left pending", p)
	}
}

// TestForwardStreamCancel: a write whose context ends before its answer
// returns as a unary call would, leaves the pending table, and is
// canceled on the leader; a late answer to it is dropped.
func TestForwardStreamCancel(t *testing.T) {
	items := make(chan fwdItem, 16)
	conn := fakeFwdLeader(t, func(s grpc.ServerStream) error {
		for {
			f := new(fwdFrame)
			if err := s.RecvMsg(f); err != nil {
				return err
			}
			its, err := readItems(f.buf.ReadOnlyData())
			f.buf.Free()
			if err != nil {
				return err
			}
			for _, it := range its {
				items <- it
				// Write a is answered only once canceled (a late answer),
				// the others at once.
				if it.cancel || it.key != "key-a" {
					if err := sendAnswers(s, fwdAnswer{id: it.id, resp: &pb.PutResponse{}}); err != nil {
						return err
					}
				}
			}
		}
	})
	st, _ := testStream(t, conn)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	c := putCall("a")
	err := st.call(ctx, c)
	if status.Code(err) != codes.DeadlineExceeded || !errors.Is(forwardError(err), rpctypes.ErrGRPCTimeoutDueToLeaderFail) {
		t.Fatalf("a write past its deadline: %v, want deadline exceeded (unknown outcome)", err)
	}
	if p := st.pendingLen(); p != 0 {
		t.Fatalf("%d writes pending after the only one was canceled", p)
	}
	want := []fwdItem{{id: c.id, kind: fwdPut, key: "key-a"}, {cancel: true, id: c.id}}
	for _, w := range want {
		select {
		case it := <-items:
			if it.cancel != w.cancel || it.id != w.id || it.kind != w.kind || it.key != w.key {
				t.Fatalf("the leader read %+v, want %+v", it, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("the leader never read %+v", w)
		}
	}
	// The stream goes on: the next write is answered.
	if err := st.call(context.Background(), putCall("b")); err != nil {
		t.Fatalf("a write after a canceled one: %v", err)
	}
}

// TestForwardStreamBroken: when the stream breaks, a write it carried gets
// the unknown outcome a broken unary call gets (retried with its key), and
// the stream takes no more writes.
func TestForwardStreamBroken(t *testing.T) {
	got := make(chan struct{})
	conn := fakeFwdLeader(t, func(s grpc.ServerStream) error {
		f := new(fwdFrame)
		if err := s.RecvMsg(f); err != nil {
			return err
		}
		f.buf.Free()
		close(got)
		return status.Error(codes.Unavailable, "transport is closing")
	})
	st, stats := testStream(t, conn)
	err := st.call(context.Background(), putCall("a"))
	<-got
	if !errors.Is(err, rpctypes.ErrGRPCTimeoutDueToLeaderFail) || stats.unknown.Load() != 1 {
		t.Fatalf("a write on a broken stream: %v (%d unknown), want %v", err, stats.unknown.Load(), rpctypes.ErrGRPCTimeoutDueToLeaderFail)
	}
	if err := st.call(context.Background(), putCall("b")); !errors.Is(err, rpctypes.ErrGRPCNoLeader) || !retryable(err) {
		t.Fatalf("a write on an ended stream: %v, want %v (not sent, tried again)", err, rpctypes.ErrGRPCNoLeader)
	}
}

// TestForwardStreamRefused: a leader that refuses the stream ran none of
// its writes, which get the refusal; one without the stream (an older
// version) sends them back to unary calls.
func TestForwardStreamRefused(t *testing.T) {
	refusal := status.Error(codes.PermissionDenied, "etcdserver: forwarded writes: not a member")
	conn := fakeFwdLeader(t, func(grpc.ServerStream) error { return refusal })
	st, _ := testStream(t, conn)
	if err := st.call(context.Background(), putCall("a")); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a write on a refused stream: %v, want %v", err, refusal)
	}
	var unimplemented bool
	var wg sync.WaitGroup
	st = newFwdStream(fakeFwdLeader(t, nil), nil, slog.New(slog.DiscardHandler), new(fwdStats),
		func(u bool) { unimplemented = u }, &wg)
	err := st.call(context.Background(), putCall("a"))
	wg.Wait()
	if !errors.Is(err, errNoForwardStream) || !unimplemented {
		t.Fatalf("a write to a leader without the stream: %v (unimplemented %v), want %v", err, unimplemented, errNoForwardStream)
	}
}

// TestForwardStreamBounded: past fwdMaxInFlight pending writes a write is
// refused with "too many requests"; writes given up leave the table.
func TestForwardStreamBounded(t *testing.T) {
	conn := fakeFwdLeader(t, func(s grpc.ServerStream) error {
		for {
			f := new(fwdFrame)
			if err := s.RecvMsg(f); err != nil {
				return err
			}
			f.buf.Free()
		}
	})
	st, _ := testStream(t, conn)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < fwdMaxInFlight; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.call(ctx, putCall(fmt.Sprint(i)))
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for st.pendingLen() < fwdMaxInFlight && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := st.call(context.Background(), putCall("one more")); !errors.Is(err, rpctypes.ErrGRPCRequestTooManyRequests) {
		t.Errorf("a write past the cap: %v, want %v", err, rpctypes.ErrGRPCRequestTooManyRequests)
	}
	cancel()
	wg.Wait()
	if p := st.pendingLen(); p != 0 {
		t.Fatalf("%d writes pending after all were given up", p)
	}
}

// TestForwardStreamBadAnswer: an answer frame the follower cannot read
// ends the stream; its writes are unknown outcomes.
func TestForwardStreamBadAnswer(t *testing.T) {
	conn := fakeFwdLeader(t, func(s grpc.ServerStream) error {
		f := new(fwdFrame)
		if err := s.RecvMsg(f); err != nil {
			return err
		}
		f.buf.Free()
		if err := s.SendMsg(&fwdFrame{buf: mem.SliceBuffer{frameVersion, 1, 0, 5, 0xff}}); err != nil {
			return err
		}
		<-s.Context().Done()
		return nil
	})
	st, _ := testStream(t, conn)
	if err := st.call(context.Background(), putCall("a")); !errors.Is(err, rpctypes.ErrGRPCTimeoutDueToLeaderFail) {
		t.Fatalf("a write answered in a malformed frame: %v, want %v", err, rpctypes.ErrGRPCTimeoutDueToLeaderFail)
	}
}

// TestForwardCodec refuses what is not a frame, and the frame reader
// refuses frames cut short.
func TestForwardCodec(t *testing.T) {
	if _, err := (fwdCodec{}).Marshal(&pb.PutRequest{}); err == nil {
		t.Error("the codec encoded a protobuf message")
	}
	if err := (fwdCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer{1}}, &pb.PutRequest{}); err == nil {
		t.Error("the codec decoded into a protobuf message")
	}
	for _, b := range [][]byte{{}, {0x80}, {5, 3, 2}} {
		r := frameReader{b: b}
		r.uvarint()
		r.bytes()
		if r.err == nil {
			t.Errorf("%x read without error", b)
		}
	}
}

// TestForwardStreamBoundedWhileSenderStalls: while the sender is stuck
// (the leader reads nothing, so gRPC's flow control holds it), writes
// whose callers give up leave the pending table but must not pile up in
// the send queue or the list of cancellations: both stay within the cap.
func TestForwardStreamBoundedWhileSenderStalls(t *testing.T) {
	// No goroutines: the sender is as good as stalled.
	st := &fwdStream{wake: make(chan struct{}, 1), pending: map[uint64]*fwdCall{}, stats: new(fwdStats)}
	refused := 0
	for i := 0; i < 3*fwdMaxInFlight; i++ {
		c := putCall(fmt.Sprint(i))
		c.done = make(chan struct{})
		if err := st.enqueue(c); err != nil {
			refused++
			continue
		}
		if i%2 == 1 {
			// Taken by the sender, which is now blocked in SendMsg.
			st.mu.Lock()
			c.sent = true
			st.queue = st.queue[:len(st.queue)-1]
			st.mu.Unlock()
		}
		st.forget(c)
	}
	if refused == 0 {
		t.Error("no write was refused while the sender was stalled")
	}
	if len(st.queue) > fwdMaxInFlight || len(st.cancels) > fwdMaxInFlight {
		t.Fatalf("queue %d, cancels %d: over the cap of %d", len(st.queue), len(st.cancels), fwdMaxInFlight)
	}
}

// TestForwardServeBoundedAnswers: on the leader, answers wait for the
// writer; when the follower reads none (the writer is stalled) while it
// keeps sending, the answers waiting must stay bounded: past the cap the
// stream is refused rather than queueing more.
func TestForwardServeBoundedAnswers(t *testing.T) {
	s := &Server{cfg: Config{RequestTimeout: time.Second}}
	// No writer goroutine: as good as stalled in SendMsg.
	l := &fwdServe{s: s, wake: make(chan struct{}, 1), running: map[uint64]context.CancelFunc{}}
	var err error
	id := uint64(0)
	for f := 0; f < 3*fwdMaxInFlight/64 && err == nil; f++ {
		buf := []byte{frameVersion}
		for i := 0; i < 64; i++ {
			id++
			// A kind this leader does not know: answered at once.
			c := &fwdCall{id: id, kind: fwdKind(99), req: &pb.PutRequest{}}
			buf = appendWrite(buf, c)
		}
		err = l.dispatch(context.Background(), buf)
	}
	if n := len(l.answers); n > 2*fwdMaxInFlight {
		t.Fatalf("%d answers waiting for a stalled writer (stream error %v)", n, err)
	}
	if err == nil {
		t.Fatal("a follower that reads no answers kept its stream")
	}
}
