package node

import (
	"sync"
	"time"
)

// Expiries hands out channels for ProposeUntil that close once a timeout
// has passed, shared by every request whose deadline falls in the same
// slot of width Step: one timer per slot instead of a context, a timer
// and a cancellation registration per request, which were ~4% of a
// write's CPU on a leader. A channel closes between the timeout and the
// timeout plus Step after the call. Live slots are bounded by
// timeout/Step + 1. It is safe for concurrent use.
type Expiries struct {
	step  time.Duration
	start time.Time // slots count from here, on the monotonic clock

	mu    sync.Mutex
	slots map[int64]chan struct{} // by slot number: deadline / step, rounded up
}

// expirySlots is how many slots a timeout spans: a deadline comes at most
// 1/expirySlots of the timeout late.
const expirySlots = 32

// NewExpiries returns Expiries for deadlines of about timeout.
func NewExpiries(timeout time.Duration) *Expiries {
	return &Expiries{step: max(timeout/expirySlots, time.Millisecond), start: time.Now(),
		slots: map[int64]chan struct{}{}}
}

// Step is how late, at most, a channel closes.
func (e *Expiries) Step() time.Duration { return e.step }

// After returns a channel closed at least d from now.
func (e *Expiries) After(d time.Duration) <-chan struct{} {
	now := time.Since(e.start)
	slot := int64((now + d + e.step - 1) / e.step)
	e.mu.Lock()
	defer e.mu.Unlock()
	ch := e.slots[slot]
	if ch == nil {
		ch = make(chan struct{})
		e.slots[slot] = ch
		time.AfterFunc(time.Duration(slot)*e.step-now, func() {
			e.mu.Lock()
			delete(e.slots, slot)
			e.mu.Unlock()
			close(ch)
		})
	}
	return ch
}

// live reports how many slots are held (for tests).
func (e *Expiries) live() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.slots)
}
