package etcdapi

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/raftkv/raftkv/kv"
)

type kvServer struct {
	pb.UnimplementedKVServer
	s *Server
}

var errNestedTxn = status.Error(codes.InvalidArgument, "etcdserver: nested transactions are not supported")

func rangeOptions(r *pb.RangeRequest) kv.RangeOptions {
	return kv.RangeOptions{
		Revision: r.Revision, Limit: r.Limit, CountOnly: r.CountOnly, KeysOnly: r.KeysOnly,
		SortBy: kv.SortTarget(r.SortTarget), Order: kv.SortOrder(r.SortOrder),
		MinMod: r.MinModRevision, MaxMod: r.MaxModRevision, MinCreate: r.MinCreateRevision, MaxCreate: r.MaxCreateRevision,
	}
}

func toKV(x *kv.KeyValue) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(x.Key), Value: x.Value, CreateRevision: x.CreateRevision,
		ModRevision: x.ModRevision, Version: x.Version, Lease: x.Lease}
}

// toKVValue is toKV into a value the caller places.
func toKVValue(x *kv.KeyValue) mvccpb.KeyValue {
	return mvccpb.KeyValue{Key: []byte(x.Key), Value: x.Value, CreateRevision: x.CreateRevision,
		ModRevision: x.ModRevision, Version: x.Version, Lease: x.Lease}
}

func toKVs(xs []kv.KeyValue) []*mvccpb.KeyValue {
	if len(xs) == 0 {
		return nil
	}
	out := make([]*mvccpb.KeyValue, len(xs))
	for i := range xs {
		out[i] = toKV(&xs[i])
	}
	return out
}

func (k *kvServer) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	s := k.s
	if len(r.Key) == 0 {
		return nil, rpctypesEmptyKey
	}
	if err := s.barrier(ctx, r.Serializable); err != nil {
		return nil, err
	}
	res, err := s.cfg.Store.Range(string(r.Key), string(r.RangeEnd), rangeOptions(r))
	if err != nil {
		return nil, kvError(err)
	}
	a := &rangeAnswer{}
	s.fillHeader(&a.h, res.Revision)
	a.resp = pb.RangeResponse{Header: &a.h, Count: res.Count, More: res.More}
	if len(res.KVs) == 1 {
		a.kv = toKVValue(&res.KVs[0])
		a.kvs[0] = &a.kv
		a.resp.Kvs = a.kvs[:]
	} else {
		a.resp.Kvs = toKVs(res.KVs)
	}
	return &a.resp, nil
}

// rangeAnswer is a range's response with its header and, for a range of
// one key (the most common), the key: one allocation.
type rangeAnswer struct {
	resp pb.RangeResponse
	h    pb.ResponseHeader
	kvs  [1]*mvccpb.KeyValue
	kv   mvccpb.KeyValue
}

func rangeResponse(h *pb.ResponseHeader, res *kv.RangeResult) *pb.RangeResponse {
	return &pb.RangeResponse{Header: h, Kvs: toKVs(res.KVs), Count: res.Count, More: res.More}
}

func (k *kvServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	return onLeaderVia(ctx, k.s, true, fwdVia{fwdPut, r}, func(ctx context.Context) (*pb.PutResponse, error) { return k.put(ctx, r) },
		func(c *grpc.ClientConn, ctx context.Context, o grpc.CallOption) (*pb.PutResponse, error) {
			return pb.NewKVClient(c).Put(ctx, r, o)
		})
}

func (k *kvServer) put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	res, err := k.s.propose(ctx, kv.Command{Op: kv.OpTxn, Txn: &kv.Txn{Success: []kv.TxnOp{putOp(r)}}})
	if err != nil {
		return nil, err
	}
	a := &putAnswer{}
	k.s.fillHeader(&a.h, res.Revision)
	out := &a.resp
	out.Header = &a.h
	if p := res.Txn.Results[0].PrevKV; p != nil {
		out.PrevKv = toKV(p)
	}
	return out, nil
}

// putAnswer is a put's response and its header, one allocation.
type putAnswer struct {
	resp pb.PutResponse
	h    pb.ResponseHeader
}

func putOp(r *pb.PutRequest) kv.TxnOp {
	return kv.TxnOp{Kind: kv.OpKindPut, Key: string(r.Key), Value: r.Value, Lease: r.Lease,
		PrevKV: r.PrevKv, IgnoreValue: r.IgnoreValue, IgnoreLease: r.IgnoreLease}
}

func deleteOp(r *pb.DeleteRangeRequest) kv.TxnOp {
	return kv.TxnOp{Kind: kv.OpKindDelete, Key: string(r.Key), End: string(r.RangeEnd), PrevKV: r.PrevKv}
}

func (k *kvServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	return onLeaderVia(ctx, k.s, true, fwdVia{fwdDeleteRange, r}, func(ctx context.Context) (*pb.DeleteRangeResponse, error) { return k.deleteRange(ctx, r) },
		func(c *grpc.ClientConn, ctx context.Context, o grpc.CallOption) (*pb.DeleteRangeResponse, error) {
			return pb.NewKVClient(c).DeleteRange(ctx, r, o)
		})
}

func (k *kvServer) deleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	res, err := k.s.propose(ctx, kv.Command{Op: kv.OpTxn, Txn: &kv.Txn{Success: []kv.TxnOp{deleteOp(r)}}})
	if err != nil {
		return nil, err
	}
	op := &res.Txn.Results[0]
	return &pb.DeleteRangeResponse{Header: k.s.header(res.Revision), Deleted: op.Deleted, PrevKvs: toKVs(op.PrevKVs)}, nil
}

func (k *kvServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	// Converted once, before any forwarding: a request that is malformed
	// fails here, and every local attempt proposes the same transaction.
	t, err := toTxn(r)
	if err != nil {
		return nil, err
	}
	return onLeaderVia(ctx, k.s, true, fwdVia{fwdTxn, r}, func(ctx context.Context) (*pb.TxnResponse, error) { return k.txn(ctx, t) },
		func(c *grpc.ClientConn, ctx context.Context, o grpc.CallOption) (*pb.TxnResponse, error) {
			return pb.NewKVClient(c).Txn(ctx, r, o)
		})
}

func (k *kvServer) txn(ctx context.Context, t *kv.Txn) (*pb.TxnResponse, error) {
	res, err := k.s.propose(ctx, kv.Command{Op: kv.OpTxn, Txn: t})
	if err != nil {
		return nil, err
	}
	h := k.s.header(res.Revision)
	out := &pb.TxnResponse{Header: h, Succeeded: res.Txn.Succeeded, Responses: make([]*pb.ResponseOp, len(res.Txn.Results))}
	for i := range res.Txn.Results {
		if r := res.Txn.Results[i].Range; r != nil && r.Revision < 0 {
			// A retry answered from the exactly-once table whose first
			// attempt read a revision compacted since: an empty range
			// would be a false answer, so the read's loss is reported.
			return nil, rpctypes.ErrGRPCCompacted
		}
		out.Responses[i] = responseOp(h, &res.Txn.Results[i])
	}
	return out, nil
}

func responseOp(h *pb.ResponseHeader, r *kv.OpResult) *pb.ResponseOp {
	switch r.Kind {
	case kv.OpKindRange:
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: rangeResponse(h, r.Range)}}
	case kv.OpKindPut:
		p := &pb.PutResponse{Header: h}
		if r.PrevKV != nil {
			p.PrevKv = toKV(r.PrevKV)
		}
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: p}}
	default:
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &pb.DeleteRangeResponse{
			Header: h, Deleted: r.Deleted, PrevKvs: toKVs(r.PrevKVs)}}}
	}
}

// etcd's compare targets and results, in kv's terms.
var (
	compareTargets = map[pb.Compare_CompareTarget]kv.CompareTarget{pb.Compare_VERSION: kv.CompareVersion,
		pb.Compare_CREATE: kv.CompareCreate, pb.Compare_MOD: kv.CompareMod, pb.Compare_VALUE: kv.CompareValue, pb.Compare_LEASE: kv.CompareLease}
	compareOps = map[pb.Compare_CompareResult]kv.CompareOp{pb.Compare_EQUAL: kv.CompareEqual,
		pb.Compare_NOT_EQUAL: kv.CompareNotEqual, pb.Compare_LESS: kv.CompareLess, pb.Compare_GREATER: kv.CompareGreater}
)

func toTxn(r *pb.TxnRequest) (*kv.Txn, error) {
	t := &kv.Txn{Compares: make([]kv.Compare, len(r.Compare))}
	for i, c := range r.Compare {
		target, ok1 := compareTargets[c.Target]
		op, ok2 := compareOps[c.Result]
		if !ok1 || !ok2 {
			return nil, status.Errorf(codes.InvalidArgument, "etcdserver: compare %d: unknown target or result", i)
		}
		if len(c.Key) == 0 {
			return nil, rpctypesEmptyKey
		}
		kc := kv.Compare{Key: string(c.Key), End: string(c.RangeEnd), Target: target, Op: op}
		switch target {
		case kv.CompareValue:
			kc.Value = c.GetValue()
		case kv.CompareVersion:
			kc.Number = c.GetVersion()
		case kv.CompareCreate:
			kc.Number = c.GetCreateRevision()
		case kv.CompareMod:
			kc.Number = c.GetModRevision()
		case kv.CompareLease:
			kc.Number = c.GetLease()
		}
		t.Compares[i] = kc
	}
	var err error
	if t.Success, err = toOps(r.Success); err != nil {
		return nil, err
	}
	if t.Failure, err = toOps(r.Failure); err != nil {
		return nil, err
	}
	return t, nil
}

func toOps(ops []*pb.RequestOp) ([]kv.TxnOp, error) {
	if len(ops) > kv.MaxTxnOps {
		return nil, kvError(&kv.Error{Code: kv.CodeTooManyOps})
	}
	out := make([]kv.TxnOp, len(ops))
	for i, op := range ops {
		switch x := op.Request.(type) {
		case *pb.RequestOp_RequestRange:
			r := x.RequestRange
			out[i] = kv.TxnOp{Kind: kv.OpKindRange, Key: string(r.Key), End: string(r.RangeEnd), Range: rangeOptions(r)}
		case *pb.RequestOp_RequestPut:
			out[i] = putOp(x.RequestPut)
		case *pb.RequestOp_RequestDeleteRange:
			out[i] = deleteOp(x.RequestDeleteRange)
		case *pb.RequestOp_RequestTxn:
			return nil, errNestedTxn
		default:
			return nil, status.Errorf(codes.InvalidArgument, "etcdserver: operation %d is empty", i)
		}
		if out[i].Key == "" {
			return nil, rpctypesEmptyKey
		}
	}
	return out, nil
}

func (k *kvServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	return onLeader(ctx, k.s, true, func(ctx context.Context) (*pb.CompactionResponse, error) { return k.compact(ctx, r) },
		func(c *grpc.ClientConn, ctx context.Context, o grpc.CallOption) (*pb.CompactionResponse, error) {
			return pb.NewKVClient(c).Compact(ctx, r, o)
		})
}

func (k *kvServer) compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	res, err := k.s.propose(ctx, kv.Command{Op: kv.OpCompact, Rev: r.Revision})
	if err != nil {
		return nil, err
	}
	return &pb.CompactionResponse{Header: k.s.header(res.Revision)}, nil
}

// rangeStreamChunkBytes bounds the keys and values of one RangeStream
// chunk (a single larger pair goes alone).
const rangeStreamChunkBytes = 1 << 20

// RangeStream answers a Range in chunks: the keys in order across the
// chunks, the header, count and more on the last one (etcd v3.7's rule).
func (k *kvServer) RangeStream(r *pb.RangeRequest, stream pb.KV_RangeStreamServer) error {
	resp, err := k.Range(stream.Context(), r)
	if err != nil {
		return err
	}
	kvs := resp.Kvs
	for len(kvs) > 0 {
		n, size := 0, 0
		for n < len(kvs) && (n == 0 || size+proto.Size(kvs[n]) <= rangeStreamChunkBytes) {
			size += proto.Size(kvs[n])
			n++
		}
		if n == len(kvs) {
			break // the last chunk goes with the header
		}
		if err := stream.Send(&pb.RangeStreamResponse{RangeResponse: &pb.RangeResponse{Kvs: kvs[:n]}}); err != nil {
			return err
		}
		kvs = kvs[n:]
	}
	resp.Kvs = kvs
	return stream.Send(&pb.RangeStreamResponse{RangeResponse: resp})
}
