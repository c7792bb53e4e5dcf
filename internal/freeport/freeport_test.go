package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPortsAreDistinctBindableAndBelowEphemeral(t *testing.T) {
	seen := map[int]bool{}
	for range 200 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if p < low || p >= high {
			t.Fatalf("port %d outside [%d, %d)", p, low, high)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	a, err := Addr()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", a)
	if err != nil {
		t.Fatalf("binding %s: %v", a, err)
	}
	l.Close()
}

// TestSkipsAPortInUse leaves one candidate port, binds it, and checks that
// Port reports failure rather than returning the bound port.
func TestSkipsAPortInUse(t *testing.T) {
	held, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(held)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	mu.Lock()
	saved := given
	given = map[int]bool{}
	for p := low; p < high; p++ {
		given[p] = p != held
	}
	mu.Unlock()
	defer func() { mu.Lock(); given = saved; mu.Unlock() }()

	if p, err := Port(); err == nil {
		t.Fatalf("Port returned %d although the only candidate, %d, is bound", p, held)
	}
}
