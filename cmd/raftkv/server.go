package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
	"github.com/raftkv/raftkv/server"
	"github.com/raftkv/raftkv/storage/vfs"
)

// fileSystem is the members' file system; nil is the real one. The
// powerloss build (powerloss.go, for test/cluster) replaces it.
var fileSystem vfs.FS

type serverFlags struct {
	id                  uint64
	dataDir             string
	listenPeer          string
	listenClient        string
	advertisePeer       string
	advertiseClient     string
	listenEtcd          string
	advertiseEtcd       string
	etcdListener        net.Listener
	cluster             string
	join                bool
	heartbeat           time.Duration
	election            time.Duration
	snapshotEntries     uint64
	snapshotSizeFactor  float64
	logLevel, logFormat string
	shutdownTimeout     time.Duration
	enablePprof         bool
	quotaBytes          int64
	historyRevisions    int64
	historyRetention    time.Duration
}

func newServerCmd(g *globals) *cobra.Command {
	f := &serverFlags{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a member",
		Long: `Run a member of a raftkv cluster.

A new cluster starts with every initial member given the same --cluster:
  raftkv server --id 1 --data-dir ./data/1 --listen-peer 127.0.0.1:7001 \
    --listen-client 127.0.0.1:8001 --cluster 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003
A member added through the admin API starts with --join. A restarted member
recovers from its data dir and ignores --cluster. SIGTERM drains and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config(g)
			if err != nil {
				return err
			}
			return failed(runServer(cfg, f, f.shutdownTimeout))
		},
	}
	fl := cmd.Flags()
	fl.Uint64Var(&f.id, "id", 0, "this member's id, a positive integer unique in the cluster")
	fl.StringVar(&f.dataDir, "data-dir", "", "WAL, snapshots and metadata; created if missing")
	fl.StringVar(&f.listenPeer, "listen-peer", "", "address for Raft traffic between members")
	fl.StringVar(&f.listenClient, "listen-client", "", "address for the HTTP API")
	fl.StringVar(&f.advertisePeer, "advertise-peer", "", "peer address others should use (default: --listen-peer)")
	fl.StringVar(&f.advertiseClient, "advertise-client", "", "client address others should use (default: --listen-client)")
	fl.StringVar(&f.listenEtcd, "listen-etcd", "", "address for etcd's v3 gRPC API (default: not served)")
	fl.StringVar(&f.advertiseEtcd, "advertise-etcd", "", "etcd API address others should use (default: --listen-etcd)")
	fl.StringVar(&f.cluster, "cluster", "", "initial voters as id=peerAddr,...; used only to bootstrap an empty data dir")
	fl.BoolVar(&f.join, "join", false, "start empty as a member already added through the admin API")
	fl.DurationVar(&f.heartbeat, "heartbeat-interval", 100*time.Millisecond, "heartbeat interval")
	fl.DurationVar(&f.election, "election-timeout", time.Second, "election timeout (randomised between 1x and 2x)")
	fl.Uint64Var(&f.snapshotEntries, "snapshot-entries", 10000, "take a snapshot after this many applied entries")
	fl.Float64Var(&f.snapshotSizeFactor, "snapshot-size-factor", server.DefaultSnapshotSizeFactor,
		"also wait until the log since the last snapshot is this many times its size (0: off)")
	fl.StringVar(&f.logLevel, "log-level", "info", "slog level: debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "bound on the drain at SIGTERM")
	fl.BoolVar(&f.enablePprof, "enable-pprof", false, "serve Go's profiler at /debug/pprof/ on the client address")
	fl.Int64Var(&f.quotaBytes, "quota-bytes", kv.DefaultQuotaBytes,
		"bound on the state machine's size (keys, every version kept of them, sessions; see docs/operations.md); the same on every member; -1: none")
	fl.Int64Var(&f.historyRevisions, "history-revisions", kv.DefaultHistoryRevisions,
		"revisions of history kept before automatic compaction (-1: until compacted explicitly); the same on every member")
	fl.DurationVar(&f.historyRetention, "history-retention", 0, "also compact history older than this, measured on the leader (0: off)")
	return cmd
}

// config checks the flags (usage errors, exit 2) and binds the listeners.
func (f *serverFlags) config(g *globals) (server.Config, error) {
	var cfg server.Config
	switch {
	case f.id == 0:
		return cfg, errors.New("--id is required and must be positive")
	case f.dataDir == "":
		return cfg, errors.New("--data-dir is required")
	case f.listenPeer == "" || f.listenClient == "":
		return cfg, errors.New("--listen-peer and --listen-client are required")
	case f.join && f.cluster != "":
		return cfg, errors.New("--join and --cluster exclude each other")
	case f.heartbeat <= 0 || f.election < 2*f.heartbeat:
		return cfg, fmt.Errorf("--election-timeout %v must be at least twice --heartbeat-interval %v", f.election, f.heartbeat)
	case f.snapshotEntries == 0:
		return cfg, errors.New("--snapshot-entries must be positive")
	case f.snapshotSizeFactor < 0:
		return cfg, errors.New("--snapshot-size-factor must not be negative")
	case f.quotaBytes == 0 || f.quotaBytes < -1:
		return cfg, errors.New("--quota-bytes must be positive, or -1 for none")
	case f.historyRevisions == 0 || f.historyRevisions < -1:
		return cfg, errors.New("--history-revisions must be positive, or -1 to keep all history")
	case f.historyRetention < 0:
		return cfg, errors.New("--history-retention must not be negative")
	}
	logger, err := newLogger(f.logLevel, f.logFormat)
	if err != nil {
		return cfg, err
	}
	tlsCfg, err := loadTLS(g.tlsCert, g.tlsKey, g.tlsCA)
	if err != nil {
		return cfg, err
	}
	var members []node.Member
	if f.cluster != "" {
		if members, err = server.ParseCluster(f.cluster); err != nil {
			return cfg, fmt.Errorf("--cluster: %w", err)
		}
	} else if !f.join && !server.Bootstrapped(f.dataDir) {
		return cfg, fmt.Errorf("data dir %s is empty: give --cluster (a new cluster) or --join (an added member)", f.dataDir)
	}
	pl, err := net.Listen("tcp", f.listenPeer)
	if err != nil {
		return cfg, failed(fmt.Errorf("--listen-peer: %w", err))
	}
	cl, err := net.Listen("tcp", f.listenClient)
	if err != nil {
		pl.Close()
		return cfg, failed(fmt.Errorf("--listen-client: %w", err))
	}
	if f.listenEtcd != "" {
		if f.etcdListener, err = net.Listen("tcp", f.listenEtcd); err != nil {
			pl.Close()
			cl.Close()
			return cfg, failed(fmt.Errorf("--listen-etcd: %w", err))
		}
	}
	return server.Config{
		ID: f.id, DataDir: f.dataDir, PeerListener: pl, ClientListener: cl,
		AdvertisePeer: f.advertisePeer, AdvertiseClient: f.advertiseClient,
		Cluster: members, Join: f.join,
		HeartbeatInterval: f.heartbeat, ElectionTimeout: f.election, SnapshotEntries: f.snapshotEntries,
		SnapshotSizeFactor: sizeFactor(f.snapshotSizeFactor),
		TLS:                tlsCfg, Logger: logger, FS: fileSystem, EnablePprof: f.enablePprof,
		KV:               kv.Config{QuotaBytes: f.quotaBytes, HistoryRevisions: f.historyRevisions},
		HistoryRetention: f.historyRetention,
	}, nil
}

// sizeFactor maps the flag (0: off) onto server.Config (0: default).
func sizeFactor(f float64) float64 {
	if f == 0 {
		return -1
	}
	return f
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// runServer runs a member until SIGTERM/SIGINT (drain, exit 0) or until
// its node stops on its own (exit 1).
func runServer(cfg server.Config, f *serverFlags, shutdownTimeout time.Duration) error {
	s, err := server.Start(cfg)
	if err != nil {
		if f.etcdListener != nil {
			f.etcdListener.Close()
		}
		return err
	}
	e, err := startEtcd(s, cfg, f.etcdListener, f.advertiseEtcd)
	if err != nil {
		s.Close()
		return err
	}
	if e != nil {
		defer e.Stop()
	}
	cfg.Logger.Info("member started", "id", cfg.ID, "client", s.ClientAddr(),
		"cluster_id", server.FormatClusterID(s.ClusterID()))
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	select {
	case sig := <-sigs:
		cfg.Logger.Info("draining", "signal", sig.String())
		if e != nil {
			e.Stop()
		}
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
		cfg.Logger.Info("stopped")
		return nil
	case <-s.Done():
		s.Close()
		if err := s.Err(); err != nil {
			return fmt.Errorf("member stopped: %w", err)
		}
		return errors.New("member stopped")
	}
}
