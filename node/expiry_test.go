package node

import (
	"testing"
	"time"
)

// TestExpiries shows that a channel from After closes no sooner than asked
// and at most a slot later, that calls within one slot share a channel,
// and that a slot is forgotten once it has fired (the map stays bounded).
func TestExpiries(t *testing.T) {
	const timeout = 320 * time.Millisecond
	e := NewExpiries(timeout)
	if e.Step() != timeout/expirySlots {
		t.Fatalf("step %v, want %v", e.Step(), timeout/expirySlots)
	}
	start := time.Now()
	a := e.After(timeout)
	b := e.After(timeout)
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
	if late := waited - timeout; late > e.Step()+200*time.Millisecond {
		t.Errorf("closed %v after the timeout, more than a slot (%v) late", late, e.Step())
	}
	deadline := time.Now().Add(time.Second)
	for e.live() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d slots still held after they fired", e.live())
		}
		time.Sleep(time.Millisecond)
	}
}
