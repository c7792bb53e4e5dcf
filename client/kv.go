package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/raftkv/raftkv/api"
)

// KV is one key as read.
type KV struct {
	Key   string
	Value []byte
	Rev   uint64 // the key's mod revision: the store revision of its last change
}

// WriteOption modifies a write.
type WriteOption func(*request)

// IfMatch makes the write conditional on the key's revision (compare and set).
func IfMatch(rev uint64) WriteOption {
	return func(r *request) { r.header.Set("If-Match", api.FormatETag(rev)) }
}

// IfNoneMatch makes a put create only: it fails if the key exists.
func IfNoneMatch() WriteOption {
	return func(r *request) { r.header.Set("If-None-Match", "*") }
}

// WithIdempotencyKey replaces the generated Idempotency-Key, so that a
// caller can retry a write across calls (or processes) and have it apply
// once.
func WithIdempotencyKey(key string) WriteOption {
	return func(r *request) { r.header.Set(api.HeaderIdempotencyKey, key) }
}

// ReadOption modifies a read.
type ReadOption func(*readOpts)

type readOpts struct{ consistency string }

// WithConsistency picks the read level: api.Linearizable (default),
// api.Lease or api.Stale.
func WithConsistency(level string) ReadOption {
	return func(o *readOpts) { o.consistency = level }
}

// NewIdempotencyKey returns a random token for Idempotency-Key.
func NewIdempotencyKey() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// keyPath escapes a key for /v1/kv/{key}, keeping its slashes readable.
func keyPath(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return api.PathKV + strings.Join(segs, "/")
}

func (c *Client) write(ctx context.Context, op, key string, value []byte, opts []WriteOption) (uint64, error) {
	if key == "" {
		return 0, &Error{Status: 400, Code: api.CodeBadKey, Message: "empty key"}
	}
	method, query := http.MethodPut, ""
	switch op {
	case api.BatchAppend:
		method, query = http.MethodPost, "?op=append"
	case api.BatchDelete:
		method = http.MethodDelete
	}
	r := request{method: method, path: keyPath(key) + query, body: value, header: http.Header{},
		toLeader: true, idempotent: true, write: true}
	r.header.Set(api.HeaderIdempotencyKey, NewIdempotencyKey())
	for _, o := range opts {
		o(&r)
	}
	cl := &call{ctx: ctx, alone: r, op: api.BatchOp{Op: op, Key: key, Value: value,
		IdempotencyKey: r.header.Get(api.HeaderIdempotencyKey)}}
	if im := r.header.Get("If-Match"); im != "" {
		rev, ok := api.ParseETag(im)
		if !ok {
			return 0, &Error{Status: 400, Code: api.CodeBadRequest, Message: fmt.Sprintf("If-Match %q is not a revision", im)}
		}
		cl.op.IfMatch = rev
	}
	cl.op.IfNoneMatch = r.header.Get("If-None-Match") == "*"
	res := c.writes.run(cl, c.writeAlone)
	return res.rev, res.err
}

// writeAlone sends a write as a single request.
func (c *Client) writeAlone(ctx context.Context, r request) result {
	resp, err := c.do(ctx, r)
	if err != nil {
		return result{err: err}
	}
	var w api.WriteResponse
	if err := json.Unmarshal(resp.body, &w); err != nil {
		return result{err: fmt.Errorf("client: decoding answer of %s %s: %w", r.method, r.path, err)}
	}
	return result{index: w.Index, rev: w.Rev}
}

// Put sets key to value and returns the key's new mod revision (its ETag,
// what IfMatch takes). Write calls return the revision of the write: for
// Delete, the revision the key was deleted at.
func (c *Client) Put(ctx context.Context, key string, value []byte, opts ...WriteOption) (uint64, error) {
	return c.write(ctx, api.BatchPut, key, value, opts)
}

// Append appends suffix to key's value, creating it if absent.
func (c *Client) Append(ctx context.Context, key string, suffix []byte, opts ...WriteOption) (uint64, error) {
	return c.write(ctx, api.BatchAppend, key, suffix, opts)
}

// Delete removes key; IsNotFound(err) if it was absent.
func (c *Client) Delete(ctx context.Context, key string, opts ...WriteOption) (uint64, error) {
	return c.write(ctx, api.BatchDelete, key, nil, opts)
}

func readRequest(path string, opts []ReadOption) request {
	return readRequestAt(path, readLevel(opts))
}

func readLevel(opts []ReadOption) readOpts {
	o := readOpts{consistency: api.Linearizable}
	for _, f := range opts {
		f(&o)
	}
	return o
}

func readRequestAt(path string, o readOpts) request {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return request{method: http.MethodGet, path: path + sep + "consistency=" + url.QueryEscape(o.consistency),
		toLeader: o.consistency != api.Stale, idempotent: true}
}

// Get reads key; IsNotFound(err) if it is absent.
func (c *Client) Get(ctx context.Context, key string, opts ...ReadOption) (*KV, error) {
	if key == "" {
		return nil, &Error{Status: 400, Code: api.CodeBadKey, Message: "empty key"}
	}
	o := readLevel(opts)
	cl := &call{ctx: ctx, alone: readRequestAt(keyPath(key), o), op: api.BatchOp{Op: api.BatchGet, Key: key}}
	var res result
	if b := c.reads[o.consistency]; b != nil {
		res = b.run(cl, c.getAlone)
	} else {
		res = c.getAlone(ctx, cl.alone) // the server names the bad level
	}
	if res.err != nil {
		return nil, res.err
	}
	return &KV{Key: key, Value: res.value, Rev: res.rev}, nil
}

// getAlone sends a get as a single request.
func (c *Client) getAlone(ctx context.Context, r request) result {
	resp, err := c.do(ctx, r)
	if err != nil {
		return result{err: err}
	}
	rev, _ := api.ParseETag(resp.header.Get("ETag"))
	return result{value: resp.body, rev: rev}
}

// List returns up to limit keys with the given prefix in key order (limit
// 0: the server's maximum), and whether more follow.
func (c *Client) List(ctx context.Context, prefix string, limit int, opts ...ReadOption) ([]KV, bool, error) {
	q := url.Values{}
	q.Set("prefix", prefix)
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	resp, err := c.do(ctx, readRequest(api.PathKV+"?"+q.Encode(), opts))
	if err != nil {
		return nil, false, err
	}
	var l api.ListResponse
	if err := json.Unmarshal(resp.body, &l); err != nil {
		return nil, false, fmt.Errorf("client: decoding listing: %w", err)
	}
	out := make([]KV, 0, len(l.Items))
	for _, it := range l.Items {
		k, v, err := it.Decode()
		if err != nil {
			return nil, false, fmt.Errorf("client: decoding listing item: %w", err)
		}
		out = append(out, KV{Key: k, Value: v, Rev: it.Rev})
	}
	return out, l.More, nil
}
