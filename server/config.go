package server

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
	"github.com/raftkv/raftkv/storage/vfs"
)

// Config is everything a member needs. Zero limits take the defaults below.
type Config struct {
	// ID is this member's id; not zero.
	ID uint64
	// DataDir holds the WAL, snapshots and the cluster id; created if missing.
	DataDir string
	// PeerListener and ClientListener are bound already; the server owns
	// them from Start on and closes them when it stops.
	PeerListener   net.Listener
	ClientListener net.Listener
	// AdvertisePeer and AdvertiseClient are the addresses others should
	// use; default: the listeners' addresses.
	AdvertisePeer   string
	AdvertiseClient string
	// Cluster is the initial voters, used only to bootstrap an empty data
	// directory (see ParseCluster).
	Cluster []node.Member
	// Join starts an empty member already added through the admin API.
	Join bool

	HeartbeatInterval time.Duration // default 100ms
	ElectionTimeout   time.Duration // default 1s
	SnapshotEntries   uint64        // default 10000
	// SnapshotSizeFactor: a snapshot also waits until the log since the
	// last one is this many times its size (node.Config). Default 1;
	// negative turns the rule off.
	SnapshotSizeFactor float64

	// TLS, if set, is mutual TLS for both peer and client traffic: it
	// must hold this member's certificate, and the CA as RootCAs and
	// ClientCAs. The HTTP API then requires client certificates too.
	TLS *tls.Config

	// EnablePprof serves Go's profiler at /debug/pprof/ on the client
	// address (for operators chasing a performance problem).
	EnablePprof bool

	// KV is the state machine's limits; every member must use the same.
	KV kv.Config
	// HistoryRetention, if positive, has the leader compact the history
	// older than this on its clock, through the log (retention.go).
	HistoryRetention time.Duration
	// LeaseCheckpointInterval is how often the leader records, through
	// the log, the remaining TTL of leases longer than it, so that a new
	// leader or a restarted cluster does not grant them their whole TTL
	// again. Default 30s.
	LeaseCheckpointInterval time.Duration
	// Limits bound what one client can hold.
	Limits Limits
	// FS is the file system under DataDir's WAL and snapshots; default
	// vfs.OS(). Tests put a fault-injecting layer here (cmd/raftkv's
	// powerloss build).
	FS vfs.FS
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Limits of the HTTP API. Zero fields take the defaults.
type Limits struct {
	// MaxConcurrentRequests bounds requests being served at once; beyond
	// it requests are answered 429 busy at once. Default 1024.
	MaxConcurrentRequests int
	// RequestTimeout bounds a proposal or read barrier. A proposal still
	// unapplied then answers 504 unknown_outcome. Single-key writes share
	// coarse timers and may time out up to 1/32 of it later. Default 5s.
	RequestTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers; it must leave
	// room for a 4096-byte key percent-encoded. Default 64 KiB.
	MaxHeaderBytes int
	// BodySlackBytes is allowed above the value limit in a body before the
	// server stops reading and answers 413. Default 4 KiB.
	BodySlackBytes int
	// MaxBatchBytes bounds the body of POST /v1/batch. It must leave room
	// for one value of the largest size, base64-encoded. Default 4 MiB.
	MaxBatchBytes int
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are the
	// http.Server timeouts. Defaults 5s, 30s, 30s, 120s. On connections the
	// server's own HTTP/1.1 path serves (single keys and batches) a timeout
	// may end up to 1/64 of itself early, never late.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// DrainTimeout bounds the wait for in-flight requests on Shutdown,
	// and TransferTimeout the leadership hand-over. Defaults 5s each.
	DrainTimeout    time.Duration
	TransferTimeout time.Duration
}

// Default limits.
const (
	DefaultMaxConcurrentRequests = 1024
	DefaultRequestTimeout        = 5 * time.Second
	DefaultMaxHeaderBytes        = 64 << 10
	DefaultBodySlackBytes        = 4 << 10
	DefaultMaxBatchBytes         = 4 << 20
	DefaultSnapshotSizeFactor    = 1.0
	// maxAdminBodyBytes bounds the JSON body of an admin request.
	maxAdminBodyBytes = 64 << 10
)

func (c Config) withDefaults() (Config, error) {
	switch {
	case c.ID == 0:
		return c, errors.New("server: config: ID must not be 0")
	case c.DataDir == "":
		return c, errors.New("server: config: DataDir must be set")
	case c.PeerListener == nil || c.ClientListener == nil:
		return c, errors.New("server: config: PeerListener and ClientListener must be set")
	}
	if c.AdvertisePeer == "" {
		c.AdvertisePeer = c.PeerListener.Addr().String()
	}
	if c.AdvertiseClient == "" {
		c.AdvertiseClient = c.ClientListener.Addr().String()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	setDefault(&c.HeartbeatInterval, node.DefaultTickInterval)
	setDefault(&c.ElectionTimeout, node.DefaultElectionTimeout)
	setDefault(&c.SnapshotEntries, node.DefaultSnapshotEntries)
	setDefault(&c.LeaseCheckpointInterval, DefaultLeaseCheckpointInterval)
	switch {
	case c.SnapshotSizeFactor == 0:
		c.SnapshotSizeFactor = DefaultSnapshotSizeFactor
	case c.SnapshotSizeFactor < 0:
		c.SnapshotSizeFactor = 0
	}
	l := &c.Limits
	setDefault(&l.MaxConcurrentRequests, DefaultMaxConcurrentRequests)
	setDefault(&l.RequestTimeout, DefaultRequestTimeout)
	setDefault(&l.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setDefault(&l.BodySlackBytes, DefaultBodySlackBytes)
	setDefault(&l.MaxBatchBytes, max(DefaultMaxBatchBytes, c.maxValueBytes()*4/3+64<<10))
	setDefault(&l.ReadHeaderTimeout, 5*time.Second)
	setDefault(&l.ReadTimeout, 30*time.Second)
	setDefault(&l.WriteTimeout, 30*time.Second)
	setDefault(&l.IdleTimeout, 120*time.Second)
	setDefault(&l.DrainTimeout, 5*time.Second)
	setDefault(&l.TransferTimeout, 5*time.Second)
	return c, nil
}

func setDefault[T int | uint64 | time.Duration](v *T, d T) {
	if *v == 0 {
		*v = d
	}
}

// maxValueBytes is the store's value limit (kv keeps its default private).
func (c Config) maxValueBytes() int {
	if c.KV.MaxValueBytes > 0 {
		return c.KV.MaxValueBytes
	}
	return kv.DefaultMaxValueBytes
}

func (c Config) maxKeyBytes() int {
	if c.KV.MaxKeyBytes > 0 {
		return c.KV.MaxKeyBytes
	}
	return kv.DefaultMaxKeyBytes
}
