package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/raftkv/raftkv/raftpb"
)

// Defaults for the limits in Config. Every queue, frame and wait has a bound;
// a zero field in Config takes the default named here.
const (
	// DefaultSendQueueLen bounds the messages waiting for one peer. Raft
	// retries whatever is dropped, so a short queue costs little and keeps a
	// dead peer from holding memory.
	DefaultSendQueueLen = 4096
	// DefaultMaxFrameBytes bounds one frame on the wire, in both directions.
	DefaultMaxFrameBytes = 64 << 20
	// DefaultDialTimeout bounds one connection attempt.
	DefaultDialTimeout = 5 * time.Second
	// DefaultHandshakeTimeout bounds the TLS and transport handshakes.
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultWriteTimeout bounds one flush of a message batch or one snapshot
	// chunk: a peer that stops reading (SIGSTOP, a full disk) is cut off
	// after this long instead of wedging its writer forever.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultBackoffMin and DefaultBackoffMax bound the wait between
	// reconnection attempts; the wait doubles from min to max, with jitter.
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 5 * time.Second
	// DefaultSnapshotChunkBytes is the payload of one snapshot chunk: the
	// most snapshot data either side holds in memory at once.
	DefaultSnapshotChunkBytes = 1 << 20
	// DefaultSnapshotAckTimeout bounds the wait, after the last chunk, for
	// the receiver to store the snapshot and say whether it accepted it.
	DefaultSnapshotAckTimeout = 60 * time.Second
	// DefaultMaxInboundConns bounds accepted connections, handshaking or
	// established, so that a flood of connections cannot exhaust memory.
	DefaultMaxInboundConns = 256
)

// Handler receives what arrives from peers and hears about delivery
// failures. The transport never calls a Handler method from inside one of
// its own exported methods, so a Handler may call back into the Transport.
// After Stop returns no Handler method is called.
type Handler interface {
	// HandleMessage receives one message from a peer. It must not block for
	// long: it holds up every later message from that peer.
	HandleMessage(m raftpb.Message)
	// HandleSnapshot receives a MsgInstallSnapshot and a reader over the
	// snapshot's bytes, streamed from the sender. It must read data to
	// io.EOF before returning nil (a reader error means the stream broke
	// and the partial data must be discarded). Returning nil tells the
	// sender the snapshot was accepted.
	HandleSnapshot(m raftpb.Message, data io.Reader) error
	// ReportUnreachable says that messages to id were dropped: its queue
	// was full, or its connection is down.
	ReportUnreachable(id raftpb.NodeID)
	// ReportClosed says that the connection to id was closed by the other
	// end (end of stream, reset) or a new one refused: what a member
	// whose process died leaves behind. A partition (timeouts) never
	// reports it; a reset link or a firewall answering with RST may.
	ReportClosed(id raftpb.NodeID)
	// ReportSnapshot says whether a snapshot sent with SendSnapshot was
	// fully received and accepted by id.
	ReportSnapshot(id raftpb.NodeID, ok bool)
}

// Config holds every dependency and limit of a Transport. Zero limits take
// the Default values above.
type Config struct {
	// ID is this member; it must not be zero.
	ID raftpb.NodeID
	// ClusterID is checked on every connection so that members of two
	// clusters never talk even if their addresses get mixed up. Zero is
	// allowed only with AcceptUnknown: the first cluster id heard is adopted
	// and reported to OnClusterID.
	ClusterID uint64
	// AdvertiseAddr is this member's peer address as others should dial
	// it; it is sent in every handshake (at most 255 bytes).
	AdvertiseAddr string
	// AcceptUnknown lets senders that are not peers yet connect, and adds
	// them as peers at the address they advertise: a member joining an
	// existing cluster knows nobody until the leader reaches it. Turn it off
	// with SetAcceptUnknown once the member knows its configuration.
	AcceptUnknown bool
	// OnClusterID is called once when a zero ClusterID is adopted.
	OnClusterID func(id uint64)
	// Listener is already bound; the Transport accepts on it and closes it
	// on Stop.
	Listener net.Listener
	// TLS, when set, secures both directions with mutual TLS: the server
	// side requires and verifies a client certificate (ClientCAs), the
	// dialer presents Certificates and verifies the server with RootCAs.
	TLS *tls.Config
	// Peers are added (as by AddPeer) before the first connection is
	// accepted.
	Peers map[raftpb.NodeID]string
	// Handler receives messages and reports; it must not be nil.
	Handler Handler
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	// Limits: each is described by its Default constant.
	SendQueueLen       int
	MaxFrameBytes      int
	DialTimeout        time.Duration
	HandshakeTimeout   time.Duration
	WriteTimeout       time.Duration
	BackoffMin         time.Duration
	BackoffMax         time.Duration
	SnapshotChunkBytes int
	SnapshotAckTimeout time.Duration
	MaxInboundConns    int
}

// snapshotChunkOverhead is the tag byte in front of each chunk's data.
const snapshotChunkOverhead = 1

// withDefaults returns cfg with zero limits filled in, or an error naming
// the first field that cannot work.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.ID == raftpb.None {
		return cfg, errors.New("transport: config: ID must not be zero")
	}
	if cfg.Listener == nil {
		return cfg, errors.New("transport: config: Listener is nil")
	}
	if cfg.Handler == nil {
		return cfg, errors.New("transport: config: Handler is nil")
	}
	if len(cfg.AdvertiseAddr) > maxAdvertiseAddr {
		return cfg, fmt.Errorf("transport: config: advertised address longer than %d bytes", maxAdvertiseAddr)
	}
	if cfg.ClusterID == 0 && !cfg.AcceptUnknown {
		return cfg, errors.New("transport: config: ClusterID 0 needs AcceptUnknown (a joining member)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	defInt(&cfg.SendQueueLen, DefaultSendQueueLen)
	defInt(&cfg.MaxFrameBytes, DefaultMaxFrameBytes)
	defInt(&cfg.SnapshotChunkBytes, DefaultSnapshotChunkBytes)
	defInt(&cfg.MaxInboundConns, DefaultMaxInboundConns)
	defDur(&cfg.DialTimeout, DefaultDialTimeout)
	defDur(&cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	defDur(&cfg.WriteTimeout, DefaultWriteTimeout)
	defDur(&cfg.BackoffMin, DefaultBackoffMin)
	defDur(&cfg.BackoffMax, DefaultBackoffMax)
	defDur(&cfg.SnapshotAckTimeout, DefaultSnapshotAckTimeout)
	switch {
	case cfg.SendQueueLen < 0, cfg.MaxFrameBytes < 0, cfg.SnapshotChunkBytes < 0, cfg.MaxInboundConns < 0,
		cfg.DialTimeout < 0, cfg.HandshakeTimeout < 0, cfg.WriteTimeout < 0, cfg.BackoffMin < 0,
		cfg.BackoffMax < 0, cfg.SnapshotAckTimeout < 0:
		return cfg, errors.New("transport: config: limits must not be negative")
	case cfg.BackoffMin > cfg.BackoffMax:
		return cfg, fmt.Errorf("transport: config: BackoffMin %v > BackoffMax %v", cfg.BackoffMin, cfg.BackoffMax)
	case cfg.MaxFrameBytes > maxFrameLimit:
		return cfg, fmt.Errorf("transport: config: MaxFrameBytes %d > %d", cfg.MaxFrameBytes, maxFrameLimit)
	case cfg.SnapshotChunkBytes+snapshotChunkOverhead > cfg.MaxFrameBytes:
		return cfg, fmt.Errorf("transport: config: SnapshotChunkBytes %d does not fit MaxFrameBytes %d",
			cfg.SnapshotChunkBytes, cfg.MaxFrameBytes)
	}
	return cfg, nil
}

func defInt(v *int, d int) {
	if *v == 0 {
		*v = d
	}
}

func defDur(v *time.Duration, d time.Duration) {
	if *v == 0 {
		*v = d
	}
}

// serverTLS and clientTLS derive the two sides from the one configuration.
// The server side is raised to require a verified client certificate:
// transport TLS is mutual or it is not worth having, since any host that
// can reach the port could otherwise inject Raft messages.
func serverTLS(c *tls.Config) *tls.Config {
	if c == nil {
		return nil
	}
	s := c.Clone()
	if s.ClientAuth < tls.RequireAndVerifyClientCert {
		s.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return s
}

func clientTLS(c *tls.Config) *tls.Config {
	if c == nil {
		return nil
	}
	return c.Clone()
}
