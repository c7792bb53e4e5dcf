package node

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	pb "github.com/raftkv/raftkv/raftpb"
)

// Config holds every dependency of a Node and its limits. Zero limits take
// the defaults named below.
type Config struct {
	// ID is this member's id; not zero.
	ID pb.NodeID
	// ClusterID is checked on every peer connection.
	ClusterID uint64
	// FSM is the state machine the log is applied to.
	FSM FSM
	// Log and Snapshots are the durable state (see OpenStorage).
	Log       LogStore
	Snapshots SnapshotStore
	// PeerListener is bound to the peer address; the node serves Raft
	// traffic on it and closes it on Stop.
	PeerListener net.Listener
	// TLS, if set, is mutual TLS for peer traffic.
	TLS *tls.Config
	// NewTransport, if set, builds the peer transport instead of the TCP
	// one on PeerListener (NewMemNetwork's, in tests).
	NewTransport func(TransportConfig) (Transport, error)

	// Bootstrap names the initial members (voters) of a new cluster. It is
	// used only when the log is empty; a restarted member recovers from
	// its log and ignores it.
	Bootstrap []Member
	// Join starts an empty member that an existing cluster has added: it
	// waits for the leader to send it the log or a snapshot.
	Join bool
	// Self is this member's own addresses: PeerAddr is advertised to peers
	// (default: the listener's address), ClientAddr published at bootstrap.
	Self Member
	// OnClusterID is called when a joining member (ClusterID 0) learns the
	// cluster id from the first member that reaches it, so it can be saved.
	OnClusterID func(id uint64)

	// TickInterval is the heartbeat interval. Default 100ms.
	TickInterval time.Duration
	// ElectionTimeout is the minimum election timeout; each is drawn from
	// [1x, 2x). Default 1s. Must be at least 2 TickIntervals.
	ElectionTimeout time.Duration
	// SnapshotEntries: a snapshot is taken after this many applied entries.
	// Default 10000. The log is compacted up to the previous snapshot, so
	// between one and two intervals of log stay behind for slow followers.
	SnapshotEntries uint64
	// SnapshotTrailingEntries keeps more log behind the newest snapshot:
	// once a snapshot is durable the log is compacted up to the newest
	// earlier snapshot at least this many entries behind it. A follower
	// that has just installed a snapshot catches up from the log only if
	// the writes during its install fit in what is kept; size it to the
	// write rate times the install time. Default 0: the previous snapshot.
	SnapshotTrailingEntries uint64
	// SnapshotSizeFactor makes a snapshot also wait until the entries
	// applied since the last one hold at least this many times that
	// snapshot's size in bytes, so that writing snapshots costs at most
	// 1/factor of the log's own write volume however large the state is
	// (Raft dissertation §5.1.3). 0 (the default) snapshots on
	// SnapshotEntries alone.
	SnapshotSizeFactor float64
	// ProposalQueueLen bounds proposals waiting for the core. Default 4096.
	ProposalQueueLen int
	// MaxProposalBatch bounds the proposals appended as one batch. Default 1024.
	MaxProposalBatch int
	// ApplyQueueLen bounds batches of committed entries waiting for the
	// state machine. Default 64.
	ApplyQueueLen int
	// MaxOutstandingReadys bounds Readys handed out and not yet persisted.
	// Default 64.
	MaxOutstandingReadys int
	// MaxUncommittedBytes bounds the leader's uncommitted payload. Default 64 MiB.
	MaxUncommittedBytes uint64
	// Seed seeds election jitter; default: derived from the clock and ID.
	Seed uint64
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultTickInterval         = 100 * time.Millisecond
	DefaultElectionTimeout      = time.Second
	DefaultSnapshotEntries      = 10000
	DefaultProposalQueueLen     = 4096
	DefaultMaxProposalBatch     = 1024
	DefaultApplyQueueLen        = 64
	DefaultMaxOutstandingReadys = 64
	DefaultRecvQueueLen         = 8192
)

func (c Config) withDefaults() (Config, error) {
	if c.ID == pb.None {
		return c, errors.New("node: config: ID must not be 0")
	}
	if c.FSM == nil || c.Log == nil || c.Snapshots == nil {
		return c, errors.New("node: config: FSM, Log and Snapshots must be set")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Logger = c.Logger.With("member", uint64(c.ID))
	def(&c.TickInterval, DefaultTickInterval)
	def(&c.ElectionTimeout, DefaultElectionTimeout)
	def(&c.SnapshotEntries, DefaultSnapshotEntries)
	def(&c.ProposalQueueLen, DefaultProposalQueueLen)
	def(&c.MaxProposalBatch, DefaultMaxProposalBatch)
	def(&c.ApplyQueueLen, DefaultApplyQueueLen)
	def(&c.MaxOutstandingReadys, DefaultMaxOutstandingReadys)
	if c.SnapshotSizeFactor < 0 {
		return c, fmt.Errorf("node: config: SnapshotSizeFactor %v is negative", c.SnapshotSizeFactor)
	}
	if c.ElectionTimeout < 2*c.TickInterval {
		return c, fmt.Errorf("node: config: election timeout %v must be at least twice the tick %v",
			c.ElectionTimeout, c.TickInterval)
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano()) ^ uint64(c.ID)<<32
	}
	return c, nil
}

func def[T int | uint64 | time.Duration](v *T, d T) {
	if *v == 0 {
		*v = d
	}
}
