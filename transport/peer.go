package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/raftkv/raftkv/internal/stagetrace"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/raftpb"
)

const (
	// writeBufferBytes is the bufio buffer of an outbound stream: a batch
	// of small messages leaves in few syscalls.
	writeBufferBytes = 64 << 10
	// scratchKeepBytes caps the encoding buffer a writer keeps between
	// messages, so one huge message does not pin its size forever.
	scratchKeepBytes = 1 << 20
)

var (
	errAddressChanged = errors.New("transport: peer address changed")
	errUnexpectedData = errors.New("transport: unexpected data from receiver")
)

// peer is the sending side towards one member: a bounded queue and the
// writer goroutine (run) that owns the outbound message connection.
type peer struct {
	t      *Transport
	id     raftpb.NodeID
	queue  sendQueue
	ctx    context.Context // ends at RemovePeer or Stop
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	redial chan struct{} // capacity 1: the address changed

	mu   sync.Mutex
	addr string

	sent, dropped, received atomic.Uint64
	connected               atomic.Bool
	snapshotBusy            atomic.Bool // at most one snapshot in flight

	scratch []byte // owned by run: the frame being encoded
}

func newPeer(t *Transport, id raftpb.NodeID, addr string) *peer {
	p := &peer{
		t:      t,
		id:     id,
		addr:   addr,
		done:   make(chan struct{}),
		redial: make(chan struct{}, 1),
	}
	p.queue.init(t.cfg.SendQueueLen)
	p.ctx, p.cancel = context.WithCancel(t.ctx)
	return p
}

func (p *peer) address() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

func (p *peer) setAddr(addr string) {
	p.mu.Lock()
	changed := p.addr != addr
	p.addr = addr
	p.mu.Unlock()
	if changed {
		select {
		case p.redial <- struct{}{}:
		default:
		}
	}
}

func (p *peer) stats() PeerStats {
	return PeerStats{
		Addr:             p.address(),
		Queued:           p.queue.len(),
		Sent:             p.sent.Load(),
		Dropped:          p.dropped.Load(),
		Received:         p.received.Load(),
		Connected:        p.connected.Load(),
		SnapshotInFlight: p.snapshotBusy.Load(),
	}
}

// run connects, streams, and reconnects with backoff until the peer is
// removed or the transport stops.
func (p *peer) run() {
	defer p.t.wg.Done()
	defer close(p.done)
	bo := backoff{min: p.t.cfg.BackoffMin, max: p.t.cfg.BackoffMax}
	for p.ctx.Err() == nil {
		conn, err := p.connect(streamMessages)
		if err == nil {
			bo.reset()
			p.connected.Store(true)
			err = p.stream(conn)
			p.connected.Store(false)
		}
		if p.ctx.Err() != nil {
			return
		}
		if errors.Is(err, errAddressChanged) {
			continue // redial at once: nothing failed
		}
		p.t.warnLimited("transport: peer unreachable", slog.Uint64("peer", uint64(p.id)), slog.Any("err", err))
		p.dropQueued()
		p.t.reports.reportUnreachable(p.id)
		if closedByPeer(err) {
			p.t.reports.reportClosed(p.id)
		}
		if !p.waitBackoff(bo.next()) {
			return
		}
	}
}

// closedByPeer reports whether err says the other end closed the
// connection (end of stream, reset, a broken pipe) or refused a new one,
// as the kernel does for a process that died; a timeout does not.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}

// connect dials the peer and completes the transport handshake.
func (p *peer) connect(kind streamKind) (net.Conn, error) {
	addr := p.address()
	ctx, cancel := context.WithTimeout(p.ctx, p.t.cfg.DialTimeout+p.t.cfg.HandshakeTimeout)
	defer cancel()
	conn, err := p.t.dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %d at %s: %w", p.id, addr, err)
	}
	// Closing the connection is the only way to abandon a blocked read.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	err = p.handshake(conn, kind)
	if !stop() || err != nil {
		conn.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("transport: handshake with %d at %s: %w", p.id, addr, err)
	}
	return conn, nil
}

func (p *peer) handshake(conn net.Conn, kind streamKind) error {
	cfg := &p.t.cfg
	if err := conn.SetDeadline(time.Now().Add(cfg.HandshakeTimeout)); err != nil {
		return err
	}
	hs := handshake{Version: protocolVersion, Kind: kind, ClusterID: p.t.clusterID.Load(), From: cfg.ID, To: p.id,
		Addr: cfg.AdvertiseAddr}
	if _, err := conn.Write(appendHandshake(nil, hs)); err != nil {
		return err
	}
	status, err := readAck(conn)
	if err != nil {
		return err
	}
	if status != ackOK {
		return fmt.Errorf("%w: %s", ErrRefused, status)
	}
	return conn.SetDeadline(time.Time{})
}

// stream writes queued messages to conn, one flush per batch, until conn
// fails, the address changes, or the peer ends.
func (p *peer) stream(conn net.Conn) error {
	stop := context.AfterFunc(p.ctx, func() { conn.Close() })
	defer stop()
	watchDone := make(chan struct{})
	var watchErr error
	go func() {
		defer close(watchDone)
		watchErr = watch(conn)
	}()
	defer func() {
		conn.Close()
		<-watchDone
	}()
	bw := bufio.NewWriterSize(conn, writeBufferBytes)
	var batch []raftpb.Message
	for {
		select {
		case <-p.ctx.Done():
			return p.ctx.Err()
		case <-p.redial:
			return errAddressChanged
		case <-watchDone:
			return fmt.Errorf("transport: connection to %d closed by peer: %w", p.id, watchErr)
		case <-p.queue.ready:
		}
		select {
		case <-p.redial: // what is queued is for the new address
			return errAddressChanged
		default:
		}
		batch = p.queue.swap(batch)
		err := p.writeBatch(conn, bw, batch)
		clear(batch) // let the entries go
		if err != nil {
			return fmt.Errorf("transport: write to %d: %w", p.id, err)
		}
	}
}

// watch reads the outbound connection, on which the receiver never writes
// after its ack, so that a close by the peer is noticed while idle rather
// than on the next write.
func watch(conn net.Conn) error {
	var b [1]byte
	if _, err := conn.Read(b[:]); err != nil {
		return err
	}
	return errUnexpectedData
}

// writeBatch coalesces batch (coalesce), encodes it into the buffered
// writer and flushes once. On error every message of the batch counts as
// dropped: which of them reached the peer is unknowable. A message joined
// into another counts as sent or dropped with it.
func (p *peer) writeBatch(conn net.Conn, bw *bufio.Writer, batch []raftpb.Message) error {
	if len(batch) == 0 {
		return nil
	}
	if err := conn.SetWriteDeadline(time.Now().Add(p.t.cfg.WriteTimeout)); err != nil {
		p.dropped.Add(uint64(len(batch)))
		return err
	}
	n := len(batch)
	batch = coalesce(batch)
	joined := n - len(batch)
	if stagetrace.Enabled {
		markSent(batch)
	}
	written := 0
	for i := range batch {
		p.scratch = appendMessageFrame(p.scratch[:0], &batch[i])
		if len(p.scratch)-frameHeaderLen > p.t.cfg.MaxFrameBytes {
			p.dropped.Add(1)
			p.t.warnLimited("transport: dropped message larger than MaxFrameBytes", slog.Uint64("to", uint64(p.id)),
				slog.Int("bytes", len(p.scratch)), slog.Int("limit", p.t.cfg.MaxFrameBytes))
			continue
		}
		if _, err := bw.Write(p.scratch); err != nil {
			p.dropped.Add(uint64(len(batch) - i + written + joined))
			return err
		}
		written++
	}
	if cap(p.scratch) > scratchKeepBytes {
		p.scratch = nil
	}
	if err := bw.Flush(); err != nil {
		p.dropped.Add(uint64(written + joined))
		return err
	}
	p.sent.Add(uint64(written + joined))
	return nil
}

// markSent marks the AppendEntries and acknowledgements about to be
// written: before the write, since the receiver may read them before the
// writer's system call returns.
func markSent(batch []raftpb.Message) {
	for i := range batch {
		m := &batch[i]
		switch {
		case m.Type == raftpb.MsgAppendEntries && len(m.Entries) > 0:
			stagetrace.Mark(stagetrace.AppendSent, uint64(m.Entries[len(m.Entries)-1].Index), uint64(m.To))
		case isAppendAck(m):
			stagetrace.Mark(stagetrace.AckSent, uint64(m.Index), uint64(m.To))
		}
	}
}

// dropQueued discards what waits for a peer that cannot be reached: it
// would be stale by the time the peer is back, and Raft resends.
func (p *peer) dropQueued() {
	batch := p.queue.swap(nil)
	if len(batch) > 0 {
		p.dropped.Add(uint64(len(batch)))
		p.t.reports.reportUnreachable(p.id)
	}
}

// waitBackoff sleeps for d while dropping whatever is sent meanwhile. It
// returns early on an address change and false when the peer ends.
func (p *peer) waitBackoff(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-p.redial:
			return true
		case <-p.queue.ready:
			p.dropQueued()
		}
	}
}

// backoff doubles from min to max; next adds jitter so that members that
// lost a peer together do not redial in lockstep.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) reset() { b.cur = 0 }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	half := b.cur / 2
	return half + rand.N(half+1)
}

// sendQueue is a bounded FIFO filled by Send and emptied a whole batch at
// a time by the writer, which swaps in its spare slice so that neither side
// allocates in the steady state.
type sendQueue struct {
	mu    sync.Mutex
	msgs  []raftpb.Message
	limit int
	ready chan struct{} // capacity 1: something was pushed since the last swap
}

func (q *sendQueue) init(limit int) {
	q.limit = limit
	q.ready = make(chan struct{}, 1)
}

// push appends m unless the queue is full.
func (q *sendQueue) push(m raftpb.Message) bool {
	q.mu.Lock()
	if len(q.msgs) >= q.limit {
		q.mu.Unlock()
		return false
	}
	q.msgs = append(q.msgs, m)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// swap returns everything queued and keeps spare (emptied) for the next
// pushes.
func (q *sendQueue) swap(spare []raftpb.Message) []raftpb.Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.msgs
	q.msgs = spare[:0]
	return out
}

func (q *sendQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.msgs)
}
