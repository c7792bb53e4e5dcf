package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/api"
)

// Grant creates a lease of ttl seconds (raised to the server's minimum,
// about an election and a half) and returns its id and granted TTL.
func (c *Client) Grant(ctx context.Context, ttl int64) (id, granted int64, err error) {
	return c.GrantID(ctx, 0, ttl)
}

// GrantID is Grant with a chosen id (0: the store chooses).
func (c *Client) GrantID(ctx context.Context, id, ttl int64) (int64, int64, error) {
	body, _ := json.Marshal(api.LeaseGrantRequest{ID: id, TTL: ttl})
	var out api.LeaseResponse
	if err := c.writeJSON(ctx, http.MethodPost, api.PathLease+"grant", body, nil, &out); err != nil {
		return 0, 0, err
	}
	return out.ID, out.TTL, nil
}

// Revoke deletes a lease and, in one revision, every key attached to it.
func (c *Client) Revoke(ctx context.Context, id int64) error {
	body, _ := json.Marshal(api.LeaseRequest{ID: id})
	var out api.LeaseResponse
	return c.writeJSON(ctx, http.MethodPost, api.PathLease+"revoke", body, nil, &out)
}

// KeepAliveOnce renews a lease once and returns its TTL.
func (c *Client) KeepAliveOnce(ctx context.Context, id int64) (int64, error) {
	body, _ := json.Marshal(api.LeaseRequest{ID: id})
	// A renewal is safe to resend: its outcome is the same either way.
	r := request{method: http.MethodPost, path: api.PathLease + "keepalive", body: body,
		header: http.Header{"Content-Type": {"application/json"}}, toLeader: true, idempotent: true}
	resp, err := c.do(ctx, r)
	if err != nil {
		return 0, err
	}
	var out api.LeaseResponse
	if err := json.Unmarshal(resp.body, &out); err != nil {
		return 0, fmt.Errorf("client: decoding keep-alive: %w", err)
	}
	return out.TTL, nil
}

// KeepAlive renews a lease in the background, a third of its TTL after
// each renewal (sooner after a failure), until ctx ends or the lease is
// gone. The channel carries the TTL after each renewal (a slow reader
// misses some; none is needed for the renewals to go on) and is closed
// when renewing stops. The first renewal happens before KeepAlive returns,
// so an unknown lease is an error here.
func (c *Client) KeepAlive(ctx context.Context, id int64) (<-chan int64, error) {
	ttl, err := c.KeepAliveOnce(ctx, id)
	if err != nil {
		return nil, err
	}
	ch := make(chan int64, 1)
	ch <- ttl
	go c.keepAliveLoop(ctx, id, ttl, ch)
	return ch, nil
}

func (c *Client) keepAliveLoop(ctx context.Context, id, ttl int64, ch chan int64) {
	defer close(ch)
	wait := time.Duration(ttl) * time.Second / 3
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		actx, cancel := context.WithTimeout(ctx, max(time.Duration(ttl)*time.Second/3, time.Second))
		got, err := c.KeepAliveOnce(actx, id)
		cancel()
		switch {
		case err == nil:
			ttl, wait = got, time.Duration(got)*time.Second/3
			select {
			case ch <- got:
			default:
			}
		case Code(err) == api.CodeLeaseNotFound:
			return
		default:
			wait = min(500*time.Millisecond, time.Duration(ttl)*time.Second/6)
		}
	}
}

// LeaseStatus is a lease's time to live as the leader sees it.
type LeaseStatus struct {
	ID         int64
	TTL        int64 // remaining seconds
	GrantedTTL int64
	Keys       []string
}

// TimeToLive returns a lease's remaining TTL and, with keys, its keys.
func (c *Client) TimeToLive(ctx context.Context, id int64, keys bool) (*LeaseStatus, error) {
	path := api.PathLease + strconv.FormatInt(id, 10)
	if keys {
		path += "?keys=true"
	}
	resp, err := c.do(ctx, request{method: http.MethodGet, path: path, toLeader: true, idempotent: true})
	if err != nil {
		return nil, err
	}
	var out api.LeaseResponse
	if err := json.Unmarshal(resp.body, &out); err != nil {
		return nil, fmt.Errorf("client: decoding lease: %w", err)
	}
	return &LeaseStatus{ID: out.ID, TTL: out.TTL, GrantedTTL: out.GrantedTTL, Keys: out.Keys}, nil
}

// Leases lists the lease ids.
func (c *Client) Leases(ctx context.Context) ([]int64, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: api.PathLeases, toLeader: true, idempotent: true})
	if err != nil {
		return nil, err
	}
	var out api.LeasesResponse
	if err := json.Unmarshal(resp.body, &out); err != nil {
		return nil, fmt.Errorf("client: decoding leases: %w", err)
	}
	return out.Leases, nil
}

// IsLeaseNotFound reports whether err says the lease does not exist.
func IsLeaseNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == api.CodeLeaseNotFound
}

// PutWithLease sets key to value attached to lease id (If-Match and
// If-None-Match options apply) and returns the key's new revision. Keys
// on a lease are deleted when it expires or is revoked.
func (c *Client) PutWithLease(ctx context.Context, key string, value []byte, id int64, opts ...WriteOption) (uint64, error) {
	if key == "" {
		return 0, &Error{Status: 400, Code: api.CodeBadKey, Message: "empty key"}
	}
	r := request{method: http.MethodPut, path: keyPath(key) + "?lease=" + strconv.FormatInt(id, 10), body: value,
		header: http.Header{}, toLeader: true, idempotent: true, write: true}
	r.header.Set(api.HeaderIdempotencyKey, NewIdempotencyKey())
	for _, o := range opts {
		o(&r)
	}
	resp, err := c.do(ctx, r)
	if err != nil {
		return 0, err
	}
	var w api.WriteResponse
	if err := json.Unmarshal(resp.body, &w); err != nil {
		return 0, fmt.Errorf("client: decoding answer of PUT %s: %w", key, err)
	}
	return w.Rev, nil
}
