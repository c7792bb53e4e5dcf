package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

// Server is one running member: node, store and HTTP API.
type Server struct {
	cfg    Config
	log    *slog.Logger
	node   *node.Node
	store  *kv.Store
	http   *http.Server
	fast   *fastServer // the HTTP/1.1 fast path (fasthttp.go); nil with TLS
	scheme string      // "http" or "https", for redirect URLs

	clusterID atomic.Uint64 // 0 until known (a joined member learns it)
	sem       chan struct{} // one token per request being served
	draining  atomic.Bool
	applied   *appliedLog // checksums of recent commands (PathDebugApplied)

	stopOnce sync.Once
	stopc    chan struct{}
	bg       sync.WaitGroup
	serveErr chan error

	lessor      lessor                           // lease.go: the leader's lease deadlines
	watches     watchStreams                     // watch.go
	raftHeaders atomic.Pointer[raftHeaderValues] // responseWriter's cache
	// Concurrent reads share barriers (readbarrier.go).
	linearizableReads, leaseReads *readCoalescer
	// writeExpiries times out single-key writes (RequestTimeout).
	writeExpiries *node.Expiries

	metrics   *metrics     // metrics.go
	peerHTTP  *http.Client // ui.go: fetches other members' views
	announced sync.Map     // ui.go: member id (uint64) -> client address it announced
}

// Start opens the data directory, starts the node, and serves the HTTP API
// on cfg.ClientListener. The listeners are closed if it fails.
func Start(c Config) (*Server, error) {
	cfg, err := c.withDefaults()
	if err != nil {
		closeListeners(c)
		return nil, err
	}
	s, err := open(cfg)
	if err != nil {
		closeListeners(cfg)
		return nil, err
	}
	s.bg.Add(5)
	go s.alarmLoop()
	go s.serve()
	go s.publishLoop()
	go s.announceLoop()
	go s.leaseLoop()
	if s.cfg.HistoryRetention > 0 {
		s.bg.Add(1)
		go s.retentionLoop()
	}
	return s, nil
}

func closeListeners(c Config) {
	if c.PeerListener != nil {
		c.PeerListener.Close()
	}
	if c.ClientListener != nil {
		c.ClientListener.Close()
	}
}

func open(cfg Config) (*Server, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}
	clusterID, err := resolveClusterID(cfg)
	if err != nil {
		return nil, err
	}
	fsys := cfg.FS
	if fsys == nil {
		fsys = vfs.OS()
	}
	log, snaps, err := node.OpenStorage(fsys, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("server: opening %s: %w", cfg.DataDir, err)
	}
	m := newMetrics()
	log = timedLog{LogStore: log, fsync: m.fsyncSeconds}
	store := kv.New(cfg.KV)
	applied := &appliedLog{}
	// Self carries no client address: node would write it into this
	// member's bootstrap configuration only, and the initial members'
	// first entries would then differ. The leader publishes its address
	// through the log instead (publishLoop).
	self := node.Member{ID: pb.NodeID(cfg.ID), PeerAddr: cfg.AdvertisePeer}
	// A joining member's transport adopts the cluster id from the first
	// member that reaches it; keep it and persist it for restarts.
	onClusterID := func(id uint64) {
		if err := storeClusterID(cfg.DataDir, id); err != nil {
			cfg.Logger.Error("persisting the learned cluster id", "err", err)
		}
	}
	n, err := node.New(node.Config{
		OnClusterID: onClusterID,
		ID:          pb.NodeID(cfg.ID), ClusterID: clusterID, FSM: recordingFSM{store, applied},
		Log: log, Snapshots: snaps, PeerListener: cfg.PeerListener, TLS: cfg.TLS,
		Bootstrap: cfg.Cluster, Join: cfg.Join, Self: self,
		TickInterval: cfg.HeartbeatInterval, ElectionTimeout: cfg.ElectionTimeout,
		SnapshotEntries: cfg.SnapshotEntries, SnapshotSizeFactor: cfg.SnapshotSizeFactor, Logger: cfg.Logger,
	})
	if err != nil {
		log.Close()
		if errors.Is(err, kv.ErrOldSnapshotFormat) {
			return nil, oldSnapshotError(cfg.DataDir, snaps, err)
		}
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := n.Start(); err != nil {
		n.Stop()
		return nil, fmt.Errorf("server: %w", err)
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger, node: n, store: store, scheme: "http", applied: applied,
		sem:      make(chan struct{}, cfg.Limits.MaxConcurrentRequests),
		stopc:    make(chan struct{}),
		serveErr: make(chan error, 1),
		metrics:  m,
		peerHTTP: newPeerHTTP(cfg.TLS),
	}
	s.watches.stop = make(chan struct{})
	s.linearizableReads = newReadCoalescer(n.ReadIndex, cfg.Limits.RequestTimeout)
	s.leaseReads = newReadCoalescer(n.LeaseRead, cfg.Limits.RequestTimeout)
	s.writeExpiries = node.NewExpiries(cfg.Limits.RequestTimeout)
	m.bind(s)
	s.clusterID.Store(clusterID)
	if cfg.TLS != nil {
		s.scheme = "https"
	}
	s.http = &http.Server{
		Handler:           s,
		MaxHeaderBytes:    cfg.Limits.MaxHeaderBytes,
		ReadHeaderTimeout: cfg.Limits.ReadHeaderTimeout,
		ReadTimeout:       cfg.Limits.ReadTimeout,
		WriteTimeout:      cfg.Limits.WriteTimeout,
		IdleTimeout:       cfg.Limits.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	if cfg.TLS == nil {
		// Cleartext HTTP/2 (h2c, prior knowledge) beside HTTP/1.1, so that
		// clients that multiplex share a connection and its syscalls; an
		// HTTP/1.1 client sees no difference. Each stream still takes one
		// of MaxConcurrentRequests' tokens.
		s.http.Protocols = new(http.Protocols)
		s.http.Protocols.SetHTTP1(true)
		s.http.Protocols.SetUnencryptedHTTP2(true)
		s.fast = newFastServer(s, cfg.ClientListener)
	}
	return s, nil
}

// oldSnapshotError explains a refused start over a snapshot from before
// store revisions. Converting it here, at this member's own snapshot
// index, would give it revisions the other members do not share; one
// backup restored on every member converts them all at one index.
func oldSnapshotError(dataDir string, snaps node.SnapshotStore, err error) error {
	meta, _ := snaps.Latest()
	return fmt.Errorf("server: refusing to start: data dir %s holds snapshot %d in kv snapshot format 1, "+
		"written by a build from before store revisions, and converting it on one member would make its revisions differ from the others'; "+
		"nothing in the data dir was changed. Upgrade by taking one backup with the old build (raftkv snapshot save) "+
		"and restoring that one backup into an empty data dir on every member (raftkv snapshot restore), "+
		"as docs/operations.md (Backup and restore, Data from before revisions) describes: %w", dataDir, meta.Index, err)
}

// resolveClusterID reads the persisted id, or derives and persists it at
// bootstrap. A joining member starts with 0 and learns it (publishLoop).
func resolveClusterID(cfg Config) (uint64, error) {
	id, ok, err := loadClusterID(cfg.DataDir)
	if err != nil {
		return 0, fmt.Errorf("server: %w", err)
	}
	switch {
	case ok:
		return id, nil // a restart: the data dir wins over --cluster
	case cfg.Join:
		return 0, nil
	case len(cfg.Cluster) == 0:
		return 0, fmt.Errorf("server: data dir %s is empty: give the initial members (--cluster) or --join", cfg.DataDir)
	}
	id = ClusterIDOf(cfg.Cluster)
	if err := storeClusterID(cfg.DataDir, id); err != nil {
		return 0, fmt.Errorf("server: %w", err)
	}
	return id, nil
}

func (s *Server) serve() {
	defer s.bg.Done()
	l := s.cfg.ClientListener
	if s.cfg.TLS != nil {
		l = tls.NewListener(l, s.cfg.TLS)
	} else {
		// Plain requests are served by the fast path; net/http serves
		// the connections it hands over.
		s.fast.start()
		l = s.fast
	}
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	s.serveErr <- err
}

// Node returns the member's node (for tests and embedding).
func (s *Server) Node() *node.Node { return s.node }

// LinearizableBarrier is a linearizable read barrier (the node's
// ReadIndex) shared with the other reads that arrive meanwhile, as the
// member's own linearizable reads share theirs.
func (s *Server) LinearizableBarrier(ctx context.Context) error {
	return s.linearizableReads.wait(ctx)
}

// Store returns the member's state machine.
func (s *Server) Store() *kv.Store { return s.store }

// ClientAddr is the advertised client address.
func (s *Server) ClientAddr() string { return s.cfg.AdvertiseClient }

// ClusterID returns the cluster id, 0 while a joined member has not learned it.
func (s *Server) ClusterID() uint64 {
	if id := s.clusterID.Load(); id != 0 {
		return id
	}
	if id := s.node.ClusterID(); id != 0 {
		s.clusterID.CompareAndSwap(0, id)
		return id
	}
	return 0
}

// Done is closed when the node stops (by Shutdown, Close or a fatal error).
func (s *Server) Done() <-chan struct{} { return s.node.Done() }

// Err returns the fatal error that stopped the node, if any.
func (s *Server) Err() error { return s.node.Err() }

// Shutdown drains the member: new requests get 503 shutting_down, requests
// in flight finish (up to DrainTimeout), a leader hands leadership to the
// most caught-up voter (up to TransferTimeout), the HTTP server closes and
// the node stops. ctx bounds the whole.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.watches.stopAll()
	s.waitIdle(ctx)
	if st := s.node.Status(); st.Role.String() == api.RoleLeader {
		s.handOver(ctx, st)
	}
	err := s.http.Shutdown(ctx)
	if s.fast != nil {
		s.fast.beginShutdown()
		if ferr := s.fast.waitConns(ctx); err == nil {
			err = ferr
		}
	}
	if err != nil {
		s.http.Close()
	}
	if s.fast != nil {
		s.fast.closeAll()
	}
	s.stop()
	if serr := <-s.serveErr; err == nil {
		err = serr
	}
	s.serveErr <- nil // later calls must not block
	return err
}

// Close stops at once: open connections are closed, the node stops.
func (s *Server) Close() {
	s.draining.Store(true)
	s.watches.stopAll()
	s.http.Close()
	if s.fast != nil {
		s.fast.closeAll()
	}
	s.stop()
}

func (s *Server) stop() {
	s.stopOnce.Do(func() {
		close(s.stopc)
		s.bg.Wait()
		s.node.Stop()
		s.peerHTTP.CloseIdleConnections()
	})
}

// waitIdle waits until no request holds a token, or the drain time is up.
func (s *Server) waitIdle(ctx context.Context) {
	deadline := time.Now().Add(s.cfg.Limits.DrainTimeout)
	for len(s.sem) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
}

// handOver transfers leadership to the voter with the longest log, so the
// cluster does not wait an election timeout for a new leader.
func (s *Server) handOver(ctx context.Context, st node.Status) {
	to := s.mostCaughtUpVoter(st)
	if to == pb.None {
		return // the only voter
	}
	tctx, cancel := context.WithTimeout(ctx, s.cfg.Limits.TransferTimeout)
	defer cancel()
	if err := s.node.TransferLeadership(tctx, to); err != nil {
		s.log.Warn("shutdown: leadership transfer failed", "to", uint64(to), "err", err)
		return
	}
	s.log.Info("shutdown: handed leadership over", "to", uint64(to))
}

// ServeHTTP routes a request. Routing is by hand rather than through
// http.ServeMux because keys may hold "//" and "..", which the mux would
// clean and redirect.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var rw *responseWriter
	if fw, ok := w.(*fastResponse); ok {
		rw = &fw.rw // no allocation: the fast path reuses its writer
	} else {
		rw = new(responseWriter)
	}
	*rw = responseWriter{ResponseWriter: w, s: s}
	defer s.metrics.observeHTTP(r.Method, rw)
	path := r.URL.Path
	switch {
	case path == api.PathHealthz:
		s.healthz(rw, r)
		return
	case path == PathMetrics: // scraped during a drain too
		s.route(rw, r, http.MethodGet, s.serveMetrics)
		return
	case path == PathUI || strings.HasPrefix(path, PathUI+"/"):
		s.route(rw, r, http.MethodGet, s.serveUI)
		return
	case s.cfg.EnablePprof && strings.HasPrefix(path, "/debug/pprof/"):
		servePprof(rw, r)
		return
	case path == PathDebugAnnounce:
		// Members' own periodic announcements must not take the slots
		// that bound clients' concurrent requests.
		s.route(rw, r, http.MethodPost, s.announce)
		return
	}
	if s.draining.Load() {
		s.fail(rw, api.CodeShuttingDown, "member is shutting down")
		return
	}
	if path == api.PathWatch {
		s.watch(rw, r) // bounded by MaxWatchStreams, not by request slots
		return
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		s.fail(rw, api.CodeBusy, "too many concurrent requests")
		return
	}
	switch {
	case strings.HasPrefix(path, api.PathKV):
		s.serveKV(rw, r, path[len(api.PathKV):])
	case path == api.PathBatch:
		s.serveBatch(rw, r)
	case path == api.PathCluster:
		s.route(rw, r, http.MethodGet, s.getCluster)
	case path == api.PathMembers:
		s.route(rw, r, http.MethodPost, s.addMember)
	case strings.HasPrefix(path, api.PathMembers+"/"):
		s.serveMember(rw, r, path[len(api.PathMembers)+1:])
	case path == api.PathVoters:
		s.route(rw, r, http.MethodPut, s.setVoters)
	case path == api.PathTransfer:
		s.route(rw, r, http.MethodPost, s.transferLeadership)
	case path == api.PathAlarms:
		s.serveAlarms(rw, r)
	case path == api.PathSnapshot:
		s.route(rw, r, http.MethodPost, s.snapshot)
	case path == api.PathReadyz:
		s.route(rw, r, http.MethodGet, s.readyz)
	case path == PathDebugLog:
		s.route(rw, r, http.MethodGet, s.debugLog)
	case path == PathDebugView:
		s.route(rw, r, http.MethodGet, s.debugView)
	case path == PathSnapshotFile:
		s.route(rw, r, http.MethodGet, s.sendSnapshot)
	case path == PathDebugApplied:
		s.route(rw, r, http.MethodGet, s.debugApplied)
	case path == api.PathRange, path == api.PathTxn, path == api.PathCompact, path == api.PathLeases,
		strings.HasPrefix(path, api.PathLease):
		s.serveCoord(rw, r, path) // coord.go, lease.go
	default:
		s.fail(rw, api.CodeNotFound, "no such endpoint: "+path)
	}
}

func (s *Server) route(w http.ResponseWriter, r *http.Request, method string, h http.HandlerFunc) {
	if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
		s.methodNotAllowed(w, method)
		return
	}
	h(w, r)
}

func (s *Server) methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	s.writeError(w, http.StatusMethodNotAllowed, api.CodeBadRequest, "method not allowed; use "+allow)
}

// responseWriter stamps X-Raft-Term and X-Raft-Leader on every answer, as
// of the moment the answer is written (after a write applied, the leader
// it names is the one that applied it).
type responseWriter struct {
	http.ResponseWriter
	s       *Server
	written bool
	code    int // as written, for metrics
}

func (w *responseWriter) WriteHeader(code int) {
	if !w.written {
		w.written = true
		w.code = code
		lead, term, _ := w.s.node.Leader()
		v := w.s.raftHeaders.Load()
		if v == nil || v.lead != lead || v.term != term {
			v = &raftHeaderValues{lead: lead, term: term,
				leadValue: []string{strconv.FormatUint(uint64(lead), 10)},
				termValue: []string{strconv.FormatUint(uint64(term), 10)}}
			w.s.raftHeaders.Store(v)
		}
		// Canonical keys set directly, values shared: net/http only reads
		// them, and they change once a term.
		h := w.Header()
		h[headerTermKey] = v.termValue
		h[headerLeaderKey] = v.leadValue
	}
	w.ResponseWriter.WriteHeader(code)
}

// raftHeaderValues are the X-Raft-Term and X-Raft-Leader values of one
// (leader, term), formatted once.
type raftHeaderValues struct {
	lead                 pb.NodeID
	term                 pb.Term
	leadValue, termValue []string
}

var (
	headerTermKey   = http.CanonicalHeaderKey(api.HeaderTerm)
	headerLeaderKey = http.CanonicalHeaderKey(api.HeaderLeader)
)

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
