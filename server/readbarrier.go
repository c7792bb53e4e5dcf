package server

import (
	"context"
	"sync"
	"time"
)

// readCoalescer shares read barriers between concurrent requests
// (dissertation §6.4: one heartbeat round may serve every read that
// arrived before it began). A request joins the next round to start,
// never one already under way: a barrier is linearizable for a read only
// if it begins after the read arrived, since it must capture a commit
// index at least as high as any write completed before that.
//
// At most one round runs at a time and at most one more gathers waiters,
// so a burst of N reads costs at most two barriers, not N, and each
// waiter is woken by one channel close: no goroutine and no hand-off to
// the node per read. The rounds bound themselves: each has its own
// timeout, and the waiters a round gathers are bounded by the server's
// request limit (MaxConcurrentRequests).
type readCoalescer struct {
	barrier func(context.Context) error // the node's ReadIndex or LeaseRead
	timeout time.Duration               // of one round

	mu      sync.Mutex
	running bool
	next    *readRound // gathering waiters; starts when the running one ends
}

// readRound is one barrier shared by its waiters.
type readRound struct {
	done chan struct{} // closed when err is set
	err  error
}

func newReadCoalescer(barrier func(context.Context) error, timeout time.Duration) *readCoalescer {
	return &readCoalescer{barrier: barrier, timeout: timeout}
}

// wait returns once a barrier that began after the call has completed:
// nil if it succeeded. ctx bounds the caller's wait only; the round goes
// on for the other waiters.
func (c *readCoalescer) wait(ctx context.Context) error {
	c.mu.Lock()
	rd := c.next
	if rd == nil {
		rd = &readRound{done: make(chan struct{})}
		c.next = rd
	}
	if !c.running {
		// Nothing under way: this caller runs the round itself, on its own
		// goroutine, and hands the next one (gathered meanwhile) to a new
		// goroutine when it is done.
		c.running, c.next = true, nil
		c.mu.Unlock()
		c.run(rd)
	} else {
		c.mu.Unlock()
	}
	select {
	case <-rd.done:
		return rd.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run completes rd and then every round gathered while it ran.
func (c *readCoalescer) run(rd *readRound) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	rd.err = c.barrier(ctx)
	cancel()
	close(rd.done)
	c.mu.Lock()
	next := c.next
	c.next = nil
	if next == nil {
		c.running = false
	}
	c.mu.Unlock()
	if next != nil {
		go c.run(next)
	}
}
