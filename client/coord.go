package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/raftkv/raftkv/api"
)

// KeyValue is one version of a key.
type KeyValue struct {
	Key            string
	Value          []byte
	CreateRevision int64
	ModRevision    int64
	Version        int64
	Lease          int64
}

func fromAPIKV(a *api.KeyValue) (KeyValue, error) {
	k, v, err := a.Decode()
	if err != nil {
		return KeyValue{}, fmt.Errorf("client: decoding key-value: %w", err)
	}
	return KeyValue{Key: k, Value: v, CreateRevision: a.CreateRevision, ModRevision: a.ModRevision, Version: a.Version, Lease: a.Lease}, nil
}

func fromAPIKVs(as []*api.KeyValue) ([]KeyValue, error) {
	out := make([]KeyValue, 0, len(as))
	for _, a := range as {
		kv, err := fromAPIKV(a)
		if err != nil {
			return nil, err
		}
		out = append(out, kv)
	}
	return out, nil
}

// RangeResponse is a range read's answer.
type RangeResponse struct {
	// Revision is the store revision the read was served at.
	Revision int64
	KVs      []KeyValue
	Count    int64
	More     bool
}

// OpOption shapes a range, delete or put (as etcd's clientv3 options do).
type OpOption func(*api.TxnOp)

// WithRangeEnd makes the operation cover [key, end).
func WithRangeEnd(end string) OpOption { return func(o *api.TxnOp) { o.RangeEnd = end } }

// WithPrefix makes the operation cover every key starting with key.
func WithPrefix() OpOption { return func(o *api.TxnOp) { o.Prefix = true } }

// WithFromKey makes the operation cover every key from key on.
func WithFromKey() OpOption { return func(o *api.TxnOp) { o.RangeEnd = "\x00" } }

// WithRev reads at a past revision.
func WithRev(rev int64) OpOption { return func(o *api.TxnOp) { o.Revision = rev } }

// WithLimit bounds the keys a range returns.
func WithLimit(n int64) OpOption { return func(o *api.TxnOp) { o.Limit = n } }

// WithCountOnly returns only the count.
func WithCountOnly() OpOption { return func(o *api.TxnOp) { o.CountOnly = true } }

// WithKeysOnly returns keys without values.
func WithKeysOnly() OpOption { return func(o *api.TxnOp) { o.KeysOnly = true } }

// WithSort orders a range by target (key, version, create, mod, value) and
// order (ascend, descend) before its limit applies.
func WithSort(target, order string) OpOption {
	return func(o *api.TxnOp) { o.SortBy, o.SortOrder = target, order }
}

// WithMaxCreateRev leaves out keys created after rev.
func WithMaxCreateRev(rev int64) OpOption { return func(o *api.TxnOp) { o.MaxCreateRevision = rev } }

// WithLease attaches a put's key to a lease.
func WithLease(id int64) OpOption { return func(o *api.TxnOp) { o.Lease = id } }

// WithPrevKV asks a put or delete for the versions it replaced.
func WithPrevKV() OpOption { return func(o *api.TxnOp) { o.PrevKV = true } }

// WithIgnoreValue makes a put keep the key's value (to change its lease).
func WithIgnoreValue() OpOption { return func(o *api.TxnOp) { o.IgnoreValue = true } }

// Op is one operation of a transaction.
type Op struct{ op api.TxnOp }

func newOp(kind, key string, value []byte, opts []OpOption) Op {
	o := api.TxnOp{Op: kind}
	for _, f := range opts {
		f(&o)
	}
	o.Key, o.Value = key, string(value) // raw; Txn encodes them
	return Op{op: o}
}

// OpPut puts value at key.
func OpPut(key string, value []byte, opts ...OpOption) Op { return newOp("put", key, value, opts) }

// OpGet reads key (or a range, with options).
func OpGet(key string, opts ...OpOption) Op { return newOp("range", key, nil, opts) }

// OpDelete deletes key (or a range, with options).
func OpDelete(key string, opts ...OpOption) Op { return newOp("delete", key, nil, opts) }

// Cmp is one compare of a transaction.
type Cmp struct{ c api.Compare }

// Compare targets, as in etcd's clientv3: Compare(ModRevision("k"), "=", 5).
type CmpTarget struct {
	key, target string
	value       []byte
}

func Value(key string) CmpTarget          { return CmpTarget{key: key, target: "value"} }
func Version(key string) CmpTarget        { return CmpTarget{key: key, target: "version"} }
func CreateRevision(key string) CmpTarget { return CmpTarget{key: key, target: "create"} }
func ModRevision(key string) CmpTarget    { return CmpTarget{key: key, target: "mod"} }
func LeaseOf(key string) CmpTarget        { return CmpTarget{key: key, target: "lease"} }

// Compare builds a compare: op is =, !=, < or >; v is a []byte or string
// for Value, an integer otherwise.
func Compare(t CmpTarget, op string, v any) Cmp {
	c := api.Compare{Key: t.key, Target: t.target, Op: op}
	switch x := v.(type) {
	case []byte:
		c.Value = string(x)
	case string:
		c.Value = x
	case int:
		c.Number = int64(x)
	case int64:
		c.Number = x
	case uint64:
		c.Number = int64(x)
	}
	return Cmp{c: c}
}

// WithPrefix makes a compare hold for every key with its key as prefix.
func (c Cmp) WithPrefix() Cmp { c.c.Prefix = true; return c }

// OpResult is one transaction operation's answer.
type OpResult struct {
	Range   *RangeResponse
	PrevKV  *KeyValue
	Deleted int64
	PrevKVs []KeyValue
}

// TxnResponse is a transaction's answer.
type TxnResponse struct {
	Revision  int64
	Index     uint64
	Succeeded bool
	Results   []OpResult
}

// Txn runs a transaction: if every compare holds, the success operations,
// otherwise the failure ones, as one atomic step at one revision. It is
// sent with an Idempotency-Key, so retries after a lost answer apply it
// once.
func (c *Client) Txn(ctx context.Context, cmps []Cmp, success, failure []Op, opts ...WriteOption) (*TxnResponse, error) {
	req := api.TxnRequest{Encoding: api.EncodingBase64}
	for _, cmp := range cmps {
		x := cmp.c
		x.Key, x.RangeEnd, x.Value = b64(x.Key), b64(x.RangeEnd), b64(x.Value)
		req.Compare = append(req.Compare, x)
	}
	req.Success, req.Failure = encodeOps(success), encodeOps(failure)
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var out api.TxnResponse
	if err := c.writeJSON(ctx, http.MethodPost, api.PathTxn, body, opts, &out); err != nil {
		return nil, err
	}
	return fromAPITxn(&out)
}

func encodeOps(ops []Op) []api.TxnOp {
	out := make([]api.TxnOp, 0, len(ops))
	for _, o := range ops {
		x := o.op
		x.Key, x.RangeEnd, x.Value = b64(x.Key), b64(x.RangeEnd), b64(x.Value)
		out = append(out, x)
	}
	return out
}

func fromAPITxn(a *api.TxnResponse) (*TxnResponse, error) {
	out := &TxnResponse{Revision: a.Header.Revision, Index: a.Header.Index, Succeeded: a.Succeeded}
	for _, r := range a.Results {
		o := OpResult{Deleted: r.Deleted}
		if r.Range != nil {
			rr, err := fromAPIRange(r.Range, a.Header.Revision)
			if err != nil {
				return nil, err
			}
			o.Range = rr
		}
		if r.PrevKV != nil {
			kv, err := fromAPIKV(r.PrevKV)
			if err != nil {
				return nil, err
			}
			o.PrevKV = &kv
		}
		kvs, err := fromAPIKVs(r.PrevKVs)
		if err != nil {
			return nil, err
		}
		o.PrevKVs = kvs
		out.Results = append(out.Results, o)
	}
	return out, nil
}

func fromAPIRange(a *api.RangeResponse, rev int64) (*RangeResponse, error) {
	kvs, err := fromAPIKVs(a.KVs)
	if err != nil {
		return nil, err
	}
	if a.Header != nil {
		rev = a.Header.Revision
	}
	return &RangeResponse{Revision: rev, KVs: kvs, Count: a.Count, More: a.More}, nil
}

// writeJSON sends a JSON write to the leader with a fresh Idempotency-Key
// and decodes the answer into out.
func (c *Client) writeJSON(ctx context.Context, method, path string, body []byte, opts []WriteOption, out any) error {
	r := request{method: method, path: path, body: body, header: http.Header{"Content-Type": {"application/json"}},
		toLeader: true, idempotent: true, write: true}
	r.header.Set(api.HeaderIdempotencyKey, NewIdempotencyKey())
	for _, o := range opts {
		o(&r)
	}
	resp, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(resp.body, out); err != nil {
		return fmt.Errorf("client: decoding answer of %s %s: %w", method, path, err)
	}
	return nil
}

// Range reads key, or a range with WithRangeEnd/WithPrefix/WithFromKey, at
// the present or (WithRev) a past revision. Read options pick the
// consistency level.
func (c *Client) Range(ctx context.Context, key string, opts []OpOption, ropts ...ReadOption) (*RangeResponse, error) {
	o := api.TxnOp{}
	for _, f := range opts {
		f(&o)
	}
	q := rangeQuery(key, &o)
	for name, v := range map[string]int64{"revision": o.Revision, "limit": o.Limit,
		"min_mod_revision": o.MinModRevision, "max_mod_revision": o.MaxModRevision,
		"min_create_revision": o.MinCreateRevision, "max_create_revision": o.MaxCreateRevision} {
		if v != 0 {
			q.Set(name, strconv.FormatInt(v, 10))
		}
	}
	if o.CountOnly {
		q.Set("count_only", "true")
	}
	if o.KeysOnly {
		q.Set("keys_only", "true")
	}
	if o.SortBy != "" {
		q.Set("sort_by", o.SortBy)
	}
	if o.SortOrder != "" {
		q.Set("sort_order", o.SortOrder)
	}
	resp, err := c.do(ctx, readRequest(api.PathRange+"?"+q.Encode(), ropts))
	if err != nil {
		return nil, err
	}
	var out api.RangeResponse
	if err := json.Unmarshal(resp.body, &out); err != nil {
		return nil, fmt.Errorf("client: decoding range: %w", err)
	}
	return fromAPIRange(&out, 0)
}

func rangeQuery(key string, o *api.TxnOp) url.Values {
	q := url.Values{}
	switch {
	case o.Prefix:
		q.Set("prefix", key)
	default:
		q.Set("key", key)
		if o.RangeEnd == "\x00" {
			q.Set("from_key", "true")
		} else if o.RangeEnd != "" {
			q.Set("range_end", o.RangeEnd)
		}
	}
	return q
}

// DeleteRange deletes key or a range, in one revision; it returns how many
// keys it deleted and, WithPrevKV, their last versions.
func (c *Client) DeleteRange(ctx context.Context, key string, opts ...OpOption) (int64, []KeyValue, int64, error) {
	o := api.TxnOp{}
	for _, f := range opts {
		f(&o)
	}
	q := rangeQuery(key, &o)
	if o.PrevKV {
		q.Set("prev_kv", "true")
	}
	r := request{method: http.MethodDelete, path: api.PathRange + "?" + q.Encode(), header: http.Header{},
		toLeader: true, idempotent: true, write: true}
	r.header.Set(api.HeaderIdempotencyKey, NewIdempotencyKey())
	resp, err := c.do(ctx, r)
	if err != nil {
		return 0, nil, 0, err
	}
	var out api.DeleteRangeResponse
	if err := json.Unmarshal(resp.body, &out); err != nil {
		return 0, nil, 0, fmt.Errorf("client: decoding delete: %w", err)
	}
	kvs, err := fromAPIKVs(out.PrevKVs)
	return out.Deleted, kvs, out.Header.Revision, err
}

// Compact discards the history before revision rev.
func (c *Client) Compact(ctx context.Context, rev int64) error {
	body, _ := json.Marshal(api.CompactRequest{Revision: rev})
	var out struct{}
	return c.writeJSON(ctx, http.MethodPost, api.PathCompact, body, nil, &out)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
