package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/raftkv/raftkv/internal/rawio"
	"github.com/raftkv/raftkv/internal/stagetrace"
	"github.com/raftkv/raftkv/raftpb"
)

const (
	// readBufferBytes is the bufio buffer of an inbound stream.
	readBufferBytes = 64 << 10
	// acceptBackoffMin and acceptBackoffMax bound the pause after a failed
	// Accept (usually: out of file descriptors).
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// inboundConn is one accepted connection. from and kind are set, under
// Transport.mu, once its handshake is accepted.
type inboundConn struct {
	conn   net.Conn // the raw connection: closing it interrupts any read
	remote string
	from   raftpb.NodeID
	kind   streamKind
	peer   *peer // the sender's counters
}

type streamKey struct {
	from raftpb.NodeID
	kind streamKind
}

// acceptLoop accepts until the listener is closed by Stop.
func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	bo := backoff{min: acceptBackoffMin, max: acceptBackoffMax}
	for {
		c, err := t.cfg.Listener.Accept()
		if err != nil {
			if t.ctx.Err() != nil {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				t.log.Error("transport: listener closed; no longer accepting", slog.Any("err", err))
				return
			}
			// Wait for descriptors to be released rather than spin.
			t.warnLimited("transport: accept failed", slog.Any("err", err))
			if !sleepCtx(t.ctx, bo.next()) {
				return
			}
			continue
		}
		bo.reset()
		ic := &inboundConn{conn: c, remote: c.RemoteAddr().String()}
		if !t.track(ic) {
			c.Close()
			continue
		}
		go t.serve(ic)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// track registers an accepted connection and accounts for its goroutine,
// unless the transport stopped or MaxInboundConns is reached.
func (t *Transport) track(ic *inboundConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	if len(t.inbound) >= t.cfg.MaxInboundConns {
		t.refused.Add(1)
		t.warnLimited("transport: refused connection: MaxInboundConns reached",
			slog.String("remote", ic.remote), slog.Int("limit", t.cfg.MaxInboundConns))
		return false
	}
	t.inbound[ic] = struct{}{}
	t.wg.Add(1)
	return true
}

func (t *Transport) untrack(ic *inboundConn) {
	t.mu.Lock()
	delete(t.inbound, ic)
	key := streamKey{ic.from, ic.kind}
	if t.streams[key] == ic {
		delete(t.streams, key)
	}
	t.mu.Unlock()
	ic.conn.Close()
}

// serve runs one accepted connection: TLS, handshake, then its stream.
func (t *Transport) serve(ic *inboundConn) {
	defer t.wg.Done()
	defer t.untrack(ic)
	stop := context.AfterFunc(t.ctx, func() { ic.conn.Close() })
	defer stop()
	conn, err := t.secure(rawio.Wrap(ic.conn))
	if err != nil {
		t.refuse(ic, "transport: refused connection: TLS handshake failed", slog.Any("err", err))
		return
	}
	br := bufio.NewReaderSize(conn, readBufferBytes)
	hs, ok := t.acceptHandshake(ic, conn, br)
	if !ok || !t.register(ic, hs) {
		return
	}
	switch hs.Kind {
	case streamMessages:
		t.receiveMessages(ic, br)
	case streamSnapshot:
		t.receiveSnapshot(ic, conn, br)
	}
}

// secure runs the server side of TLS when configured.
func (t *Transport) secure(c net.Conn) (net.Conn, error) {
	if t.tlsServer == nil {
		return c, nil
	}
	tc := tls.Server(c, t.tlsServer)
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return tc, nil
}

// acceptHandshake reads the handshake, checks it, and answers. Garbage gets
// no answer; a well-formed but unacceptable handshake is told why, because
// "cluster id mismatch" in the other member's log saves an operator hours.
func (t *Transport) acceptHandshake(ic *inboundConn, conn net.Conn, br *bufio.Reader) (handshake, bool) {
	if err := conn.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout)); err != nil {
		return handshake{}, false
	}
	hs, err := readHandshake(br)
	if err != nil {
		t.refuse(ic, "transport: refused connection: bad handshake", slog.Any("err", err))
		return hs, false
	}
	status := t.verify(hs)
	if _, err := conn.Write(appendAck(nil, status)); err != nil {
		t.refuse(ic, "transport: refused connection: write ack", slog.Any("err", err))
		return hs, false
	}
	if status != ackOK {
		t.refuse(ic, "transport: refused connection: "+status.String(),
			slog.Uint64("cluster", hs.ClusterID), slog.Uint64("from", uint64(hs.From)),
			slog.Uint64("to", uint64(hs.To)), slog.String("kind", hs.Kind.String()))
		return hs, false
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return hs, false
	}
	return hs, true
}

// verify decides whether a handshake may open a stream.
func (t *Transport) verify(hs handshake) ackStatus {
	switch {
	case hs.Version != protocolVersion:
		return ackBadVersion
	case hs.Kind != streamMessages && hs.Kind != streamSnapshot:
		return ackBadKind
	case hs.To != t.cfg.ID:
		return ackWrongReceiver
	case !t.clusterMatches(hs.ClusterID):
		return ackClusterMismatch
	}
	t.mu.RLock()
	known := t.peers[hs.From] != nil
	t.mu.RUnlock()
	if known {
		return ackOK
	}
	if t.acceptUnknown.Load() && hs.From != raftpb.None && hs.From != t.cfg.ID && hs.Addr != "" {
		if err := t.AddPeer(hs.From, hs.Addr); err == nil {
			t.log.Info("transport: added peer that reached us while joining",
				slog.Uint64("peer", uint64(hs.From)), slog.String("addr", hs.Addr))
			return ackOK
		}
	}
	return ackUnknownSender
}

// clusterMatches checks a handshake's cluster id, adopting it when this
// member is joining and has none yet.
func (t *Transport) clusterMatches(id uint64) bool {
	if id == 0 {
		return false
	}
	if t.clusterID.Load() == 0 && t.acceptUnknown.Load() && t.clusterID.CompareAndSwap(0, id) {
		t.log.Info("transport: adopted cluster id", slog.Uint64("cluster", id))
		if t.cfg.OnClusterID != nil {
			t.cfg.OnClusterID(id)
		}
	}
	return t.clusterID.Load() == id
}

// refuse logs (rate-limited) and counts a refused connection; the caller
// closes it. Logged first, so that whoever sees the count can find the line.
func (t *Transport) refuse(ic *inboundConn, msg string, args ...any) {
	t.warnLimited(msg, append(args, slog.String("remote", ic.remote))...)
	t.refused.Add(1)
}

// register makes ic the stream of its sender and kind, closing the one it
// replaces: a sender only redials once it has given up on its previous
// connection, which may linger here half-open. It fails if the sender was
// removed since verify.
func (t *Transport) register(ic *inboundConn, hs handshake) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peers[hs.From]
	if p == nil || t.stopped {
		return false
	}
	ic.from, ic.kind, ic.peer = hs.From, hs.Kind, p
	key := streamKey{hs.From, hs.Kind}
	if old := t.streams[key]; old != nil {
		old.conn.Close()
	}
	t.streams[key] = ic
	return true
}

// receiveMessages hands every message of the stream to the Handler until
// the stream ends or breaks. A frame that does not decode closes the
// stream; a message that does not belong on it is dropped. Each frame gets
// a buffer of its own: the decoded message aliases it and the node keeps
// it, so a reused buffer cannot serve here.
func (t *Transport) receiveMessages(ic *inboundConn, br *bufio.Reader) {
	fr := frameReader{r: br, max: t.cfg.MaxFrameBytes}
	for {
		payload, err := fr.next()
		if err != nil {
			t.streamBroken(ic, err)
			return
		}
		m, err := decodeMessageFrame(payload)
		if err != nil {
			t.streamBroken(ic, err)
			return
		}
		if reason := t.misfit(ic, &m); reason != "" {
			t.warnLimited("transport: dropped message: "+reason, slog.Uint64("peer", uint64(ic.from)),
				slog.String("msg", m.String()))
			continue
		}
		ic.peer.received.Add(1)
		if stagetrace.Enabled {
			markReceived(&m)
		}
		t.cfg.Handler.HandleMessage(m)
	}
}

// markReceived marks an AppendEntries or acknowledgement just read.
func markReceived(m *raftpb.Message) {
	switch {
	case m.Type == raftpb.MsgAppendEntries && len(m.Entries) > 0:
		stagetrace.Mark(stagetrace.AppendReceived, uint64(m.Entries[len(m.Entries)-1].Index), uint64(m.From))
	case isAppendAck(m):
		stagetrace.Mark(stagetrace.AckReceived, uint64(m.Index), uint64(m.From))
	}
}

// misfit says why a decoded message may not be delivered, or "".
func (t *Transport) misfit(ic *inboundConn, m *raftpb.Message) string {
	switch {
	case m.From != ic.from:
		return "sender differs from handshake"
	case m.To != t.cfg.ID:
		return "addressed to another member"
	case m.Type == raftpb.MsgInstallSnapshot:
		return "snapshot on a message stream"
	}
	return ""
}

// streamBroken logs why an inbound stream ended, unless it ended cleanly or
// because this side closed it. The reason is part of the message so that
// rate limiting one kind of failure does not hide another.
func (t *Transport) streamBroken(ic *inboundConn, err error) {
	var reason string
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return
	case errors.Is(err, ErrFrameTooLarge):
		reason = "frame too large"
	case errors.Is(err, errTruncated):
		reason = "truncated frame"
	case errors.Is(err, ErrCorruptFrame):
		reason = "corrupt frame"
	case errors.Is(err, raftpb.ErrCorrupt):
		reason = "undecodable message"
	default:
		reason = "read failed"
	}
	t.warnLimited("transport: closed inbound stream: "+reason, slog.Uint64("peer", uint64(ic.from)),
		slog.String("kind", ic.kind.String()), slog.String("remote", ic.remote), slog.Any("err", err))
}
