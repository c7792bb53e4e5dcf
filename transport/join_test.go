package transport

import (
	"net"
	"testing"

	"github.com/raftkv/raftkv/raftpb"
)

// TestJoiningMemberAcceptsLeader shows that a member started to join, with
// no peers and no cluster id, accepts the first member that reaches it,
// adopts its cluster id, learns its address from the handshake and can
// answer it; and that once acceptance is turned off, strangers are refused.
func TestJoiningMemberAcceptsLeader(t *testing.T) {
	adopted := make(chan uint64, 1)
	joiner := newMember(t, 4, "", func(c *Config) {
		c.ClusterID = 0
		c.AcceptUnknown = true
		c.OnClusterID = func(id uint64) { adopted <- id }
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	leaderAddr := ln.Addr().String()
	ln.Close()
	leader := newMember(t, 1, leaderAddr, func(c *Config) { c.AdvertiseAddr = leaderAddr })
	if err := leader.tr.AddPeer(4, joiner.addr()); err != nil {
		t.Fatal(err)
	}
	leader.tr.Send([]raftpb.Message{{Type: raftpb.MsgHeartbeat, From: 1, To: 4, Term: 3}})
	if m := recvMsg(t, joiner); m.From != 1 || m.Type != raftpb.MsgHeartbeat {
		t.Fatalf("joiner got %v", m)
	}
	if id := <-adopted; id != testCluster || joiner.tr.ClusterID() != testCluster {
		t.Fatalf("adopted cluster %d (transport says %d), want %d", id, joiner.tr.ClusterID(), testCluster)
	}
	joiner.tr.Send([]raftpb.Message{{Type: raftpb.MsgHeartbeatResp, From: 4, To: 1, Term: 3}})
	if m := recvMsg(t, leader); m.From != 4 || m.Type != raftpb.MsgHeartbeatResp {
		t.Fatalf("leader got %v", m)
	}

	joiner.tr.SetAcceptUnknown(false)
	stranger := newMember(t, 9, "", func(c *Config) { c.AdvertiseAddr = "127.0.0.1:1" })
	if err := stranger.tr.AddPeer(4, joiner.addr()); err != nil {
		t.Fatal(err)
	}
	stranger.tr.Send([]raftpb.Message{{Type: raftpb.MsgHeartbeat, From: 9, To: 4, Term: 3}})
	waitFor(t, "stranger refused", func() bool { return joiner.log.count("unknown") > 0 })
}

// TestInitialPeersAcceptedAtOnce shows that peers given in Config.Peers are
// known before the first connection is accepted: a sender that reaches a
// freshly started member is not refused as an unknown sender.
func TestInitialPeersAcceptedAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	senderAddr := ln.Addr().String()
	ln.Close()
	sender := newMember(t, 1, senderAddr, nil)
	fresh := newMember(t, 2, "", func(c *Config) { c.Peers = map[raftpb.NodeID]string{1: senderAddr} })
	if err := sender.tr.AddPeer(2, fresh.addr()); err != nil {
		t.Fatal(err)
	}
	sender.tr.Send([]raftpb.Message{{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Term: 1}})
	if m := recvMsg(t, fresh); m.From != 1 {
		t.Fatalf("got %v", m)
	}
	// Only the fresh member's own refusals count: its first dial to the
	// sender may be refused by the sender, which has not added it yet.
	if n := fresh.log.count("refused connection: unknown"); n != 0 {
		t.Fatalf("%d refusals of a configured peer", n)
	}
}
