package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/raftkv/raftkv/internal/rawio"
	"github.com/raftkv/raftkv/raftpb"
)

// Transport connects one Raft member to its peers. See the package
// documentation for its goroutines and invariants.
type Transport struct {
	cfg       Config // defaults applied; read-only after New
	clusterID atomic.Uint64
	// acceptUnknown: see Config.AcceptUnknown.
	acceptUnknown atomic.Bool
	tlsServer     *tls.Config
	tlsClient     *tls.Config
	log           *slog.Logger
	reports       *reporter
	limiter       logLimiter

	ctx    context.Context // ends at Stop
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the transport starts

	mu      sync.RWMutex
	stopped bool
	peers   map[raftpb.NodeID]*peer
	inbound map[*inboundConn]struct{}
	streams map[streamKey]*inboundConn // the newest stream per sender and kind

	refused  atomic.Uint64
	stopOnce sync.Once
}

// PeerStats describes the traffic to and from one peer.
type PeerStats struct {
	Addr string
	// Queued messages wait for the writer; Sent were flushed to the
	// connection; Dropped were discarded (queue full, connection down, or
	// too large); Received arrived from the peer and reached the Handler.
	Queued   int
	Sent     uint64
	Dropped  uint64
	Received uint64
	// Connected: the outbound message stream is established.
	Connected bool
	// Hearing: the peer's message stream to this member is open. A peer
	// that stopped closes it at once, while Connected may stay true until
	// the next write fails.
	Hearing          bool
	SnapshotInFlight bool
}

// Stats is a point-in-time view of a Transport.
type Stats struct {
	Peers map[raftpb.NodeID]PeerStats
	// InboundConns counts accepted connections still open.
	InboundConns int
	// RefusedConns counts inbound connections closed for a bad handshake,
	// bad TLS, or the MaxInboundConns limit.
	RefusedConns uint64
}

// New starts a transport accepting on cfg.Listener. It owns the listener
// from now on and closes it on Stop.
func New(cfg Config) (*Transport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	t := &Transport{
		cfg:       cfg,
		tlsServer: serverTLS(cfg.TLS),
		tlsClient: clientTLS(cfg.TLS),
		log:       cfg.Logger.With(slog.String("component", "transport"), slog.Uint64("id", uint64(cfg.ID))),
		reports:   newReporter(),
		limiter:   logLimiter{every: logEvery},
		peers:     make(map[raftpb.NodeID]*peer),
		inbound:   make(map[*inboundConn]struct{}),
		streams:   make(map[streamKey]*inboundConn),
	}
	t.clusterID.Store(cfg.ClusterID)
	t.acceptUnknown.Store(cfg.AcceptUnknown)
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.wg.Add(2)
	go func() {
		defer t.wg.Done()
		t.reports.run(t.ctx, cfg.Handler)
	}()
	// Known peers are in place before the first connection is accepted, so
	// a restarted member does not refuse them as unknown senders (they
	// would back off for seconds before trying again).
	for _, id := range slices.Sorted(maps.Keys(cfg.Peers)) {
		if err := t.AddPeer(id, cfg.Peers[id]); err != nil {
			t.log.Warn("transport: initial peer not added", slog.Uint64("peer", uint64(id)), slog.Any("err", err))
		}
	}
	go t.acceptLoop()
	return t, nil
}

// SetAcceptUnknown turns acceptance of unknown senders on or off.
func (t *Transport) SetAcceptUnknown(on bool) { t.acceptUnknown.Store(on) }

// ClusterID returns the cluster id in force (0 while a joining member has
// not heard one).
func (t *Transport) ClusterID() uint64 { return t.clusterID.Load() }

// Addr is the address the transport accepts on.
func (t *Transport) Addr() net.Addr { return t.cfg.Listener.Addr() }

// AddPeer starts sending to id at addr. Adding a known peer updates its
// address, so replaying a configuration change is harmless.
func (t *Transport) AddPeer(id raftpb.NodeID, addr string) error {
	if id == raftpb.None || id == t.cfg.ID {
		return fmt.Errorf("transport: add peer %d: not a valid peer id", id)
	}
	if addr == "" {
		return fmt.Errorf("transport: add peer %d: empty address", id)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return fmt.Errorf("transport: add peer %d: %w", id, ErrStopped)
	}
	if p := t.peers[id]; p != nil {
		p.setAddr(addr)
		return nil
	}
	p := newPeer(t, id, addr)
	t.peers[id] = p
	t.wg.Add(1)
	go p.run()
	return nil
}

// UpdatePeer moves a known peer to a new address; its connection is
// re-established there.
func (t *Transport) UpdatePeer(id raftpb.NodeID, addr string) error {
	if addr == "" {
		return fmt.Errorf("transport: update peer %d: empty address", id)
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.stopped {
		return fmt.Errorf("transport: update peer %d: %w", id, ErrStopped)
	}
	p := t.peers[id]
	if p == nil {
		return fmt.Errorf("transport: update peer %d: %w", id, ErrUnknownPeer)
	}
	p.setAddr(addr)
	return nil
}

// RemovePeer stops sending to id, drops what is queued for it, closes its
// connections in both directions, and refuses it from now on. It returns
// once the peer's writer has exited; an in-flight snapshot to it is
// interrupted and reported failed from its own goroutine.
func (t *Transport) RemovePeer(id raftpb.NodeID) {
	t.mu.Lock()
	p := t.peers[id]
	delete(t.peers, id)
	for ic := range t.inbound {
		if ic.from == id {
			ic.conn.Close()
		}
	}
	t.mu.Unlock()
	if p == nil {
		return
	}
	p.cancel()
	<-p.done
}

// Send queues each message for its peer and never blocks. A message that
// cannot be queued (unknown peer, full queue) is dropped and counted, and
// ReportUnreachable follows. Entries and Context must not be modified after
// the call: they are encoded later by the peer's writer.
func (t *Transport) Send(msgs []raftpb.Message) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.stopped {
		return
	}
	for i := range msgs {
		m := &msgs[i]
		p := t.peers[m.To]
		switch {
		case p == nil:
			t.warnLimited("transport: dropped message for unknown peer", slog.Uint64("to", uint64(m.To)),
				slog.String("type", m.Type.String()))
			if m.To != raftpb.None && m.To != t.cfg.ID {
				t.reports.reportUnreachable(m.To)
			}
		case !m.Type.Valid() || m.Type.IsLocal() || m.Type == raftpb.MsgInstallSnapshot || m.From != t.cfg.ID:
			// InstallSnapshot needs its data beside it: SendSnapshot. A
			// foreign From would be dropped by the receiver anyway.
			p.dropped.Add(1)
			t.warnLimited("transport: dropped message Send does not carry", slog.String("msg", m.String()))
		case !p.queue.push(*m):
			p.dropped.Add(1)
			t.reports.reportUnreachable(p.id)
		}
	}
}

// Stop closes the listener and every connection, drops queued messages,
// interrupts snapshot transfers (reporting them failed), and returns once
// every goroutine of the transport has exited. It is idempotent.
func (t *Transport) Stop() {
	t.stopOnce.Do(func() {
		t.mu.Lock()
		t.stopped = true
		for ic := range t.inbound {
			ic.conn.Close()
		}
		t.mu.Unlock()
		t.cancel()
		t.cfg.Listener.Close()
		t.wg.Wait()
	})
}

// Stats returns counters per peer and for inbound connections.
func (t *Transport) Stats() Stats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := Stats{
		Peers:        make(map[raftpb.NodeID]PeerStats, len(t.peers)),
		InboundConns: len(t.inbound),
		RefusedConns: t.refused.Load(),
	}
	for id, p := range t.peers {
		ps := p.stats()
		ps.Hearing = t.streams[streamKey{id, streamMessages}] != nil
		s.Peers[id] = ps
	}
	return s
}

// dial opens a connection to addr, through TLS when configured; the TLS
// handshake is part of the dial.
func (t *Transport) dial(ctx context.Context, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: t.cfg.DialTimeout}
	if t.tlsClient == nil {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return rawio.Wrap(c), nil
	}
	td := &tls.Dialer{NetDialer: d, Config: t.tlsClient}
	return td.DialContext(ctx, "tcp", addr)
}
