package etcdapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/raftkv/raftkv/etcdapi"
)

func dialRaw(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// normalize makes an answer comparable with one to the same requests on
// other keys and leases at another time: keys lose their prefix,
// revisions count from base, lease ids are 1, and the header keeps only
// its revision.
func normalize(m proto.Message, prefix string, base int64) proto.Message {
	if m == nil {
		return nil
	}
	m = proto.Clone(m)
	kv := func(x *mvccpb.KeyValue) {
		if x == nil {
			return
		}
		x.Key = []byte(strings.TrimPrefix(string(x.Key), prefix))
		x.CreateRevision -= base
		x.ModRevision -= base
		if x.Lease != 0 {
			x.Lease = 1 // each run grants its own
		}
	}
	hdr := func(h *etcdserverpb.ResponseHeader) {
		if h != nil {
			*h = etcdserverpb.ResponseHeader{Revision: h.Revision - base}
		}
	}
	var walk func(proto.Message)
	walk = func(m proto.Message) {
		switch r := m.(type) {
		case *etcdserverpb.PutResponse:
			hdr(r.Header)
			kv(r.PrevKv)
		case *etcdserverpb.DeleteRangeResponse:
			hdr(r.Header)
			for _, x := range r.PrevKvs {
				kv(x)
			}
		case *etcdserverpb.RangeResponse:
			hdr(r.Header)
			for _, x := range r.Kvs {
				kv(x)
			}
		case *etcdserverpb.TxnResponse:
			hdr(r.Header)
			for _, op := range r.Responses {
				switch x := op.Response.(type) {
				case *etcdserverpb.ResponseOp_ResponsePut:
					walk(x.ResponsePut)
				case *etcdserverpb.ResponseOp_ResponseRange:
					walk(x.ResponseRange)
				case *etcdserverpb.ResponseOp_ResponseDeleteRange:
					walk(x.ResponseDeleteRange)
				}
			}
		case *etcdserverpb.LeaseGrantResponse:
			hdr(r.Header)
			r.ID = 0
		case *etcdserverpb.LeaseRevokeResponse:
			hdr(r.Header)
		}
	}
	walk(m)
	return m
}

// TestEtcdForwardedSameAnswers sends the same writes (puts, deletes,
// transactions, lease grants and revokes, and writes the leader refuses)
// to the leader and, on other keys, through a follower: the follower
// forwards every one on its stream and answers each as the leader does.
func TestEtcdForwardedSameAnswers(t *testing.T) {
	c := newECluster(t)
	ctx := ctxT(t)
	l, f := c.leader(), c.follower()
	type step struct {
		name string
		call func(kv etcdserverpb.KVClient, lc etcdserverpb.LeaseClient, p string, lease int64) (proto.Message, error)
	}
	b := func(p, k string) []byte { return []byte(p + k) }
	steps := []step{
		{"put", func(kv etcdserverpb.KVClient, _ etcdserverpb.LeaseClient, p string, _ int64) (proto.Message, error) {
			return kv.Put(ctx, &etcdserverpb.PutRequest{Key: b(p, "a"), Value: []byte("1")})
		}},
		{"put prev_kv", func(kv etcdserverpb.KVClient, _ etcdserverpb.LeaseClient, p string, _ int64) (proto.Message, error) {
			return kv.Put(ctx, &etcdserverpb.PutRequest{Key: b(p, "a"), Value: []byte("2"), PrevKv: true})
		}},
		{"lease grant", func(_ etcdserverpb.KVClient, lc etcdserverpb.LeaseClient, _ string, lease int64) (proto.Message, error) {
			return lc.LeaseGrant(ctx, &etcdserverpb.LeaseGrantRequest{ID: lease, TTL: 60})
		}},
		{"lease grant again", func(_ etcdserverpb.KVClient, lc etcdserverpb.LeaseClient, _ string, lease int64) (proto.Message, error) {
			return lc.LeaseGrant(ctx, &etcdserverpb.LeaseGrantRequest{ID: lease, TTL: 60})
		}},
		{"put with lease", func(kv etcdserverpb.KVClient, _ etcdserverpb.LeaseClient, p string, lease int64) (proto.Message, error) {
			return kv.Put(ctx, &etcdserverpb.PutRequest{Key: b(p, "b"), Value: []byte("1"), Lease: lease})
		}},
		{"txn success", func(kv etcdserverpb.KVClient, _ etcdserverpb.LeaseClient, p string, _ int64) (proto.Message, error) {
			return kv.Txn(ctx, &etcdserverpb.TxnRequest{
				Compare: []*etcdserverpb.Compare{{Key: b(p, "a"), Target: etcdserverpb.Compare_VALUE, Result: etcdserverpb.Compare_EQUAL,
					TargetUnion: &etcdserverpb.Compare_Value{Value: []byte("2")}}},
				Success: []*etcdserverpb.RequestOp{
					{Request: &etcdserverpb.RequestOp_RequestRange{RequestRange: &etcdserverpb.RangeRequest{Key: b(p, "a"), RangeEnd: b(p, "z")}}},
					{Request: &etcdserverpb.RequestOp_RequestPut{RequestPut: &etcdserverpb.PutRequest{Key: b(p, "c"), Value: []byte("3"), PrevKv: true}}},
					{Request: &etcdserverpb.RequestOp_RequestDeleteRange{RequestDeleteRange: &etcdserverpb.DeleteRangeRequest{Key: b(p, "b"), PrevKv: true}}},
				},
			})
		}},
		{"txn failure", func(kv etcdserverpb.KVClient, _ etcdserverpb.LeaseClient, p string, _ int64) (proto.Message, error) {
			return kv.Txn(ctx, &etcdserverpb.TxnRequest{
				Compare: []*etcdserverpb.Compare{{Key: b(p, "a"), Target: etcdserverpb.Compare_VERSION, Result: etcdserverpb.Compare_EQUAL,
					TargetUnion: &etcdserverpb.Compare_Version{Version: 9}}},
				Failure: []*etcdserverpb.RequestOp{
					{Request: &etcdserverpb.RequestOp_RequestRange{RequestRange: &etcdserverpb.RangeRequest{Key: b(p, "a"), RangeEnd: b(p, "z"), CountOnly: true}}}},
			})
		}},
		{"txn duplicate key", func(kv etcdserverpb.KVClient, _ etcdserverpb.LeaseClient, p string, _ int64) (proto.Message, error) {
			put := &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestPut{RequestPut: &etcdserverpb.PutRequest{Key: b(p, "d"), Value: []byte("x")}}}
			return kv.Txn(ctx, &etcdserverpb.TxnRequest{Success: []*etcdserverpb.RequestOp{put, put}})
		}},
		{"put ignore_value on a missing key", func(kv etcdserverpb.KVClient, _ etcdserverpb.LeaseClient, p string, _ int64) (proto.Message, error) {
			return kv.Put(ctx, &etcdserverpb.PutRequest{Key: b(p, "missing"), IgnoreValue: true})
		}},
		{"delete range prev_kv", func(kv etcdserverpb.KVClient, _ etcdserverpb.LeaseClient, p string, _ int64) (proto.Message, error) {
			return kv.DeleteRange(ctx, &etcdserverpb.DeleteRangeRequest{Key: b(p, "a"), RangeEnd: b(p, "z"), PrevKv: true})
		}},
		{"lease revoke", func(_ etcdserverpb.KVClient, lc etcdserverpb.LeaseClient, _ string, lease int64) (proto.Message, error) {
			return lc.LeaseRevoke(ctx, &etcdserverpb.LeaseRevokeRequest{ID: lease})
		}},
		{"lease revoke unknown", func(_ etcdserverpb.KVClient, lc etcdserverpb.LeaseClient, _ string, lease int64) (proto.Message, error) {
			return lc.LeaseRevoke(ctx, &etcdserverpb.LeaseRevokeRequest{ID: lease})
		}},
	}
	type answer struct {
		resp proto.Message
		err  error
	}
	run := func(member int, prefix string, lease int64) []answer {
		conn := dialRaw(t, c.addrs[member])
		kv, lc := etcdserverpb.NewKVClient(conn), etcdserverpb.NewLeaseClient(conn)
		r, err := kv.Range(ctx, &etcdserverpb.RangeRequest{Key: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		base := r.Header.Revision
		var out []answer
		for _, s := range steps {
			resp, err := s.call(kv, lc, prefix, lease)
			if err != nil {
				resp = nil
			}
			out = append(out, answer{normalize(resp, prefix, base), err})
		}
		return out
	}
	sent, _, _ := etcdapi.ForwardStats(c.etcds[f])
	direct := run(l, "direct/", 1000)
	via := run(f, "via/", 2000)
	for i, s := range steps {
		d, v := direct[i], via[i]
		if status.Code(d.err) != status.Code(v.err) || status.Convert(d.err).Message() != status.Convert(v.err).Message() {
			t.Errorf("%s: the leader answered error %v, the follower %v", s.name, d.err, v.err)
			continue
		}
		if !proto.Equal(d.resp, v.resp) {
			t.Errorf("%s: the leader answered\n%v\nthe follower\n%v", s.name, d.resp, v.resp)
		}
	}
	if direct[0].err != nil || direct[1].resp.(*etcdserverpb.PutResponse).PrevKv == nil || direct[3].err == nil {
		t.Fatalf("the leader's answers are not those the steps were written for: %v", direct)
	}
	if now, _, _ := etcdapi.ForwardStats(c.etcds[f]); now-sent < uint64(len(steps)) {
		t.Errorf("%d of %d writes through the follower went on its stream", now-sent, len(steps))
	}
}

// checkOnce checks that every key under prefix was written once (version
// 1) and that the writes made exactly n revisions since base.
func checkOnce(t *testing.T, cli *clientv3.Client, prefix string, base int64, n int) {
	t.Helper()
	g, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range g.Kvs {
		if kv.Version != 1 {
			t.Errorf("%s written %d times", kv.Key, kv.Version)
		}
	}
	if len(g.Kvs) != n || g.Header.Revision-base != int64(n) {
		t.Errorf("%d keys and %d revisions for %d writes", len(g.Kvs), g.Header.Revision-base, n)
	}
}

// TestEtcdForwardedConcurrent sends hundreds of writes at once through a
// follower: each is answered, applied once, and they share frames.
func TestEtcdForwardedConcurrent(t *testing.T) {
	c := newECluster(t)
	f := c.follower()
	cli := c.client(c.addrs[f])
	ctx := ctxT(t)
	start, err := cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	sent0, frames0, _ := etcdapi.ForwardStats(c.etcds[f])
	const n = 400
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := fmt.Sprintf("c/%03d", i)
			r, err := cli.Put(ctx, k, k)
			if err != nil {
				t.Errorf("put %s: %v", k, err)
				return
			}
			if r.Header.MemberId != uint64(f+1) || r.Header.Revision <= start.Header.Revision {
				t.Errorf("put %s answered with header %v", k, r.Header)
			}
		}()
	}
	wg.Wait()
	checkOnce(t, cli, "c/", start.Header.Revision, n)
	sent, frames, _ := etcdapi.ForwardStats(c.etcds[f])
	if sent-sent0 != n || frames-frames0 >= n {
		t.Errorf("%d writes in %d frames, want %d in fewer", sent-sent0, frames-frames0, n)
	}
	t.Logf("%d writes in %d frames", sent-sent0, frames-frames0)
}

// TestEtcdForwardStreamBreaks breaks the follower's stream again and again
// while writes are in flight on it: a write whose answer was lost is sent
// again with its idempotency key, and every write applies exactly once.
func TestEtcdForwardStreamBreaks(t *testing.T) {
	c := newECluster(t)
	f := c.follower()
	cli := c.client(c.addrs[f])
	ctx := ctxT(t)
	start, err := cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	_, _, unknown0 := etcdapi.ForwardStats(c.etcds[f])
	total := 0
	for wave := 0; wave < 20; wave++ {
		const n = 100
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k := fmt.Sprintf("b/%02d/%03d", wave, i)
				if _, err := cli.Put(ctx, k, k); err != nil {
					t.Errorf("put %s: %v", k, err)
				}
			}()
		}
		// One break a wave, at a different moment each time, so that
		// writes are caught at every stage and their retries get through.
		time.Sleep(time.Duration(wave%5+1) * 3 * time.Millisecond)
		etcdapi.BreakForwardStream(c.etcds[f])
		wg.Wait()
		total += n
		if _, _, u := etcdapi.ForwardStats(c.etcds[f]); u-unknown0 >= 20 && wave >= 4 {
			break
		}
	}
	_, _, unknown := etcdapi.ForwardStats(c.etcds[f])
	if unknown == unknown0 {
		t.Fatal("no write was in flight when its stream broke")
	}
	checkOnce(t, cli, "b/", start.Header.Revision, total)
	t.Logf("%d writes, %d sent again after their stream broke", total, unknown-unknown0)
}

// TestEtcdForwardLeaderKilled kills the leader while hundreds of writes
// are in flight through a follower: each either succeeds or is reported
// as an unknown outcome, and none applies twice.
func TestEtcdForwardLeaderKilled(t *testing.T) {
	c := newECluster(t)
	l, f := c.leader(), c.follower()
	cli := c.client(c.addrs[f])
	ctx := ctxT(t)
	start, err := cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]bool{}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 200 * time.Microsecond)
			k := fmt.Sprintf("k/%03d", i)
			_, err := cli.Put(ctx, k, k)
			switch {
			case err == nil:
				mu.Lock()
				acked[k] = true
				mu.Unlock()
			case !unknownOutcome(err):
				t.Errorf("put %s: %v", k, err)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	c.etcds[l].Stop()
	c.servers[l].Close()
	wg.Wait()
	g, err := cli.Get(ctx, "k/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, kv := range g.Kvs {
		seen[string(kv.Key)] = true
		if kv.Version != 1 {
			t.Errorf("%s written %d times", kv.Key, kv.Version)
		}
	}
	for k := range acked {
		if !seen[k] {
			t.Errorf("acknowledged %s lost", k)
		}
	}
	if g.Header.Revision-start.Header.Revision != int64(len(g.Kvs)) {
		t.Errorf("%d revisions for %d keys", g.Header.Revision-start.Header.Revision, len(g.Kvs))
	}
	if len(acked) < n/2 {
		t.Errorf("only %d of %d writes acknowledged", len(acked), n)
	}
	t.Logf("%d of %d acknowledged, %d applied", len(acked), n, len(g.Kvs))
}

// TestEtcdForwardStreamRefusals opens the stream by hand: the leader
// refuses one that names no member of its cluster, and one that sends a
// frame it cannot read, with a clear error, and keeps serving; a write of
// a kind it does not know gets its own error, the stream going on.
func TestEtcdForwardStreamRefusals(t *testing.T) {
	c := newECluster(t)
	ctx := ctxT(t)
	l, f := c.leader(), c.follower()
	cli := c.client(c.addrs[l])
	r, err := cli.Put(ctx, "x", "1")
	if err != nil {
		t.Fatal(err)
	}
	cluster := strconv.FormatUint(r.Header.ClusterId, 10)
	conn := dialRaw(t, c.addrs[l])
	open := func(md metadata.MD) grpc.ClientStream {
		t.Helper()
		cs, err := conn.NewStream(metadata.NewOutgoingContext(ctx, md), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
			etcdapi.ForwardMethod, grpc.ForceCodecV2(etcdapi.ForwardCodec))
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	member := func(id int) metadata.MD {
		return metadata.Pairs(etcdapi.ForwardedKey, "1", etcdapi.ClusterIDKey, cluster, etcdapi.MemberIDKey, strconv.Itoa(id))
	}
	put := etcdapi.AppendForwardWrite([]byte{1}, 1, etcdapi.ForwardPutKind, "refusal-key", &etcdserverpb.PutRequest{Key: []byte("r"), Value: []byte("v")})
	refused := func(name string, md metadata.MD, frame []byte, code codes.Code) {
		t.Helper()
		cs := open(md)
		cs.SendMsg(etcdapi.ForwardFrame(frame))
		err := cs.RecvMsg(etcdapi.NewForwardFrame())
		if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), "forwarded writes") {
			t.Errorf("%s: %v, want %v", name, err, code)
		}
	}
	refused("no member named", metadata.Pairs(etcdapi.ForwardedKey, "1"), put, codes.PermissionDenied)
	refused("another cluster", metadata.Pairs(etcdapi.ForwardedKey, "1", etcdapi.ClusterIDKey, "12345", etcdapi.MemberIDKey, strconv.Itoa(f+1)), put, codes.PermissionDenied)
	refused("not a member", member(99), put, codes.PermissionDenied)
	refused("the leader itself", member(l+1), put, codes.PermissionDenied)
	refused("frame version unknown", member(f+1), []byte{9, 1, 2, 3}, codes.InvalidArgument)
	refused("item kind unknown", member(f+1), []byte{1, 7, 1}, codes.InvalidArgument)
	refused("write cut short", member(f+1), put[:len(put)-3], codes.InvalidArgument)
	refused("empty frame", member(f+1), nil, codes.InvalidArgument)

	// A write of an unknown kind is refused alone; a put on the same
	// stream is answered with the index it applied at.
	cs := open(member(f + 1))
	frame := etcdapi.AppendForwardWrite([]byte{1}, 7, 99, "k1", &etcdserverpb.PutRequest{Key: []byte("r")})
	frame = etcdapi.AppendForwardWrite(frame, 8, etcdapi.ForwardPutKind, "k2", &etcdserverpb.PutRequest{Key: []byte("r"), Value: []byte("v")})
	if err := cs.SendMsg(etcdapi.ForwardFrame(frame)); err != nil {
		t.Fatal(err)
	}
	got := map[uint64]etcdapi.ForwardAnswer{}
	for len(got) < 2 {
		m := etcdapi.NewForwardFrame()
		if err := cs.RecvMsg(m); err != nil {
			t.Fatal(err)
		}
		as, err := etcdapi.ParseForwardAnswers(etcdapi.FrameBytes(m))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			got[a.ID] = a
		}
	}
	if a := got[7]; a.Code != codes.Unimplemented || !strings.Contains(a.Message, "unknown kind") {
		t.Errorf("a write of unknown kind answered %+v", a)
	}
	var pr etcdserverpb.PutResponse
	if a := got[8]; a.Code != codes.OK || a.Index == 0 || proto.Unmarshal(a.Body, &pr) != nil || pr.Header.Revision <= r.Header.Revision {
		t.Errorf("a put answered %+v (%v)", a, &pr)
	}
	if _, err := cli.Put(ctx, "x", "2"); err != nil {
		t.Fatalf("the leader after refusing streams: %v", err)
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := cs.RecvMsg(etcdapi.NewForwardFrame()); !errors.Is(err, io.EOF) {
		t.Errorf("the stream after the follower closed its side: %v, want EOF", err)
	}
}
