package main

import (
	"context"
	"net"
	"testing"
	"time"
)

// A round trip through the echo process's loop returns what was sent, and
// every trip is timed.
func TestRoundTripsThroughTheEcho(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() { done <- runEcho(l.Addr().String()) }()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	ds, err := roundTrips(context.Background(), c, 20, 10*time.Microsecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 20 {
		t.Fatalf("timed %d round trips, want 20", len(ds))
	}
	for i, d := range ds {
		if d <= 0 {
			t.Errorf("round trip %d took %v", i, d)
		}
	}
	c.Close()
	if err := <-done; err != nil {
		t.Errorf("echo ended with %v after the connection closed", err)
	}
}

// Bytes that do not come back whole fail the measurement rather than
// timing a partial read.
func TestRoundTripsFailWhenThePeerCloses(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
			c.Write([]byte("short"))
			c.Close()
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := roundTrips(context.Background(), c, 5, 0); err == nil {
		t.Fatal("round trips to a peer that sent 5 bytes and closed succeeded")
	}
}
