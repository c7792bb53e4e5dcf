package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/raft"
)

// Watch limits.
const (
	// MaxWatchStreams bounds the watch streams one member serves at once;
	// beyond, a watch is refused with 429 busy. Watch streams do not take
	// the request slots of MaxConcurrentRequests, which they would hold
	// for as long as they last.
	MaxWatchStreams = 20000
	// DefaultWatchProgressInterval is how often a quiet watch stream gets
	// a progress notification.
	DefaultWatchProgressInterval = 5 * time.Second
	minWatchProgressInterval     = 10 * time.Millisecond
	// watchLeaderlessMax: a member without a leader for this many
	// election timeouts ends its watch streams, so that their clients
	// resume on a member that is not cut off.
	watchLeaderlessMax = 3
)

// watchStreams counts the streams and ends them all on shutdown: a stream
// never goes idle, so http.Server.Shutdown would otherwise wait it out.
type watchStreams struct {
	n    atomic.Int64
	once sync.Once
	stop chan struct{}
}

func (ws *watchStreams) stopAll() { ws.once.Do(func() { close(ws.stop) }) }

// watch answers GET /v1/watch with a stream of newline-delimited JSON
// (api.WatchMessage, one a line), served from this member's applied state:
// any member serves watches, with no round trip to the leader per event.
//
//	?key=K[&range_end=E|&from_key=true] | ?prefix=P
//	&start_revision=N   (default: the next revision)
//	&prev_kv=true       (events carry the version they replaced)
//	&progress_interval=5s
func (s *Server) watch(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		s.methodNotAllowed(w, http.MethodGet)
		return
	}
	q := r.URL.Query()
	key, end, msg := rangeOf(q)
	if msg != "" {
		s.fail(w, api.CodeBadRequest, msg)
		return
	}
	start, msg := queryInt(q, "start_revision")
	if msg != "" {
		s.fail(w, api.CodeBadRequest, msg)
		return
	}
	interval := DefaultWatchProgressInterval
	if v := q.Get("progress_interval"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < minWatchProgressInterval {
			s.fail(w, api.CodeBadRequest, fmt.Sprintf("progress_interval %q: want a duration of at least %v", v, minWatchProgressInterval))
			return
		}
		interval = d
	}
	prevKV := q.Get("prev_kv") == "true"
	if s.removed() {
		s.fail(w, api.CodeNoLeader, "this member was removed from the cluster; watch on another member")
		return
	}
	if s.watches.n.Add(1) > MaxWatchStreams {
		s.watches.n.Add(-1)
		s.fail(w, api.CodeBusy, fmt.Sprintf("%d watch streams, the most this member serves", MaxWatchStreams))
		return
	}
	defer s.watches.n.Add(-1)
	wt, err := s.store.Watch(key, end, start, 0)
	if err != nil {
		s.failKV(w, err)
		return
	}
	defer wt.Close()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-s.watches.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	sw := &watchWriter{s: s, w: w, rc: http.NewResponseController(w), enc: json.NewEncoder(w)}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-cache")
	rev, _ := s.store.Revision()
	if !sw.send(api.WatchMessage{Created: true, Revision: rev}) {
		return
	}
	s.streamWatch(ctx, sw, wt, interval, prevKV)
}

func (s *Server) streamWatch(ctx context.Context, sw *watchWriter, wt *kv.Watcher, interval time.Duration, prevKV bool) {
	var leaderless time.Time // when this member was first seen without a leader
	for {
		nctx, ncancel := context.WithTimeout(ctx, interval)
		b, err := wt.Next(nctx)
		ncancel()
		switch {
		case err == nil && len(b.Events) == 0:
			// The end of the catch-up from history: say how far it got.
			if !sw.send(api.WatchMessage{Progress: true, Revision: b.Revision}) {
				return
			}
		case err == nil:
			if !sw.send(api.WatchMessage{Revision: b.Revision, Events: toAPIEvents(b.Events, prevKV)}) {
				return
			}
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			if s.removed() {
				// Its store will never move again: the client must go on
				// elsewhere rather than hear progress that stands still.
				sw.send(api.WatchMessage{Canceled: true, Reason: "this member was removed from the cluster; resume on another member"})
				return
			}
			if lead, _, _ := s.node.Leader(); lead != 0 {
				leaderless = time.Time{}
			} else if leaderless.IsZero() {
				leaderless = time.Now()
			} else if time.Since(leaderless) > watchLeaderlessMax*s.cfg.ElectionTimeout {
				// Cut off from the cluster, its progress would stand still
				// while the others move on.
				sw.send(api.WatchMessage{Canceled: true, Reason: "this member has had no leader for a while; resume on another member"})
				return
			}
			if rev, ok := wt.Progress(); ok && !sw.send(api.WatchMessage{Progress: true, Revision: rev}) {
				return
			}
		case ctx.Err() != nil:
			select {
			case <-s.watches.stop:
				sw.send(api.WatchMessage{Canceled: true, Reason: "the member is shutting down; resume on another member"})
			default: // the client left
			}
			return
		default:
			m := api.WatchMessage{Canceled: true, Reason: err.Error()}
			var ce *kv.CompactedError
			if errors.As(err, &ce) {
				m.Reason, m.CompactRevision = ce.Message(), ce.Compacted
			}
			sw.send(m)
			return
		}
	}
}

func toAPIEvents(evs []kv.Event, prevKV bool) []api.WatchEvent {
	out := make([]api.WatchEvent, len(evs))
	for i := range evs {
		e := &evs[i]
		out[i] = api.WatchEvent{Type: e.Type.String(), KV: *toAPIKV(&e.KV)}
		if prevKV && e.Prev != nil {
			out[i].PrevKV = toAPIKV(e.Prev)
		}
	}
	return out
}

// watchWriter writes one message a line and flushes it, each write under
// a fresh write deadline (the server's WriteTimeout bounds one line, not
// the stream).
type watchWriter struct {
	s   *Server
	w   http.ResponseWriter
	rc  *http.ResponseController
	enc *json.Encoder
}

func (sw *watchWriter) send(m api.WatchMessage) bool {
	sw.rc.SetWriteDeadline(time.Now().Add(sw.s.cfg.Limits.WriteTimeout))
	if err := sw.enc.Encode(m); err != nil {
		return false
	}
	return sw.rc.Flush() == nil
}

// removed reports whether this member has learned it was removed.
func (s *Server) removed() bool {
	_, _, role := s.node.Leader()
	return role == raft.Removed
}
