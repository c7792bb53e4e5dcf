package kv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// EventType says whether an event put or deleted its key.
type EventType uint8

const (
	EventPut EventType = iota
	EventDelete
)

func (t EventType) String() string {
	if t == EventDelete {
		return "delete"
	}
	return "put"
}

// Event is one change of one key. For a delete, KV carries the key and the
// delete's ModRevision only. Prev is the version the change replaced, nil
// if the key did not exist (or, for an event replayed from history, if the
// previous version is compacted).
type Event struct {
	Type EventType
	KV   KeyValue
	Prev *KeyValue
}

// WatchBatch is what one Watcher.Next returns: events in revision order
// (never part of a revision), and Revision, the store revision up to which
// the watcher has now been given every matching change.
type WatchBatch struct {
	Revision int64
	Events   []Event
}

// Defaults of the watch limits.
const (
	// DefaultWatchBufferBatches bounds the batches (one per revision with
	// matching changes) waiting for a live watcher; a watcher that lets
	// this many pile up is cancelled as too slow.
	DefaultWatchBufferBatches = 1024
	// watchCatchUpEvents is how many events one Next reads from history
	// at most (whole revisions, so it may go over by one revision).
	watchCatchUpEvents = 1000
)

// ErrWatchCanceled is wrapped by Next's error when the store gave up on the
// watcher because it fell too far behind; the watch can resume from
// history at the revision after the last one it received.
var ErrWatchCanceled = errors.New("kv: watch canceled")

// Watcher follows the changes of a key or a range from a start revision:
// first those in history, read in chunks, then the live ones the store
// hands it as it applies them. One goroutine at a time may call Next.
type Watcher struct {
	s        *Store
	key, end string
	// next is the first revision not yet returned by Next.
	next int64
	// live: registered with the hub; batches arrive through c.
	live     bool
	c        chan WatchBatch
	canceled chan struct{}
	reason   string // set before canceled is closed
	// notify, if set, is called after a batch is queued for the watcher
	// or it is cancelled (see OnReady).
	notify func()
}

// Watch starts a watcher on [key, end) (end "" for the key alone, "\x00"
// for every key from key on) from revision start (<= 0: the next revision
// to be written). A start the history no longer holds is a
// *CompactedError; buffer <= 0 means DefaultWatchBufferBatches. The caller
// must Close the watcher.
func (s *Store) Watch(key, end string, start int64, buffer int) (*Watcher, error) {
	if msg := checkRange(key, end); msg != "" {
		return nil, &Error{Code: CodeBadRequest, Message: msg}
	}
	if buffer <= 0 {
		buffer = DefaultWatchBufferBatches
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if start <= 0 {
		start = s.rev + 1
	}
	if start < s.compacted {
		return nil, &CompactedError{Revision: start, Compacted: s.compacted}
	}
	return &Watcher{s: s, key: key, end: end, next: start, c: make(chan WatchBatch, buffer), canceled: make(chan struct{})}, nil
}

func (w *Watcher) matches(key string) bool { return inRange(key, w.key, w.end) }

// OnReady has f called whenever a live batch is queued for the watcher or
// the store cancels it: then Poll has something to return. It lets one
// goroutine serve many watchers without one waiting goroutine each. f runs
// inside the store's Apply and must not block. Call it before the first
// Next or Poll.
func (w *Watcher) OnReady(f func()) { w.notify = f }

// Next returns the next batch of events, waiting for one if the watcher has
// seen every change so far. The batch that ends the catch-up from history
// is returned even when empty: its Revision tells how far the watcher has
// seen. It fails with ctx's error, with a
// *CompactedError if the history it still had to read was compacted, or
// with an error wrapping ErrWatchCanceled if it fell too far behind.
func (w *Watcher) Next(ctx context.Context) (WatchBatch, error) {
	for !w.live {
		b, err := w.catchUp()
		if err != nil || len(b.Events) > 0 || w.live {
			return b, err
		}
	}
	for {
		select {
		case b := <-w.c:
			if w.take(b) {
				return b, nil
			}
		case <-w.canceled:
			// Deliver what was queued before the cancellation first.
			select {
			case b := <-w.c:
				if w.take(b) {
					return b, nil
				}
				continue
			default:
			}
			return WatchBatch{}, fmt.Errorf("%w: %s", ErrWatchCanceled, w.reason)
		case <-ctx.Done():
			return WatchBatch{}, ctx.Err()
		}
	}
}

// take accepts a live batch unless it is before the start: a watch that
// starts at a revision the store has not reached yet (a client resuming on
// a member behind the one it came from) is registered at once, and the
// store then publishes the revisions up to its start too.
func (w *Watcher) take(b WatchBatch) bool {
	if b.Revision < w.next {
		return false
	}
	w.next = b.Revision + 1
	return true
}

// catchUp reads the next chunk of history; once it reaches the present it
// registers the watcher for live batches, under the same read lock, so no
// revision falls between the two.
func (w *Watcher) catchUp() (WatchBatch, error) {
	s := w.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if w.next < s.compacted {
		return WatchBatch{}, &CompactedError{Revision: w.next, Compacted: s.compacted}
	}
	var b WatchBatch
	i := s.changes.from(w.next)
	for ; i < s.changes.len(); i++ {
		e := *s.changes.at(i)
		if len(b.Events) >= watchCatchUpEvents && e.rev != b.Revision {
			break
		}
		if !w.matches(e.key) {
			continue
		}
		if ev, ok := s.historyEvent(e); ok {
			b.Events = append(b.Events, ev)
			b.Revision = e.rev
		}
	}
	if i == s.changes.len() {
		b.Revision = max(s.rev, w.next-1)
		w.live = true
		s.hub.add(w)
	}
	w.next = b.Revision + 1
	return b, nil
}

// historyEvent rebuilds the event of a change still in the change log.
func (s *Store) historyEvent(e histEvent) (Event, bool) {
	rec := s.byKey[e.key]
	if rec == nil {
		return Event{}, false
	}
	for i := range rec.vers {
		v := &rec.vers[i]
		if v.mod != e.rev || v.sub != e.sub {
			continue
		}
		ev := Event{Type: EventPut, KV: v.keyValue(e.key)}
		if v.tombstone() {
			ev.Type, ev.KV = EventDelete, KeyValue{Key: e.key, ModRevision: v.mod}
		}
		if i > 0 && !rec.vers[i-1].tombstone() {
			p := rec.vers[i-1].keyValue(e.key)
			ev.Prev = &p
		}
		return ev, true
	}
	return Event{}, false
}

// Progress returns the revision up to which the watcher has been given
// every change, if nothing is waiting for it: a live watcher with an
// empty queue has seen everything up to the store's revision, since the
// store queues a revision's changes before that revision is visible.
func (w *Watcher) Progress() (int64, bool) {
	w.s.mu.RLock()
	defer w.s.mu.RUnlock()
	if !w.live || len(w.c) > 0 {
		return 0, false
	}
	select {
	case <-w.canceled:
		return 0, false
	default:
	}
	return max(w.s.rev, w.next-1), true
}

// Close stops the watcher; it is safe to call more than once.
func (w *Watcher) Close() {
	if w.live {
		w.s.hub.remove(w)
	}
}

// watchHub hands the changes of each revision to the live watchers whose
// range they fall in. publish runs inside Apply and never blocks: a
// watcher whose queue is full is cancelled instead.
type watchHub struct {
	mu     sync.Mutex
	byKey  map[string]map[*Watcher]struct{} // single-key watchers
	ranges map[*Watcher]struct{}            // the others
	// n counts the live watchers; written under mu, read without it by
	// watching.
	n atomic.Int64
}

func newWatchHub() *watchHub {
	return &watchHub{byKey: map[string]map[*Watcher]struct{}{}, ranges: map[*Watcher]struct{}{}}
}

// watching reports whether any watcher is live; the store skips building
// events when none is. Called under the store's write lock, which add
// (under the read lock) excludes.
func (h *watchHub) watching() bool {
	return h.n.Load() > 0
}

func (h *watchHub) add(w *Watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.end == "" {
		m := h.byKey[w.key]
		if m == nil {
			m = map[*Watcher]struct{}{}
			h.byKey[w.key] = m
		}
		m[w] = struct{}{}
	} else {
		h.ranges[w] = struct{}{}
	}
	h.n.Add(1)
}

func (h *watchHub) remove(w *Watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(w)
}

func (h *watchHub) removeLocked(w *Watcher) {
	if w.end == "" {
		if m := h.byKey[w.key]; m != nil {
			if _, ok := m[w]; ok {
				delete(m, w)
				h.n.Add(-1)
			}
			if len(m) == 0 {
				delete(h.byKey, w.key)
			}
		}
		return
	}
	if _, ok := h.ranges[w]; ok {
		delete(h.ranges, w)
		h.n.Add(-1)
	}
}

// publish queues revision rev's events for every watcher they concern.
// Which watchers get a batch depends on map order, but what each gets
// does not: its events in the order applied.
func (h *watchHub) publish(rev int64, events []Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n.Load() == 0 {
		return
	}
	var batches map[*Watcher][]Event
	if len(events) == 1 {
		// The common case: one batch shared by every watcher it concerns.
		for w := range h.byKey[events[0].KV.Key] {
			h.send(w, WatchBatch{Revision: rev, Events: events})
		}
		for w := range h.ranges {
			if w.matches(events[0].KV.Key) {
				h.send(w, WatchBatch{Revision: rev, Events: events})
			}
		}
		return
	}
	batches = map[*Watcher][]Event{}
	for _, ev := range events {
		for w := range h.byKey[ev.KV.Key] {
			batches[w] = append(batches[w], ev)
		}
		for w := range h.ranges {
			if w.matches(ev.KV.Key) {
				batches[w] = append(batches[w], ev)
			}
		}
	}
	for w, evs := range batches {
		h.send(w, WatchBatch{Revision: rev, Events: evs})
	}
}

// cancelAll cancels every live watcher with reason.
func (h *watchHub) cancelAll(reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var all []*Watcher
	for _, m := range h.byKey {
		for w := range m {
			all = append(all, w)
		}
	}
	for w := range h.ranges {
		all = append(all, w)
	}
	for _, w := range all {
		w.reason = reason
		h.removeLocked(w)
		close(w.canceled)
		if w.notify != nil {
			w.notify()
		}
	}
}

func (h *watchHub) send(w *Watcher, b WatchBatch) {
	select {
	case w.c <- b:
	default:
		w.reason = fmt.Sprintf("watcher fell %d revisions with changes behind; resume from revision %d", cap(w.c), b.Revision)
		h.removeLocked(w)
		close(w.canceled)
	}
	if w.notify != nil {
		w.notify()
	}
}

// Watchers returns the number of live watchers.
func (s *Store) Watchers() int { return int(s.hub.n.Load()) }

// Poll is Next without waiting: ok is false when nothing is ready. For a
// caller that drives the store itself (the simulator), where waiting
// would never end.
func (w *Watcher) Poll() (b WatchBatch, ok bool, err error) {
	if !w.live {
		b, err = w.catchUp()
		return b, err == nil && (len(b.Events) > 0 || w.live), err
	}
	for {
		select {
		case b := <-w.c:
			if w.take(b) {
				return b, true, nil
			}
			continue
		default:
		}
		break
	}
	select {
	case <-w.canceled:
		return WatchBatch{}, false, fmt.Errorf("%w: %s", ErrWatchCanceled, w.reason)
	default:
	}
	return WatchBatch{}, false, nil
}
