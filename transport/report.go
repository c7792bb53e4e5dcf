package transport

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/raftkv/raftkv/raftpb"
)

// reporter delivers ReportUnreachable, ReportClosed and refused-snapshot reports from its
// own goroutine. Send and SendSnapshot run on the caller's goroutine (often
// the node's), and a Handler that queues into that same node could
// deadlock if called synchronously there. Reports for one id coalesce while
// they wait, so a burst of drops costs one call, and the pending sets are
// bounded by the number of peer ids in use.
type reporter struct {
	mu          sync.Mutex
	unreachable map[raftpb.NodeID]struct{}
	closed      map[raftpb.NodeID]struct{}
	snapFailed  map[raftpb.NodeID]struct{}
	wake        chan struct{} // capacity 1: a pending wake-up
}

func newReporter() *reporter {
	return &reporter{
		unreachable: make(map[raftpb.NodeID]struct{}),
		closed:      make(map[raftpb.NodeID]struct{}),
		snapFailed:  make(map[raftpb.NodeID]struct{}),
		wake:        make(chan struct{}, 1),
	}
}

func (r *reporter) reportUnreachable(id raftpb.NodeID) { r.add(r.unreachable, id) }

func (r *reporter) reportClosed(id raftpb.NodeID) { r.add(r.closed, id) }

func (r *reporter) reportSnapshotFailed(id raftpb.NodeID) { r.add(r.snapFailed, id) }

func (r *reporter) add(set map[raftpb.NodeID]struct{}, id raftpb.NodeID) {
	r.mu.Lock()
	set[id] = struct{}{}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// run delivers reports until ctx ends, in sorted id order so that runs are
// easy to compare.
func (r *reporter) run(ctx context.Context, h Handler) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		unreachable, closed, snapFailed := r.take()
		for _, id := range unreachable {
			h.ReportUnreachable(id)
		}
		for _, id := range closed {
			h.ReportClosed(id)
		}
		for _, id := range snapFailed {
			h.ReportSnapshot(id, false)
		}
	}
}

func (r *reporter) take() (unreachable, closed, snapFailed []raftpb.NodeID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return drainSorted(r.unreachable), drainSorted(r.closed), drainSorted(r.snapFailed)
}

func drainSorted(set map[raftpb.NodeID]struct{}) []raftpb.NodeID {
	ids := make([]raftpb.NodeID, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	clear(set)
	slices.Sort(ids)
	return ids
}

// logEvery is the rate limit of a noisy log line, per reason.
const logEvery = time.Second

// logLimiter lets one line per key through per logEvery and counts the
// rest, so that a peer hammering the port cannot flood the log. Keys are a
// fixed set of reasons, never addresses, so its map stays small.
type logLimiter struct {
	mu    sync.Mutex
	every time.Duration
	keys  map[string]*limitState
}

type limitState struct {
	last       time.Time
	suppressed int
}

// allow reports whether a line for key may be logged now and how many were
// suppressed since the last one.
func (l *logLimiter) allow(key string) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		l.keys = make(map[string]*limitState)
	}
	s := l.keys[key]
	if s == nil {
		s = &limitState{}
		l.keys[key] = s
	}
	now := time.Now()
	if !s.last.IsZero() && now.Sub(s.last) < l.every {
		s.suppressed++
		return false, 0
	}
	n := s.suppressed
	s.last, s.suppressed = now, 0
	return true, n
}

// warnLimited logs msg at warn level, rate-limited by msg.
func (t *Transport) warnLimited(msg string, args ...any) {
	ok, suppressed := t.limiter.allow(msg)
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, slog.Int("suppressed", suppressed))
	}
	t.log.Warn(msg, args...)
}
