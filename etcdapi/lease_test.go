package etcdapi

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// fakeLeader answers keep-alives with TTL 7, counting the streams opened
// and the forwarded marker they carry; hang makes it stop answering.
type fakeLeader struct {
	pb.UnimplementedLeaseServer
	streams, marked atomic.Int64
	hang            atomic.Bool
}

func (f *fakeLeader) LeaseKeepAlive(st pb.Lease_LeaseKeepAliveServer) error {
	f.streams.Add(1)
	if md, ok := metadata.FromIncomingContext(st.Context()); ok && len(md.Get(forwardedKey)) > 0 {
		f.marked.Add(1)
	}
	for {
		req, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if f.hang.Load() {
			<-st.Context().Done()
			return st.Context().Err()
		}
		if err := st.Send(&pb.LeaseKeepAliveResponse{Header: &pb.ResponseHeader{}, ID: req.ID, TTL: 7}); err != nil {
			return err
		}
	}
}

func startFakeLeader(t *testing.T) (*fakeLeader, *grpc.ClientConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeLeader{}
	gs := grpc.NewServer()
	pb.RegisterLeaseServer(gs, f)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return f, conn
}

// TestKeepAliveRelayOneStream: a follower relays every keep-alive of a
// client's stream over one upstream stream, though each request has its
// own deadline that ends when it is answered (as keepAlive gives it), and
// the upstream stream carries the forwarded marker of the first request.
func TestKeepAliveRelayOneStream(t *testing.T) {
	f, conn := startFakeLeader(t)
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	r := &keepAliveRelay{parent: parent}
	defer r.close()
	const n = 20
	for i := range n {
		ctx, cancel := context.WithTimeout(parent, 3*time.Second)
		ctx = metadata.AppendToOutgoingContext(ctx, forwardedKey, "1")
		resp, err := r.relay(ctx, conn, &pb.LeaseKeepAliveRequest{ID: int64(i + 1)})
		cancel()
		if err != nil {
			t.Fatalf("keep-alive %d: %v", i, err)
		}
		if resp.ID != int64(i+1) || resp.TTL != 7 {
			t.Fatalf("keep-alive %d: answer %+v", i, resp)
		}
	}
	if got := f.streams.Load(); got != 1 {
		t.Fatalf("%d keep-alives opened %d upstream streams, want 1", n, got)
	}
	if got := f.marked.Load(); got != 1 {
		t.Fatalf("upstream streams with the forwarded marker: %d, want 1", got)
	}
}

// TestKeepAliveRelayDeadline: a request whose deadline passes while the
// leader does not answer fails at the deadline, and the next request
// opens a new upstream stream.
func TestKeepAliveRelayDeadline(t *testing.T) {
	f, conn := startFakeLeader(t)
	r := &keepAliveRelay{parent: context.Background()}
	defer r.close()
	f.hang.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	start := time.Now()
	_, err := r.relay(ctx, conn, &pb.LeaseKeepAliveRequest{ID: 1})
	cancel()
	if err == nil {
		t.Fatal("a keep-alive the leader never answered succeeded")
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Fatalf("the relay waited %v past a 100ms deadline", waited)
	}
	f.hang.Store(false)
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := r.relay(ctx, conn, &pb.LeaseKeepAliveRequest{ID: 2})
	if err != nil || resp.ID != 2 {
		t.Fatalf("keep-alive after the deadline: %+v %v", resp, err)
	}
	if got := f.streams.Load(); got != 2 {
		t.Fatalf("upstream streams: %d, want 2 (one abandoned at the deadline)", got)
	}
}

// TestForwarded: a request is taken as relayed by a follower exactly when
// its incoming metadata carries the marker.
func TestForwarded(t *testing.T) {
	plain := metadata.NewIncomingContext(context.Background(), metadata.Pairs("hasleader", "true"))
	marked := metadata.NewIncomingContext(context.Background(), metadata.Pairs("hasleader", "true", forwardedKey, "1"))
	if forwarded(context.Background()) || forwarded(plain) {
		t.Fatal("a request without the marker taken as forwarded")
	}
	if !forwarded(marked) {
		t.Fatal("a request with the marker not taken as forwarded")
	}
}

// TestForwardContext: a forwarded request carries the marker and the
// client's require-leader and API version metadata, and nothing else of
// the client's.
func TestForwardContext(t *testing.T) {
	in := metadata.NewIncomingContext(context.Background(), metadata.Pairs(
		"hasleader", "true", "client-api-version", "3.6", "token", "secret", "user-agent", "x"))
	out, ok := metadata.FromOutgoingContext(forwardContext(in))
	if !ok {
		t.Fatal("no outgoing metadata")
	}
	want := metadata.Pairs(forwardedKey, "1", "hasleader", "true", "client-api-version", "3.6")
	if len(out) != len(want) {
		t.Fatalf("outgoing metadata %v, want %v", out, want)
	}
	for k, v := range want {
		if got := out.Get(k); len(got) != 1 || got[0] != v[0] {
			t.Fatalf("outgoing %s = %v, want %v", k, got, v)
		}
	}
	plain, _ := metadata.FromOutgoingContext(forwardContext(context.Background()))
	if len(plain) != 1 || plain.Get(forwardedKey)[0] != "1" {
		t.Fatalf("outgoing metadata of a request without any: %v", plain)
	}
}
