package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/kv"
)

// maxTxnBodyBytes bounds a transaction's JSON body: MaxTxnOps puts of the
// largest value, base64 and quoted, would be far more; a transaction that
// large is refused before it is read.
const maxTxnBodyBytes = 16 << 20

// serveCoord routes the coordination endpoints (ranges, transactions,
// compaction, leases); false means path is none of them.
func (s *Server) serveCoord(w http.ResponseWriter, r *http.Request, path string) bool {
	switch {
	case path == api.PathRange:
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			s.rangeRead(w, r)
		case http.MethodDelete:
			s.deleteRange(w, r)
		default:
			s.methodNotAllowed(w, "GET, DELETE")
		}
	case path == api.PathTxn:
		s.route(w, r, http.MethodPost, s.txn)
	case path == api.PathCompact:
		s.route(w, r, http.MethodPost, s.compact)
	case path == api.PathLeases:
		s.route(w, r, http.MethodGet, s.listLeases)
	case strings.HasPrefix(path, api.PathLease):
		s.serveLease(w, r, path[len(api.PathLease):])
	default:
		return false
	}
	return true
}

func (s *Server) header(rev int64, index uint64) api.Header {
	return api.Header{Revision: rev, Index: index, MemberID: s.cfg.ID}
}

// failKV answers an error made by package kv with its code; a compacted
// revision also names the oldest revision still readable.
func (s *Server) failKV(w http.ResponseWriter, err error) {
	var ce *kv.CompactedError
	var ke *kv.Error
	switch {
	case errors.As(err, &ce):
		s.writeJSON(w, http.StatusGone, api.CompactedBody{Error: ce.Message(), Code: api.CodeCompacted, CompactRevision: ce.Compacted})
	case errors.As(err, &ke):
		s.fail(w, ke.Code, ke.Message)
	default:
		s.fail(w, api.CodeBadRequest, err.Error())
	}
}

// propose validates cmd, proposes it on the leader and returns its applied
// result; false means it answered (a redirect, an error, a refusal).
func (s *Server) propose(w http.ResponseWriter, r *http.Request, cmd kv.Command) (*kv.Result, bool) {
	if err := s.store.Config().Validate(&cmd); err != nil {
		s.failKV(w, err)
		return nil, false
	}
	if !s.isLeader() {
		s.redirect(w, r)
		return nil, false
	}
	if grows(&cmd) && !s.refuseForAlarm(w, kv.OpPut) {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Limits.RequestTimeout)
	defer cancel()
	start := time.Now()
	out, err := s.node.Propose(ctx, kv.EncodeCommand(cmd))
	s.metrics.proposed(start, err)
	if err != nil {
		s.nodeError(w, r, err)
		return nil, false
	}
	res, ok := out.(*kv.Result)
	if !ok {
		s.fail(w, api.CodeInternal, fmt.Sprintf("state machine answered %T", out))
		return nil, false
	}
	if !res.OK() {
		s.fail(w, res.Code, res.Message)
		return nil, false
	}
	return res, true
}

func toAPIKV(kv *kv.KeyValue) *api.KeyValue {
	k, v, enc := api.EncodeKV(kv.Key, kv.Value)
	return &api.KeyValue{Key: k, Value: v, Encoding: enc, CreateRevision: kv.CreateRevision,
		ModRevision: kv.ModRevision, Version: kv.Version, Lease: kv.Lease}
}

func toAPIKVs(kvs []kv.KeyValue) []*api.KeyValue {
	out := make([]*api.KeyValue, len(kvs))
	for i := range kvs {
		out[i] = toAPIKV(&kvs[i])
	}
	return out
}

func toAPIRange(res *kv.RangeResult) *api.RangeResponse {
	return &api.RangeResponse{KVs: toAPIKVs(res.KVs), Count: res.Count, More: res.More}
}

// rangeOf reads a range from a query: key with range_end, from_key=true
// (every key from key on), or prefix (every key that starts with it; an
// empty prefix is every key).
func rangeOf(q neturl.Values) (key, end, msg string) {
	switch {
	case q.Has("prefix"):
		p := q.Get("prefix")
		if p == "" {
			return "\x00", "\x00", ""
		}
		return p, kv.PrefixEnd(p), ""
	case q.Get("key") == "":
		return "", "", "give key (with range_end or from_key=true) or prefix"
	case q.Get("from_key") == "true":
		return q.Get("key"), "\x00", ""
	}
	return q.Get("key"), q.Get("range_end"), ""
}

// queryInt reads a non-negative integer parameter (0 when absent).
func queryInt(q neturl.Values, name string) (int64, string) {
	v := q.Get(name)
	if v == "" {
		return 0, ""
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Sprintf("%s %q: want a non-negative integer", name, v)
	}
	return n, ""
}

var sortTargets = map[string]kv.SortTarget{"": kv.SortByKey, "key": kv.SortByKey, "version": kv.SortByVersion,
	"create": kv.SortByCreate, "mod": kv.SortByMod, "value": kv.SortByValue}

var sortOrders = map[string]kv.SortOrder{"": kv.SortNone, "none": kv.SortNone, "ascend": kv.SortAscend, "descend": kv.SortDescend}

func rangeOptionsOf(q neturl.Values) (kv.RangeOptions, string) {
	var o kv.RangeOptions
	params := []struct {
		name string
		p    *int64
	}{{"revision", &o.Revision}, {"limit", &o.Limit}, {"min_mod_revision", &o.MinMod}, {"max_mod_revision", &o.MaxMod},
		{"min_create_revision", &o.MinCreate}, {"max_create_revision", &o.MaxCreate}}
	for _, p := range params {
		n, msg := queryInt(q, p.name)
		if msg != "" {
			return o, msg
		}
		*p.p = n
	}
	o.CountOnly, o.KeysOnly = q.Get("count_only") == "true", q.Get("keys_only") == "true"
	var ok bool
	if o.SortBy, ok = sortTargets[q.Get("sort_by")]; !ok {
		return o, fmt.Sprintf("sort_by %q: want key, version, create, mod or value", q.Get("sort_by"))
	}
	if o.Order, ok = sortOrders[q.Get("sort_order")]; !ok {
		return o, fmt.Sprintf("sort_order %q: want none, ascend or descend", q.Get("sort_order"))
	}
	return o, ""
}

// rangeRead answers GET /v1/range: a range at the present or a past
// revision, after the read barrier of ?consistency.
func (s *Server) rangeRead(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	key, end, msg := rangeOf(q)
	if msg != "" {
		s.fail(w, api.CodeBadRequest, msg)
		return
	}
	o, msg := rangeOptionsOf(q)
	if msg != "" {
		s.fail(w, api.CodeBadRequest, msg)
		return
	}
	if !s.barrier(w, r) {
		return
	}
	res, err := s.store.Range(key, end, o)
	if err != nil {
		s.failKV(w, err)
		return
	}
	out := toAPIRange(res)
	h := s.header(res.Revision, 0)
	out.Header = &h
	s.writeJSON(w, http.StatusOK, out)
}

// deleteRange answers DELETE /v1/range: one transaction deleting the range.
func (s *Server) deleteRange(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	key, end, msg := rangeOf(q)
	if msg != "" {
		s.fail(w, api.CodeBadRequest, msg)
		return
	}
	op := kv.TxnOp{Kind: kv.OpKindDelete, Key: key, End: end, PrevKV: q.Get("prev_kv") == "true"}
	cmd := kv.Command{Op: kv.OpTxn, Txn: &kv.Txn{Success: []kv.TxnOp{op}}, IdempotencyKey: r.Header.Get(api.HeaderIdempotencyKey)}
	res, ok := s.propose(w, r, cmd)
	if !ok {
		return
	}
	d := res.Txn.Results[0]
	s.writeJSON(w, http.StatusOK, api.DeleteRangeResponse{Header: s.header(res.Revision, uint64(res.Index)),
		Deleted: d.Deleted, PrevKVs: toAPIKVs(d.PrevKVs)})
}

// txn answers POST /v1/txn.
func (s *Server) txn(w http.ResponseWriter, r *http.Request) {
	if !s.isLeader() {
		s.redirect(w, r) // before reading a body the leader will read again
		return
	}
	var req api.TxnRequest
	if !s.decodeJSONLimit(w, r, &req, maxTxnBodyBytes) {
		return
	}
	t, err := txnOf(&req)
	if err != nil {
		s.fail(w, api.CodeBadRequest, err.Error())
		return
	}
	res, ok := s.propose(w, r, kv.Command{Op: kv.OpTxn, Txn: t, IdempotencyKey: r.Header.Get(api.HeaderIdempotencyKey)})
	if !ok {
		return
	}
	for _, x := range res.Txn.Results {
		if x.Range != nil && x.Range.Revision < 0 {
			// A retry answered from the exactly-once table whose first
			// attempt read a revision compacted since: an empty range
			// would be a false answer, so the read's loss is reported.
			_, compacted := s.store.Revision()
			s.writeJSON(w, http.StatusGone, api.CompactedBody{
				Error: fmt.Sprintf("the transaction applied at revision %d, but what it read there has been compacted since",
					res.Revision),
				Code: api.CodeCompacted, CompactRevision: compacted})
			return
		}
	}
	s.writeJSON(w, http.StatusOK, txnResponse(s.header(res.Revision, uint64(res.Index)), res.Txn))
}

func txnResponse(h api.Header, t *kv.TxnResult) api.TxnResponse {
	out := api.TxnResponse{Header: h, Succeeded: t.Succeeded, Results: make([]api.OpResponse, len(t.Results))}
	for i, r := range t.Results {
		o := api.OpResponse{Op: r.Kind.String(), Deleted: r.Deleted}
		if r.Range != nil {
			o.Range = toAPIRange(r.Range)
		}
		if r.PrevKV != nil {
			o.PrevKV = toAPIKV(r.PrevKV)
		}
		if len(r.PrevKVs) > 0 {
			o.PrevKVs = toAPIKVs(r.PrevKVs)
		}
		out.Results[i] = o
	}
	return out
}

// txnOf turns a request into a transaction; errors say which part is
// malformed. Limits and ranges are checked by kv.Config.Validate.
func txnOf(req *api.TxnRequest) (*kv.Txn, error) {
	t := &kv.Txn{}
	for i, c := range req.Compare {
		key, end, value, err := decodeRange(c.Key, c.RangeEnd, c.Value, c.Prefix, req.Encoding)
		if err != nil {
			return nil, fmt.Errorf("compare %d: %w", i, err)
		}
		target, ok := kv.ParseCompareTarget(c.Target)
		if !ok {
			return nil, fmt.Errorf("compare %d: target %q: want value, version, create, mod or lease", i, c.Target)
		}
		op, ok := kv.ParseCompareOp(c.Op)
		if !ok {
			return nil, fmt.Errorf("compare %d: op %q: want =, !=, < or >", i, c.Op)
		}
		if target != kv.CompareValue && c.Value != "" {
			return nil, fmt.Errorf("compare %d: a %s compare takes a number, not a value", i, c.Target)
		}
		if target == kv.CompareValue && c.Number != 0 {
			return nil, fmt.Errorf("compare %d: a value compare takes a value, not a number", i)
		}
		t.Compares = append(t.Compares, kv.Compare{Key: key, End: end, Target: target, Op: op, Value: value, Number: c.Number})
	}
	var err error
	if t.Success, err = opsOf("success", req.Success, req.Encoding); err != nil {
		return nil, err
	}
	if t.Failure, err = opsOf("failure", req.Failure, req.Encoding); err != nil {
		return nil, err
	}
	return t, nil
}

func decodeRange(key, end, value string, prefix bool, encoding string) (k, e string, v []byte, err error) {
	if k, v, err = api.DecodeText(key, value, encoding); err != nil {
		return "", "", nil, err
	}
	if e, _, err = api.DecodeText(end, "", encoding); err != nil {
		return "", "", nil, err
	}
	if prefix {
		if e != "" {
			return "", "", nil, errors.New("prefix and range_end together")
		}
		if k == "" {
			return "\x00", "\x00", v, nil
		}
		e = kv.PrefixEnd(k)
	}
	if len(v) == 0 {
		v = nil
	}
	return k, e, v, nil
}

func opsOf(branch string, in []api.TxnOp, encoding string) ([]kv.TxnOp, error) {
	var ops []kv.TxnOp
	for i, o := range in {
		key, end, value, err := decodeRange(o.Key, o.RangeEnd, o.Value, o.Prefix, encoding)
		if err != nil {
			return nil, fmt.Errorf("%s operation %d: %w", branch, i, err)
		}
		op := kv.TxnOp{Key: key, End: end, Value: value, Lease: o.Lease, PrevKV: o.PrevKV,
			IgnoreValue: o.IgnoreValue, IgnoreLease: o.IgnoreLease}
		switch o.Op {
		case "put":
			op.Kind = kv.OpKindPut
		case "delete":
			op.Kind = kv.OpKindDelete
		case "range":
			op.Kind = kv.OpKindRange
			var ok bool
			if op.Range.SortBy, ok = sortTargets[o.SortBy]; !ok {
				return nil, fmt.Errorf("%s operation %d: sort_by %q", branch, i, o.SortBy)
			}
			if op.Range.Order, ok = sortOrders[o.SortOrder]; !ok {
				return nil, fmt.Errorf("%s operation %d: sort_order %q", branch, i, o.SortOrder)
			}
			op.Range.Revision, op.Range.Limit = o.Revision, o.Limit
			op.Range.CountOnly, op.Range.KeysOnly = o.CountOnly, o.KeysOnly
			op.Range.MinMod, op.Range.MaxMod = o.MinModRevision, o.MaxModRevision
			op.Range.MinCreate, op.Range.MaxCreate = o.MinCreateRevision, o.MaxCreateRevision
		default:
			return nil, fmt.Errorf("%s operation %d: op %q: want put, delete or range", branch, i, o.Op)
		}
		if op.Kind != kv.OpKindPut && (o.Value != "" || o.Lease != 0) {
			return nil, fmt.Errorf("%s operation %d: a %s takes no value or lease", branch, i, o.Op)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// compact answers POST /v1/compact.
func (s *Server) compact(w http.ResponseWriter, r *http.Request) {
	var req api.CompactRequest
	if !s.decodeJSON(w, r, &req) {
		return
	}
	res, ok := s.propose(w, r, kv.Command{Op: kv.OpCompact, Rev: req.Revision})
	if !ok {
		return
	}
	s.writeJSON(w, http.StatusOK, struct {
		Header api.Header `json:"header"`
	}{s.header(res.Revision, uint64(res.Index))})
}

// putWithLease answers PUT /v1/kv/{key}?lease=ID: a put that attaches the
// key to a lease, proposed as a one-put transaction whose compare carries
// If-Match or If-None-Match.
func (s *Server) putWithLease(w http.ResponseWriter, r *http.Request, key string) {
	id, err := strconv.ParseInt(r.URL.Query().Get("lease"), 10, 64)
	if err != nil || id < 0 {
		s.fail(w, api.CodeBadRequest, fmt.Sprintf("lease %q: want a lease id", r.URL.Query().Get("lease")))
		return
	}
	var cond kv.Command
	if msg := parseConditions(r, &cond); msg != "" {
		s.fail(w, api.CodeBadRequest, msg)
		return
	}
	if !s.isLeader() {
		s.redirect(w, r)
		return
	}
	v, ok := s.readValue(w, r)
	if !ok {
		return
	}
	t := &kv.Txn{Success: []kv.TxnOp{{Kind: kv.OpKindPut, Key: key, Value: v, Lease: id}}}
	switch cond.Cond {
	case kv.CondRevMatch:
		t.Compares = []kv.Compare{{Key: key, Target: kv.CompareMod, Op: kv.CompareEqual, Number: cond.Rev}, {Key: key, Target: kv.CompareVersion, Op: kv.CompareGreater}}
	case kv.CondAbsent:
		t.Compares = []kv.Compare{{Key: key, Target: kv.CompareVersion, Op: kv.CompareEqual}}
	}
	res, ok := s.propose(w, r, kv.Command{Op: kv.OpTxn, Txn: t, IdempotencyKey: r.Header.Get(api.HeaderIdempotencyKey)})
	if !ok {
		return
	}
	if !res.Txn.Succeeded {
		s.fail(w, api.CodePreconditionFailed, "the key's revision does not match the condition")
		return
	}
	w.Header().Set("ETag", api.FormatETag(uint64(res.Revision)))
	s.writeJSON(w, http.StatusOK, api.WriteResponse{Index: uint64(res.Index), Rev: uint64(res.Revision), Revision: uint64(res.Revision)})
}

// grows reports whether cmd may add to the state (a transaction with a
// put, a lease grant): while a no_space alarm is raised, those are refused
// before they are proposed; deletes, revokes and compactions, which free
// space or make it freeable, are not.
func grows(cmd *kv.Command) bool {
	switch cmd.Op {
	case kv.OpLeaseGrant:
		return true
	case kv.OpTxn:
		for _, ops := range [][]kv.TxnOp{cmd.Txn.Success, cmd.Txn.Failure} {
			for i := range ops {
				if ops[i].Kind == kv.OpKindPut {
					return true
				}
			}
		}
	}
	return false
}
