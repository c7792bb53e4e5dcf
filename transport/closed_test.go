package transport

import (
	"net"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raftpb"
)

// TestReportClosedWhenPeerDies shows the signal a dead process leaves: its
// connection ends and redials are refused, and the transport reports
// ReportClosed for it at once, without any message being sent.
func TestReportClosedWhenPeerDies(t *testing.T) {
	a := newMember(t, 1, "", nil)
	b := newMember(t, 2, "", nil)
	connect(t, a, b)
	select {
	case id := <-a.rec.closed:
		t.Fatalf("ReportClosed(%d) while every peer is up", id)
	default:
	}
	b.tr.Stop() // closes every connection, as the kernel does for a killed process
	select {
	case id := <-a.rec.closed:
		if id != 2 {
			t.Fatalf("ReportClosed(%d), want 2", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no ReportClosed after the peer's connections closed")
	}
}

// TestNoReportClosedForSilentPeer shows that a peer that cannot be reached
// but closes nothing (a partition: the handshake times out) is reported
// unreachable, never closed.
func TestNoReportClosedForSilentPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // never answers the handshake
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range held {
			c.Close()
		}
	})
	a := newMember(t, 1, "", func(c *Config) { c.HandshakeTimeout = 20 * time.Millisecond })
	if err := a.tr.AddPeer(2, ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	a.tr.Send([]raftpb.Message{heartbeat(1, 2, 1)})
	select {
	case <-a.rec.unreachable:
	case <-time.After(10 * time.Second):
		t.Fatal("no ReportUnreachable for a peer that never answers")
	}
	time.Sleep(200 * time.Millisecond) // several more handshakes time out
	select {
	case id := <-a.rec.closed:
		t.Fatalf("ReportClosed(%d) for a peer that timed out", id)
	default:
	}
}
