package etcdapi

import (
	"sync"
	"time"
)

// expiries hands out channels that close once a timeout has passed, one
// per slot of width step, shared by every request whose deadline falls in
// that slot: a map lookup per request instead of a context, a timer and a
// cancellation registration each. A channel closes between the timeout
// and the timeout plus step after the call; live slots are bounded by
// timeout/step + 1.
type expiries struct {
	step  time.Duration
	start time.Time // slots count from here, on the monotonic clock

	mu    sync.Mutex
	slots map[int64]chan struct{} // by slot: deadline / step, rounded up
}

// expiryStepsPerTimeout is how many slots a timeout spans: a deadline
// comes at most 1/expiryStepsPerTimeout of the timeout late.
const expiryStepsPerTimeout = 32

func newExpiries(timeout time.Duration) *expiries {
	return &expiries{step: max(timeout/expiryStepsPerTimeout, time.Millisecond), start: time.Now(),
		slots: map[int64]chan struct{}{}}
}

// after returns a channel closed at least d from now.
func (e *expiries) after(d time.Duration) <-chan struct{} {
	step := int64(e.step)
	slot := (int64(time.Since(e.start)+d) + step - 1) / step
	e.mu.Lock()
	defer e.mu.Unlock()
	ch := e.slots[slot]
	if ch == nil {
		ch = make(chan struct{})
		e.slots[slot] = ch
		time.AfterFunc(time.Duration(slot*step)-time.Since(e.start), func() {
			e.mu.Lock()
			delete(e.slots, slot)
			e.mu.Unlock()
			close(ch)
		})
	}
	return ch
}
