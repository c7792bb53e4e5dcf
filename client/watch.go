package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/raftkv/raftkv/api"
)

// Event is one change seen by a watch.
type Event struct {
	// Type is "put" or "delete".
	Type string
	// KV is the key after the change; for a delete, the key and the
	// revision of the delete.
	KV KeyValue
	// PrevKV is the version the change replaced (WithWatchPrevKV).
	PrevKV *KeyValue
}

// WatchResponse is one message of a watch: events of one or more
// revisions in order, or a progress notification (nothing changed in the
// range up to Revision), or the end of the watch (Canceled, or Err).
type WatchResponse struct {
	// Revision: every change up to it has been delivered.
	Revision int64
	Events   []Event
	Progress bool
	// Canceled ends the watch: the start revision (or the revision to
	// resume from) is compacted, and CompactRevision is the oldest still
	// held; or the request is malformed (Err says so).
	Canceled        bool
	CompactRevision int64
	Err             error
}

// WatchOption shapes a watch.
type WatchOption func(*watchOpts)

type watchOpts struct {
	end      string
	prefix   bool
	start    int64
	prevKV   bool
	progress time.Duration
}

// WithWatchPrefix watches every key that starts with key.
func WithWatchPrefix() WatchOption { return func(o *watchOpts) { o.prefix = true } }

// WithWatchRangeEnd watches [key, end); "\x00" is every key from key on.
func WithWatchRangeEnd(end string) WatchOption { return func(o *watchOpts) { o.end = end } }

// WithWatchRev starts at revision rev (default: the next one).
func WithWatchRev(rev int64) WatchOption { return func(o *watchOpts) { o.start = rev } }

// WithWatchPrevKV has events carry the version they replaced.
func WithWatchPrevKV() WatchOption { return func(o *watchOpts) { o.prevKV = true } }

// WithProgressInterval sets how often a quiet watch gets a progress
// notification (server default 5s).
func WithProgressInterval(d time.Duration) WatchOption { return func(o *watchOpts) { o.progress = d } }

// watchLineMax bounds one line of a watch stream: the events of one
// revision (a delete of many keys is one revision).
const watchLineMax = 64 << 20

// Watch follows key (or a range) and delivers every change in revision
// order, exactly once, until ctx ends or the watch is canceled. Any member
// serves it; when the stream breaks (a member restarts, is partitioned,
// drops a slow watcher) the client reconnects to the next member and
// resumes from the revision after the last one delivered, so nothing is
// lost or repeated. The channel is closed at the end; a final message with
// Canceled or Err says why, unless ctx ended.
func (c *Client) Watch(ctx context.Context, key string, opts ...WatchOption) <-chan WatchResponse {
	o := watchOpts{}
	for _, f := range opts {
		f(&o)
	}
	ch := make(chan WatchResponse)
	go c.watchLoop(ctx, key, o, ch)
	return ch
}

func (c *Client) streamClient() *http.Client {
	c.streamOnce.Do(func() {
		tr := &http.Transport{TLSClientConfig: c.cfg.TLS, MaxIdleConnsPerHost: c.cfg.MaxConnsPerHost}
		if c.cfg.Transport != nil {
			c.stream = &http.Client{Transport: c.cfg.Transport}
			return
		}
		c.stream = &http.Client{Transport: tr}
	})
	return c.stream
}

func (c *Client) watchLoop(ctx context.Context, key string, o watchOpts, ch chan<- WatchResponse) {
	defer close(ch)
	next := o.start // 0 until the first member says where "now" is
	backoff := c.cfg.BackoffMin
	for attempt := 0; ctx.Err() == nil; attempt++ {
		bases := c.watchBases()
		base := bases[attempt%len(bases)]
		if attempt > 0 && attempt%len(bases) == 0 {
			c.refreshMembers(base) // members may have been replaced since
		}
		end, err := c.watchOnce(ctx, base, key, o, &next, ch)
		switch {
		case end:
			return
		case err == nil:
			backoff = c.cfg.BackoffMin // a stream that worked: reconnect at once
		default:
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, c.cfg.BackoffMax)
		}
	}
}

// watchOnce runs one stream from *next. end says the watch is over (the
// final message sent, or ctx done); otherwise the caller reconnects.
func (c *Client) watchOnce(ctx context.Context, base, key string, o watchOpts, next *int64, ch chan<- WatchResponse) (end bool, err error) {
	q := url.Values{}
	switch {
	case o.prefix:
		q.Set("prefix", key)
	default:
		q.Set("key", key)
		if o.end == "\x00" {
			q.Set("from_key", "true")
		} else if o.end != "" {
			q.Set("range_end", o.end)
		}
	}
	if *next > 0 {
		q.Set("start_revision", strconv.FormatInt(*next, 10))
	}
	if o.prevKV {
		q.Set("prev_kv", "true")
	}
	if o.progress > 0 {
		q.Set("progress_interval", o.progress.String())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+api.PathWatch+"?"+q.Encode(), nil)
	if err != nil {
		return c.finish(ctx, ch, WatchResponse{Canceled: true, Err: err}), nil
	}
	resp, err := c.streamClient().Do(req)
	if err != nil {
		return ctx.Err() != nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c.watchRefused(ctx, resp, ch)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), watchLineMax)
	for sc.Scan() {
		var m api.WatchMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return false, fmt.Errorf("client: watch line: %w", err)
		}
		switch {
		case m.Created:
			if *next == 0 {
				*next = m.Revision + 1
			}
		case m.Canceled && m.CompactRevision != 0:
			return c.finish(ctx, ch, WatchResponse{Canceled: true, CompactRevision: m.CompactRevision,
				Err: &Error{Status: http.StatusGone, Code: api.CodeCompacted, Message: m.Reason}}), nil
		case m.Canceled:
			return false, nil // slow, a restore, a shutdown: resume elsewhere
		default:
			wr, err := fromAPIWatch(&m)
			if err != nil {
				return c.finish(ctx, ch, WatchResponse{Canceled: true, Err: err}), nil
			}
			if m.Revision >= *next {
				*next = m.Revision + 1
			}
			select {
			case ch <- wr:
			case <-ctx.Done():
				return true, nil
			}
		}
	}
	if err := sc.Err(); err != nil && err != io.EOF {
		return ctx.Err() != nil, err
	}
	return ctx.Err() != nil, fmt.Errorf("client: watch stream from %s ended", base)
}

// watchRefused handles an error answer: a compacted start or a malformed
// request ends the watch; anything else is retried on another member.
func (c *Client) watchRefused(ctx context.Context, resp *http.Response, ch chan<- WatchResponse) (bool, error) {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb api.CompactedBody
	json.Unmarshal(body, &eb)
	e := &Error{Status: resp.StatusCode, Code: eb.Code, Message: eb.Error}
	switch {
	case eb.Code == api.CodeCompacted:
		return c.finish(ctx, ch, WatchResponse{Canceled: true, CompactRevision: eb.CompactRevision, Err: e}), nil
	case resp.StatusCode == http.StatusBadRequest:
		return c.finish(ctx, ch, WatchResponse{Canceled: true, Err: e}), nil
	}
	return false, e
}

func (c *Client) finish(ctx context.Context, ch chan<- WatchResponse, wr WatchResponse) bool {
	select {
	case ch <- wr:
	case <-ctx.Done():
	}
	return true
}

func fromAPIWatch(m *api.WatchMessage) (WatchResponse, error) {
	wr := WatchResponse{Revision: m.Revision, Progress: m.Progress}
	for _, e := range m.Events {
		kv, err := fromAPIKV(&e.KV)
		if err != nil {
			return wr, err
		}
		ev := Event{Type: e.Type, KV: kv}
		if e.PrevKV != nil {
			p, err := fromAPIKV(e.PrevKV)
			if err != nil {
				return wr, err
			}
			ev.PrevKV = &p
		}
		wr.Events = append(wr.Events, ev)
	}
	return wr, nil
}

// streamState is the lazily built HTTP client for watch streams: the
// request client reads whole answers, a stream needs net/http's.
type streamState struct {
	streamOnce sync.Once
	stream     *http.Client
}

// watchBases is every member a watch may go to: the endpoints given and
// the members learned since from /v1/cluster, so that a watch follows the
// cluster through membership changes.
func (c *Client) watchBases() []string {
	bases := c.order(false)
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]uint64, 0, len(c.addrs))
	for id := range c.addrs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if a := c.addrs[id]; !slices.Contains(bases, a) {
			bases = append(bases, a)
		}
	}
	return bases
}
