package node

import (
	"testing"
	"time"

	"github.com/raftkv/raftkv/driver"
)

// TestTimingOf shows the core's view of the timers: ten ticks per
// heartbeat interval at the defaults, a lease of two heartbeat intervals,
// the closed-connection promise the driver derives for them (29 ticks,
// well inside the election timeout), a lease of half the election timeout
// where that is shorter, ticks no shorter than minCoreTick for short
// timers, and the promise off where it would not be shorter than an
// election timeout.
func TestTimingOf(t *testing.T) {
	d := timingOf(DefaultTickInterval, DefaultElectionTimeout)
	want := timing{tick: 10 * time.Millisecond, heartbeat: 10, election: 100, lease: 20, slack: 50 * time.Millisecond,
		closedPromise: driver.ClosedPromiseTicks(20, 10*time.Millisecond, 50*time.Millisecond)}
	if d != want {
		t.Fatalf("defaults: %+v, want %+v", d, want)
	}
	if d.closedPromise != 29 {
		t.Fatalf("closed-connection promise at the defaults %d ticks, want 29", d.closedPromise)
	}
	short := timingOf(10*time.Millisecond, 100*time.Millisecond)
	if short.tick < minCoreTick || short.heartbeat*int(short.tick) != int(10*time.Millisecond) {
		t.Fatalf("10ms heartbeat: %+v", short)
	}
	tight := timingOf(100*time.Millisecond, 200*time.Millisecond)
	if tight.lease != tight.election/2 || tight.closedPromise == 0 || tight.closedPromise >= tight.election {
		t.Fatalf("200ms election timeout: %+v, want a lease of half of it and a shorter closed-connection promise", tight)
	}
	if off := timingOf(10*time.Millisecond, 20*time.Millisecond); off.closedPromise != 0 {
		t.Fatalf("20ms election timeout: %+v, want no closed-connection promise", off)
	}
}
