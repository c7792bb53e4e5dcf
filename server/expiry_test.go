package server

import (
	"testing"
	"time"
)

// TestExpiries shows that a channel from after closes no sooner than asked
// and at most a slot later, that calls within one slot share a channel,
// and that a slot is forgotten once it has fired (the map stays bounded).
func TestExpiries(t *testing.T) {
	const timeout = 320 * time.Millisecond
	e := newExpiries(timeout)
	if e.step != timeout/expirySlots {
		t.Fatalf("step %v, want %v", e.step, timeout/expirySlots)
	}
	start := time.Now()
	a := e.after(timeout)
	b := e.after(timeout)
	if a != b {
		t.Errorf("two calls at once got different channels")
	}
	select {
	case <-a:
		t.Fatalf("closed after %v, before the timeout %v", time.Since(start), timeout)
	case <-time.After(timeout - 5*time.Millisecond):
	}
	<-a
	waited := time.Since(start)
	if waited < timeout {
		t.Fatalf("closed after %v, before the timeout %v", waited, timeout)
	}
	// A slot late at most, plus scheduling slack on a busy machine.
	if late := waited - timeout; late > e.step+200*time.Millisecond {
		t.Errorf("closed %v after the timeout, more than a slot (%v) late", late, e.step)
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
			t.Fatalf("%d slots still held after they fired", n)
		}
		time.Sleep(time.Millisecond)
	}
}
