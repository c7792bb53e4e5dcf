package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/api"
)

// Config configures a Client. Zero fields take the defaults.
type Config struct {
	// Endpoints are members' client addresses, "host:port" or URLs.
	Endpoints []string
	// TLS, if set, is used for https endpoints (and makes bare host:port
	// endpoints https).
	TLS *tls.Config
	// RequestTimeout bounds a call whose context has no deadline. Default 15s.
	RequestTimeout time.Duration
	// AttemptTimeout bounds one HTTP attempt, so that a hung member is
	// left for another. Default 10s.
	AttemptTimeout time.Duration
	// BackoffMin and BackoffMax bound the pause between rounds of retries.
	// Defaults 10ms and 500ms.
	BackoffMin, BackoffMax time.Duration
	// LeaderlessBackoffMax bounds the pause instead of BackoffMax while
	// the cluster has no leader (an answer no_leader or shutting_down, or
	// an endpoint refusing connections): an election takes a few hundred
	// milliseconds (about 0.3 s after a leader's process dies), and a
	// longer pause would delay the first write after it by up to
	// BackoffMax. Default 50ms; never above BackoffMax.
	LeaderlessBackoffMax time.Duration
	// MaxConnsPerHost bounds idle connections kept per member. Default 256.
	MaxConnsPerHost int
	// Transport replaces the HTTP transport (tests); TLS and
	// MaxConnsPerHost are then ignored.
	Transport http.RoundTripper
	// MaxBatchOps bounds the calls (Put, Append, Delete, Get) that one
	// POST /v1/batch carries. Calls are batched only when they queue up
	// behind MaxBatchInflight requests of their kind already in flight; a
	// lone call goes out as a plain request. 1 turns batching off.
	// Default DefaultMaxBatchOps.
	MaxBatchOps int
	// MaxBatchInflight bounds the requests of one kind (writes, or reads
	// at one consistency level) in flight before calls queue up for a
	// batch. Default DefaultMaxBatchInflight.
	MaxBatchInflight int
}

// maxRedirects bounds the 307s one attempt follows.
const maxRedirects = 5

// Client talks to a raftkv cluster. See the package doc.
type Client struct {
	cfg       Config
	hc        *http.Client
	endpoints []string // base URLs, "http://host:port"

	mu      sync.Mutex
	leader  string            // base URL of the leader last learned, "" if none
	addrs   map[uint64]string // member id -> base URL, from /v1/cluster
	next    int               // round-robin start for reads that any member serves
	refresh time.Time         // last /v1/cluster fetch

	writes *batcher
	reads  map[string]*batcher // by consistency level

	streamState // watch.go
}

// New returns a client for the given endpoints.
func New(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("client: no endpoints")
	}
	def(&cfg.RequestTimeout, 15*time.Second)
	def(&cfg.AttemptTimeout, 10*time.Second)
	def(&cfg.BackoffMin, 10*time.Millisecond)
	def(&cfg.BackoffMax, 500*time.Millisecond)
	def(&cfg.LeaderlessBackoffMax, 50*time.Millisecond)
	cfg.LeaderlessBackoffMax = min(cfg.LeaderlessBackoffMax, cfg.BackoffMax)
	if cfg.MaxConnsPerHost <= 0 {
		cfg.MaxConnsPerHost = 256
	}
	if cfg.MaxBatchOps <= 0 {
		cfg.MaxBatchOps = DefaultMaxBatchOps
	}
	if cfg.MaxBatchInflight <= 0 {
		cfg.MaxBatchInflight = DefaultMaxBatchInflight
	}
	c := &Client{cfg: cfg, addrs: map[uint64]string{}}
	c.writes = &batcher{c: c, write: true}
	c.reads = map[string]*batcher{}
	for _, level := range []string{api.Linearizable, api.Lease, api.Stale} {
		c.reads[level] = &batcher{c: c, consistency: level}
	}
	for _, e := range cfg.Endpoints {
		base, err := c.baseURL(e)
		if err != nil {
			return nil, err
		}
		c.endpoints = append(c.endpoints, base)
	}
	rt := cfg.Transport
	if rt == nil {
		rt = newConnTransport(cfg.TLS, cfg.MaxConnsPerHost)
	}
	c.hc = &http.Client{
		Transport: rt,
		// Redirects are followed by hand, to learn the leader from them.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

func def(v *time.Duration, d time.Duration) {
	if *v <= 0 {
		*v = d
	}
}

func (c *Client) baseURL(e string) (string, error) {
	e = strings.TrimSuffix(strings.TrimSpace(e), "/")
	if !strings.Contains(e, "://") {
		scheme := "http"
		if c.cfg.TLS != nil {
			scheme = "https"
		}
		e = scheme + "://" + e
	}
	u, err := url.Parse(e)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("client: endpoint %q: not host:port or a URL", e)
	}
	return u.Scheme + "://" + u.Host, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Leader returns the base URL of the leader last learned, "" if none.
func (c *Client) Leader() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

// request is one API call as the retry loop sees it.
type request struct {
	method string
	path   string // escaped path and query
	body   []byte
	header http.Header
	// toLeader: try the leader first (writes, linearizable reads, admin).
	toLeader bool
	// idempotent: safe to resend whatever happened to an earlier attempt
	// (reads, and writes carrying an Idempotency-Key).
	idempotent bool
	// write: a 504 or a lost answer leaves its outcome open.
	write bool
	// maybeApplied: an earlier send (in a batch) may have applied it.
	maybeApplied bool
}

// response is a complete answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do runs r until a definite answer, retrying on other endpoints while
// nothing says it failed for good.
func (c *Client) do(ctx context.Context, r request) (*response, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.RequestTimeout)
		defer cancel()
	}
	var lastErr error
	maybeApplied := r.maybeApplied
	backoff := c.cfg.BackoffMin
	for round := 0; ; round++ {
		for i, base := range c.order(r.toLeader) {
			resp, err := c.attempt(ctx, base, r)
			if err == nil {
				lastErr = nil
				done, rerr := c.judge(r, resp, &maybeApplied)
				if done {
					return resp, rerr
				}
				lastErr = rerr
				if Code(rerr) == api.CodeShuttingDown {
					c.forget(base)
				}
			} else {
				lastErr = err
				if r.write && !isDialError(err) {
					maybeApplied = true
				}
				if !r.idempotent && !isDialError(err) {
					// It may have arrived; resending could apply it twice.
					return nil, fmt.Errorf("client: %s %s: no answer, the change may or may not have applied: %w", r.method, r.path, err)
				}
			}
			if ctx.Err() != nil {
				return nil, c.giveUp(r, lastErr, maybeApplied)
			}
			// A busy or leaderless answer from the leader: pause before
			// asking the others, they will say the same.
			if i == 0 && r.toLeader && isRetryable(lastErr) {
				break
			}
		}
		limit := c.cfg.BackoffMax
		if leaderless(lastErr) {
			limit = c.cfg.LeaderlessBackoffMax
		}
		backoff = min(backoff, limit)
		select {
		case <-ctx.Done():
			return nil, c.giveUp(r, lastErr, maybeApplied)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, limit)
	}
}

// leaderless reports whether err says the cluster is between leaders: the
// next round may well succeed within an election's time.
func leaderless(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Code == api.CodeNoLeader || e.Code == api.CodeShuttingDown
	}
	return isDialError(err)
}

// judge decides whether resp ends the call. done=false means retry, with
// err as the reason.
func (c *Client) judge(r request, resp *response, maybeApplied *bool) (done bool, err error) {
	if resp.status < 300 {
		return true, nil
	}
	e := apiError(resp)
	switch e.Code {
	case api.CodeNoLeader, api.CodeShuttingDown, api.CodeBusy:
		return false, e // not applied: safe to resend anything
	case api.CodeUnknownOutcome:
		if r.write {
			*maybeApplied = true
		}
		if r.idempotent {
			return false, e
		}
	}
	return true, e
}

func isRetryable(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.Code == api.CodeNoLeader || e.Code == api.CodeBusy || e.Code == api.CodeUnknownOutcome)
}

func (c *Client) giveUp(r request, err error, maybeApplied bool) error {
	if err == nil {
		err = context.DeadlineExceeded
	}
	if maybeApplied {
		return &Error{Code: api.CodeUnknownOutcome,
			Message: fmt.Sprintf("%s %s: no answer before giving up; the write may or may not have applied", r.method, r.path),
			Err:     err}
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return fmt.Errorf("client: %s %s: %w: %w", r.method, r.path, ErrNoEndpoint, err)
}

// attempt sends r to base, following redirects; it returns the first
// answer that is not a redirect.
func (c *Client) attempt(ctx context.Context, base string, r request) (*response, error) {
	target := base + r.path
	for hop := 0; ; hop++ {
		resp, err := c.send(ctx, target, r)
		if err != nil {
			c.forget(target)
			return nil, err
		}
		c.learn(target, resp)
		if resp.status != http.StatusTemporaryRedirect || hop == maxRedirects {
			return resp, nil
		}
		loc, err := url.Parse(resp.header.Get("Location"))
		if err != nil || loc.Host == "" {
			return nil, fmt.Errorf("client: redirect to %q: %w", resp.header.Get("Location"), err)
		}
		c.setLeader(loc.Scheme + "://" + loc.Host)
		target = loc.String()
	}
}

func (c *Client) send(ctx context.Context, target string, r request) (*response, error) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, r.method, target, bytes.NewReader(r.body))
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("client: reading answer of %s: %w", target, err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

func apiError(resp *response) *Error {
	var b api.ErrorBody
	if err := json.Unmarshal(resp.body, &b); err != nil || b.Code == "" {
		return &Error{Status: resp.status, Code: codeOfStatus(resp.status), Message: strings.TrimSpace(string(resp.body))}
	}
	return &Error{Status: resp.status, Code: b.Code, Message: b.Error}
}

func codeOfStatus(status int) string {
	switch status {
	case http.StatusNotFound:
		return api.CodeNotFound
	case http.StatusServiceUnavailable:
		return api.CodeNoLeader
	case http.StatusTooManyRequests:
		return api.CodeBusy
	case http.StatusGatewayTimeout:
		return api.CodeUnknownOutcome
	}
	return api.CodeInternal
}

// isDialError reports an error that proves the request never left: the
// connection was not made.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// order lists the endpoints to try this round: the leader first when
// wanted, then the others, rotating so that load and retries spread.
func (c *Client) order(toLeader bool) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.endpoints)+1)
	if toLeader && c.leader != "" {
		out = append(out, c.leader)
	}
	n := len(c.endpoints)
	start := c.next % n
	c.next++
	for i := 0; i < n; i++ {
		if e := c.endpoints[(start+i)%n]; e != c.leader || !toLeader {
			out = append(out, e)
		}
	}
	return out
}

func (c *Client) setLeader(base string) {
	c.mu.Lock()
	c.leader = base
	c.mu.Unlock()
}

// forget drops the cached leader if it is the endpoint that just failed.
func (c *Client) forget(target string) {
	u, err := url.Parse(target)
	if err != nil {
		return
	}
	c.mu.Lock()
	if c.leader == u.Scheme+"://"+u.Host {
		c.leader = ""
	}
	c.mu.Unlock()
}

// learn updates the leader cache from X-Raft-Leader. An id with no known
// address triggers a refresh of the member table (at most twice a second).
func (c *Client) learn(target string, resp *response) {
	id, err := strconv.ParseUint(resp.header.Get(api.HeaderLeader), 10, 64)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if id == 0 {
		c.leader = ""
		return
	}
	if addr, ok := c.addrs[id]; ok {
		c.leader = addr
		return
	}
	if time.Since(c.refresh) < 500*time.Millisecond {
		return
	}
	c.refresh = time.Now()
	u, err := url.Parse(target)
	if err != nil {
		return
	}
	go c.refreshMembers(u.Scheme + "://" + u.Host)
}

// refreshMembers fetches /v1/cluster from base to map member ids to
// client addresses.
func (c *Client) refreshMembers(base string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := c.send(ctx, base+api.PathCluster, request{method: http.MethodGet})
	if err != nil || resp.status != http.StatusOK {
		return
	}
	var cl api.Cluster
	if json.Unmarshal(resp.body, &cl) != nil {
		return
	}
	c.noteCluster(base, &cl)
}

func (c *Client) noteCluster(base string, cl *api.Cluster) {
	u, _ := url.Parse(base)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range cl.Members {
		if m.ClientAddr != "" {
			c.addrs[m.ID] = u.Scheme + "://" + m.ClientAddr
		}
	}
	if addr, ok := c.addrs[cl.Leader]; ok {
		c.leader = addr
	}
}
