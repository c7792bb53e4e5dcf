package transport

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raftpb"
)

// rawFrame builds a frame header claiming length n with the given checksum.
func rawFrame(n, sum uint32, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, n)
	b = binary.BigEndian.AppendUint32(b, sum)
	return append(b, payload...)
}

func goodFrame(payload []byte) []byte {
	return rawFrame(uint32(len(payload)), crc32.Checksum(payload, crcTable), payload)
}

func msgFrame(m raftpb.Message) []byte { return appendMessageFrame(nil, &m) }

func hsBytes(mut func(*handshake)) []byte {
	hs := handshake{Version: protocolVersion, Kind: streamMessages, ClusterID: testCluster, From: 3, To: 2}
	if mut != nil {
		mut(&hs)
	}
	return appendHandshake(nil, hs)
}

// expectClosed reads c until the transport closes it; a timeout means the
// transport kept a connection it should have dropped. It returns what was
// read before the close.
func expectClosed(t *testing.T, c net.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection not closed by the transport")
	}
	return got
}

// Traffic that does not belong is refused, each connection closed on its
// own with a log line, while the legitimate peer keeps being served.
func TestRefusedTraffic(t *testing.T) {
	a := newMember(t, 1, "", nil)
	b := newMember(t, 2, "", func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	connect(t, a, b)
	if err := b.tr.AddPeer(3, reserveAddr(t)); err != nil { // known, impersonated below
		t.Fatal(err)
	}
	refusal := func(s ackStatus) []byte { return appendAck(nil, s) }
	cases := []struct {
		name    string
		send    []byte
		closeW  bool   // half-close after sending, as a truncating sender would
		wantAck []byte // expected reply before the close
		wantLog string
	}{
		{"other cluster", hsBytes(func(h *handshake) { h.ClusterID = 99 }), false, refusal(ackClusterMismatch), "cluster id mismatch"},
		{"unknown sender", hsBytes(func(h *handshake) { h.From = 42 }), false, refusal(ackUnknownSender), "unknown sender id"},
		{"self as sender", hsBytes(func(h *handshake) { h.From = 2 }), false, refusal(ackUnknownSender), "unknown sender id"},
		{"wrong receiver", hsBytes(func(h *handshake) { h.To = 5 }), false, refusal(ackWrongReceiver), "wrong receiver id"},
		{"future version", hsBytes(func(h *handshake) { h.Version = 9 }), false, refusal(ackBadVersion), "unsupported protocol version"},
		{"unknown kind", hsBytes(func(h *handshake) { h.Kind = 7 }), false, refusal(ackBadKind), "unknown stream kind"},
		{"random bytes", randomBytes(4096), false, nil, "bad handshake"},
		{"truncated handshake", hsBytes(nil)[:20], true, nil, "bad handshake"},
		{"silent client", nil, false, nil, "bad handshake"},
		{"truncated frame", append(hsBytes(nil), rawFrame(100, 0, randomBytes(10))...), true, refusal(ackOK), "truncated frame"},
		{"oversized length", append(hsBytes(nil), rawFrame(0xFFFFFFF0, 0, nil)...), false, refusal(ackOK), "frame too large"},
		{"length over limit", append(hsBytes(nil), rawFrame(DefaultMaxFrameBytes+1, 0, nil)...), false, refusal(ackOK), "frame too large"},
		{"bad checksum", append(hsBytes(nil), rawFrame(4, 12345, []byte("abcd"))...), false, refusal(ackOK), "checksum mismatch"},
		{"undecodable payload", append(hsBytes(nil), goodFrame([]byte{1, 200, 3})...), false, refusal(ackOK), "decode message"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			refusedBefore, logsBefore := b.tr.Stats().RefusedConns, b.log.count(tc.wantLog)
			c, err := net.Dial("tcp", b.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if tc.closeW {
				c.(*net.TCPConn).CloseWrite()
			}
			got := expectClosed(t, c)
			if string(got) != string(tc.wantAck) {
				t.Fatalf("reply %q, want %q", got, tc.wantAck)
			}
			waitFor(t, "log line "+tc.wantLog, func() bool { return b.log.count(tc.wantLog) > logsBefore })
			if tc.wantAck == nil || tc.wantAck[5] != byte(ackOK) {
				if b.tr.Stats().RefusedConns <= refusedBefore {
					t.Fatal("refusal not counted")
				}
			}
			expectFlow(t, a, b, uint64(i))
		})
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{42})
	r.Read(b)
	return b
}

// A message whose From differs from the handshake's sender, or whose To is
// another member, is dropped; the stream stays open for the next one.
func TestMisfitMessagesDropped(t *testing.T) {
	b := newMember(t, 2, "", nil)
	if err := b.tr.AddPeer(3, reserveAddr(t)); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", b.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out []byte
	out = append(out, hsBytes(nil)...)
	out = append(out, msgFrame(heartbeat(1, 2, 666))...) // impersonates member 1
	out = append(out, msgFrame(heartbeat(3, 5, 667))...) // for someone else
	out = append(out, msgFrame(raftpb.Message{Type: raftpb.MsgInstallSnapshot, From: 3, To: 2,
		Snapshot: &raftpb.SnapshotMeta{Index: 1}})...) // snapshots have their own stream
	out = append(out, msgFrame(heartbeat(3, 2, 668))...)
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	if m := recvMsg(t, b); m.From != 3 || m.Commit != 668 {
		t.Fatalf("delivered %v, want only the well-formed heartbeat from 3", m)
	}
	if n := b.log.count("dropped message"); n != 3 {
		t.Fatalf("%d drop log lines, want 3", n)
	}
	if got := b.tr.Stats().Peers[3].Received; got != 1 {
		t.Fatalf("received count %d, want 1", got)
	}
}

// A member unknown to the receiver is refused, and the refused side logs
// why and reports the peer unreachable.
func TestUnknownMemberRefusedBothSidesLog(t *testing.T) {
	b := newMember(t, 2, "", nil)
	c := newMember(t, 4, "", nil)
	if err := c.tr.AddPeer(2, b.addr()); err != nil {
		t.Fatal(err)
	}
	c.tr.Send([]raftpb.Message{heartbeat(4, 2, 1)})
	select {
	case id := <-c.rec.unreachable:
		if id != 2 {
			t.Fatalf("unreachable %d", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("refused sender never reported the peer unreachable")
	}
	waitFor(t, "refusal logged by both", func() bool {
		return b.log.count("unknown sender id") > 0 && c.log.count("refused by peer: unknown sender id") > 0
	})
	select {
	case m := <-b.rec.msgs:
		t.Fatalf("message from an unknown member delivered: %v", m)
	default:
	}
}

// Connections beyond MaxInboundConns are closed at once.
func TestMaxInboundConns(t *testing.T) {
	b := newMember(t, 2, "", func(c *Config) { c.MaxInboundConns = 2 })
	for range 2 {
		c, err := net.Dial("tcp", b.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitFor(t, "two inbound connections", func() bool { return b.tr.Stats().InboundConns == 2 })
	c, err := net.Dial("tcp", b.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expectClosed(t, c)
	if b.log.count("MaxInboundConns") == 0 {
		t.Fatal("no log line for the refused connection")
	}
}
