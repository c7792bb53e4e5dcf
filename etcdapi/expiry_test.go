package etcdapi

import (
	"testing"
	"time"
)

// TestExpiriesCloseAfterTimeout checks that a channel from after closes
// no earlier than its timeout and not much later, that calls in the same
// slot share one channel, and that closed slots are forgotten.
func TestExpiriesCloseAfterTimeout(t *testing.T) {
	const timeout = 64 * time.Millisecond
	e := newExpiries(timeout)
	start := time.Now()
	a, b := e.after(timeout), e.after(timeout)
	<-a
	if waited := time.Since(start); waited < timeout {
		t.Fatalf("closed after %v, before the timeout %v", waited, timeout)
	}
	select {
	case <-b:
	case <-time.After(2 * e.step):
		t.Fatalf("a second channel of the same moment still open %v after the first closed", 2*e.step)
	}
	deadline := time.Now().Add(time.Second)
	for {
		e.mu.Lock()
		n := len(e.slots)
		e.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d slots left after every channel closed", n)
		}
		time.Sleep(time.Millisecond)
	}
}
