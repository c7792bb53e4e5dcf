package transport

import (
	"bytes"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raftpb"
)

// entryData is the deterministic payload of entry seq from -> to, so that
// the receiver can check it without shared state. Sizes vary from empty to
// 100 KB to cross the bufio and read-step boundaries.
func entryData(from, to raftpb.NodeID, seq uint64) []byte {
	sizes := [...]int{0, 1, 17, 256, 4 << 10, 70 << 10, 100 << 10}
	n := sizes[seq%uint64(len(sizes))]
	off := (uint64(from)*31 + uint64(to)*7 + seq*13) % uint64(len(entryPattern)-n)
	return append([]byte(nil), entryPattern[off:off+uint64(n)]...)
}

var entryPattern = randomBytes(256 << 10)

func appendMsg(from, to raftpb.NodeID, seq uint64) raftpb.Message {
	return raftpb.Message{
		Type: raftpb.MsgAppendEntries, From: from, To: to, Term: 3, Index: raftpb.Index(seq), LogTerm: 2,
		Commit:  raftpb.Index(seq / 2),
		Entries: []raftpb.Entry{{Term: 3, Index: raftpb.Index(seq + 1), Data: entryData(from, to, seq)}},
		Context: []byte("ctx"),
	}
}

// Three members exchange messages with entries over loopback: every entry
// arrives intact and, per sender, in the order it was sent.
func TestExchangeThreeMembers(t *testing.T) {
	ms := []*member{newMember(t, 1, "", nil), newMember(t, 2, "", nil), newMember(t, 3, "", nil)}
	connect(t, ms...)
	const perPeer = 300
	for _, a := range ms {
		go func() {
			seq := uint64(0)
			for seq < perPeer {
				var batch []raftpb.Message
				for k := 0; k < int(seq%7)+1 && seq < perPeer; k++ {
					for _, b := range ms {
						if b != a {
							batch = append(batch, appendMsg(a.id, b.id, seq))
						}
					}
					seq++
				}
				a.tr.Send(batch)
			}
		}()
	}
	for _, b := range ms {
		next := map[raftpb.NodeID]uint64{}
		for range 2 * perPeer {
			m := recvMsg(t, b)
			want := next[m.From]
			if uint64(m.Index) != want {
				t.Fatalf("member %d: from %d got seq %d, want %d (order broken)", b.id, m.From, m.Index, want)
			}
			if len(m.Entries) != 1 || !bytes.Equal(m.Entries[0].Data, entryData(m.From, b.id, want)) ||
				string(m.Context) != "ctx" || m.Type != raftpb.MsgAppendEntries || m.To != b.id {
				t.Fatalf("member %d: message %d from %d corrupted: %v", b.id, want, m.From, m)
			}
			next[m.From]++
		}
	}
	for _, a := range ms {
		waitFor(t, "sent counts", func() bool { // counted after the flush, which may trail delivery
			for _, s := range a.tr.Stats().Peers {
				if s.Sent != perPeer {
					return false
				}
			}
			return true
		})
		for id, s := range a.tr.Stats().Peers {
			if s.Dropped != 0 || s.Received != perPeer || s.Queued != 0 {
				t.Errorf("member %d peer %d: stats %+v", a.id, id, s)
			}
		}
	}
}

// reserveAddr returns a loopback address nobody listens on (yet).
func reserveAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// A peer that is down: Send returns at once, messages are dropped and
// counted, ReportUnreachable fires; once the peer is up the connection is
// re-established and messages flow.
func TestPeerDownThenUp(t *testing.T) {
	a := newMember(t, 1, "", func(c *Config) { c.SendQueueLen = 64 })
	addrB := reserveAddr(t)
	if err := a.tr.AddPeer(2, addrB); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 20000 {
		a.tr.Send([]raftpb.Message{heartbeat(1, 2, uint64(i))})
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("20000 Sends to a down peer took %v", d)
	}
	select {
	case id := <-a.rec.unreachable:
		if id != 2 {
			t.Fatalf("ReportUnreachable(%d), want 2", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no ReportUnreachable for a down peer")
	}
	s := a.tr.Stats().Peers[2]
	if s.Dropped == 0 || s.Connected || s.Queued > 64 {
		t.Fatalf("stats of down peer: %+v", s)
	}
	b := newMember(t, 2, addrB, nil)
	if err := b.tr.AddPeer(1, a.addr()); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, a, 2)
	expectFlow(t, a, b, 1_000_000)
}

// A peer that accepts but never reads: the writer is cut off after
// WriteTimeout, Send still never blocks, and drops are reported.
func TestStalledPeerDoesNotBlockSend(t *testing.T) {
	a := newMember(t, 1, "", func(c *Config) {
		c.SendQueueLen = 16
		c.WriteTimeout = 200 * time.Millisecond
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stalled := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(stalled)
				return
			}
			var hs [handshakeLen]byte
			c.Read(hs[:])
			c.Write(appendAck(nil, ackOK))
			stalled <- c // never read again
		}
	}()
	defer func() {
		ln.Close()
		for c := range stalled {
			c.Close()
		}
	}()
	if err := a.tr.AddPeer(2, ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, a, 2)
	big := raftpb.Message{Type: raftpb.MsgAppendEntries, From: 1, To: 2,
		Entries: []raftpb.Entry{{Data: make([]byte, 256<<10)}}}
	deadline := time.Now().Add(5 * time.Second)
	for a.tr.Stats().Peers[2].Dropped == 0 && time.Now().Before(deadline) {
		start := time.Now()
		a.tr.Send([]raftpb.Message{big})
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Send blocked for %v on a stalled peer", d)
		}
		time.Sleep(time.Millisecond)
	}
	if a.tr.Stats().Peers[2].Dropped == 0 {
		t.Fatal("nothing dropped for a stalled peer")
	}
	select {
	case <-a.rec.unreachable:
	case <-time.After(10 * time.Second):
		t.Fatal("no ReportUnreachable for a stalled peer")
	}
}

// UpdatePeer moves the stream to the new address.
func TestUpdatePeerRedials(t *testing.T) {
	a, b := newMember(t, 1, "", nil), newMember(t, 2, "", nil)
	connect(t, a, b)
	b2 := newMember(t, 2, "", nil) // the same member, moved
	if err := b2.tr.AddPeer(1, a.addr()); err != nil {
		t.Fatal(err)
	}
	if err := a.tr.UpdatePeer(2, b2.addr()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stream moved to the new address", func() bool {
		return a.tr.Stats().Peers[2].Connected && b2.tr.Stats().InboundConns == 1
	})
	expectFlow(t, a, b2, 7)
	if err := a.tr.UpdatePeer(9, "127.0.0.1:1"); err == nil {
		t.Fatal("UpdatePeer of an unknown peer succeeded")
	}
}

// Adding and removing a peer 100 times, with traffic and against both a
// live and a dead address, leaves no goroutine behind.
func TestPeerChurnLeavesNoGoroutines(t *testing.T) {
	a, c := newMember(t, 1, "", nil), newMember(t, 3, "", nil)
	if err := c.tr.AddPeer(1, a.addr()); err != nil {
		t.Fatal(err)
	}
	dead := reserveAddr(t)
	baseline := runtime.NumGoroutine()
	for i := range 100 {
		addr := c.addr()
		if i%2 == 1 {
			addr = dead
		}
		if err := a.tr.AddPeer(3, addr); err != nil {
			t.Fatal(err)
		}
		a.tr.Send([]raftpb.Message{heartbeat(1, 3, uint64(i))})
		if i%10 == 0 {
			waitFor(t, "message through a fresh peer", func() bool { return a.tr.Stats().Peers[3].Sent == 1 })
		}
		a.tr.RemovePeer(3)
	}
	if err := waitGoroutines(baseline, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// Stop leaves no goroutine, even with streams and a snapshot in flight.
func TestStopLeavesNoGoroutines(t *testing.T) {
	baseline := runtime.NumGoroutine()
	a, b := newMember(t, 1, "", nil), newMember(t, 2, "", nil)
	connect(t, a, b)
	expectFlow(t, a, b, 1)
	a.tr.SendSnapshot(snapMsg(1, 2), newGenReader(1, 1<<30, nil))
	waitFor(t, "snapshot in flight", func() bool { return b.tr.Stats().InboundConns == 2 })
	a.tr.Stop()
	b.tr.Stop()
	a.tr.Stop() // idempotent
	if r := recvSnapReport(t, a); r.ok {
		t.Fatal("a snapshot interrupted by Stop was reported ok")
	}
	if err := waitGoroutines(baseline, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	a.tr.Send([]raftpb.Message{heartbeat(1, 2, 1)}) // after Stop: a no-op
	if err := a.tr.AddPeer(5, "127.0.0.1:1"); err == nil {
		t.Fatal("AddPeer after Stop succeeded")
	}
}

// New checks its configuration.
func TestNewRejectsBadConfig(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rec := newRecorder()
	for i, cfg := range []Config{
		{Listener: ln, Handler: rec},
		{ID: 1, Handler: rec},
		{ID: 1, Listener: ln},
		{ID: 1, Listener: ln, Handler: rec, SendQueueLen: -1},
		{ID: 1, Listener: ln, Handler: rec, BackoffMin: time.Second, BackoffMax: time.Millisecond},
		{ID: 1, Listener: ln, Handler: rec, MaxFrameBytes: 1024, SnapshotChunkBytes: 1024},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("config %d accepted", i)
		}
	}
}

// A message larger than MaxFrameBytes is dropped by the sender, not sent to
// be refused by the receiver; the stream stays up.
func TestOversizedMessageDroppedBySender(t *testing.T) {
	small := func(c *Config) { c.MaxFrameBytes = 4096; c.SnapshotChunkBytes = 1024 }
	a, b := newMember(t, 1, "", small), newMember(t, 2, "", small)
	connect(t, a, b)
	big := raftpb.Message{Type: raftpb.MsgAppendEntries, From: 1, To: 2,
		Entries: []raftpb.Entry{{Data: make([]byte, 8192)}}}
	a.tr.Send([]raftpb.Message{big})
	expectFlow(t, a, b, 2)
	// Sent is counted after the flush, which may trail the delivery.
	waitFor(t, "1 sent", func() bool { return a.tr.Stats().Peers[2].Sent == 1 })
	if s := a.tr.Stats().Peers[2]; s.Dropped != 1 {
		t.Fatalf("stats %+v, want 1 dropped", s)
	}
}

func TestBackoffBounds(t *testing.T) {
	b := backoff{min: 10 * time.Millisecond, max: 80 * time.Millisecond}
	for i := range 20 {
		d := b.next()
		if d < 5*time.Millisecond || d > 80*time.Millisecond {
			t.Fatalf("step %d: %v outside [min/2, max]", i, d)
		}
	}
	if b.cur != 80*time.Millisecond {
		t.Fatalf("backoff did not reach max: %v", b.cur)
	}
}

func TestHandshakeRoundTrip(t *testing.T) {
	hs := handshake{Version: protocolVersion, Kind: streamSnapshot, ClusterID: 1<<63 + 5, From: 7, To: 1<<64 - 1,
		Addr: "10.1.2.3:7001"}
	b := appendHandshake(nil, hs)
	if want := handshakeLen + len(hs.Addr) + 4; len(b) != want {
		t.Fatalf("handshake is %d bytes, want %d", len(b), want)
	}
	got, err := readHandshake(bytes.NewReader(b))
	if err != nil || got != hs {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	b[10] ^= 1
	if _, err := readHandshake(bytes.NewReader(b)); err == nil {
		t.Fatal("corrupted handshake accepted")
	}
}

// The log limiter lets one line per reason through per interval and counts
// what it held back.
func TestLogLimiter(t *testing.T) {
	l := logLimiter{every: time.Hour}
	if ok, _ := l.allow("a"); !ok {
		t.Fatal("first line held back")
	}
	for range 3 {
		if ok, _ := l.allow("a"); ok {
			t.Fatal("repeated line let through")
		}
	}
	if ok, _ := l.allow("b"); !ok {
		t.Fatal("another reason held back")
	}
	l.keys["a"].last = time.Now().Add(-2 * time.Hour)
	if ok, n := l.allow("a"); !ok || n != 3 {
		t.Fatalf("after the interval: ok=%v suppressed=%d, want true 3", ok, n)
	}
}

// Send drops, and counts, what it must not carry: local message types,
// InstallSnapshot without its data, a foreign From; a message for an
// unknown peer is reported unreachable.
func TestSendDropsWhatItCannotCarry(t *testing.T) {
	a, b := newMember(t, 1, "", nil), newMember(t, 2, "", nil)
	connect(t, a, b)
	a.tr.Send([]raftpb.Message{
		{Type: raftpb.MsgUnreachable, From: 1, To: 2},
		{Type: raftpb.MsgNone, From: 1, To: 2},
		snapMsg(1, 2),
		heartbeat(3, 2, 5),
		heartbeat(1, 9, 6),
	})
	expectFlow(t, a, b, 7)
	if s := a.tr.Stats().Peers[2]; s.Dropped != 4 {
		t.Fatalf("dropped %d, want 4", s.Dropped)
	}
	// Peer 2 may have been reported while connect ran: a's first dial can
	// reach b before b has added a, and b refuses an unknown sender; a
	// then reports 2 and redials. Any other peer is wrong.
	timeout := time.After(10 * time.Second)
	for {
		select {
		case id := <-a.rec.unreachable:
			switch id {
			case 9:
				return
			case 2:
				continue
			}
			t.Fatalf("unreachable %d, want 9", id)
		case <-timeout:
			t.Fatal("unknown peer not reported unreachable")
		}
	}
}
