package server

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/node"
	pb "github.com/raftkv/raftkv/raftpb"
)

// PathMetrics serves the Prometheus metrics (docs/api.md).
const PathMetrics = "/metrics"

// metrics is one member's Prometheus instrumentation. Every Server has its
// own registry rather than the process-wide default, so that several
// members in one process (tests, `raftkv dev`) each report their own
// numbers instead of colliding on registration.
//
// Two kinds of numbers: events measured at their call sites in this
// package (proposals, read barriers, fsyncs, HTTP answers), and state read
// from the node when Prometheus scrapes (role, term, indexes, per-peer
// progress and transport counters), so the hot paths pay nothing for it.
type metrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	proposals        *prometheus.CounterVec
	proposalSeconds  prometheus.Histogram
	readIndexSeconds *prometheus.HistogramVec
	fsyncSeconds     prometheus.Histogram
	httpRequests     *prometheus.CounterVec
	httpCounters     sync.Map // httpCounterKey -> prometheus.Counter of httpRequests

	// Series resolved once: every request would otherwise hash its labels.
	proposalsApplied                          prometheus.Counter
	linearizableReadSeconds, leaseReadSeconds prometheus.Observer
}

// latencyBuckets span 100µs (a batched fsync on a fast disk) to ~6.5s
// (beyond RequestTimeout): doubling buckets, like etcd's.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 17)

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		proposals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_proposals_total",
			Help: "Client writes this member proposed as leader, by outcome: applied, rejected (refused before it was proposed, or redirected), unknown (may still apply).",
		}, []string{"outcome"}),
		proposalSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "raftkv_proposal_duration_seconds",
			Help:    "Time from proposing a client write to its being applied on this member, for applied writes.",
			Buckets: latencyBuckets,
		}),
		readIndexSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "raftkv_read_index_duration_seconds",
			Help:    "Time a read barrier took before a read could be served, by consistency (linearizable: ReadIndex; lease).",
			Buckets: latencyBuckets,
		}, []string{"consistency"}),
		fsyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "raftkv_wal_fsync_duration_seconds",
			Help:    "Latency of the WAL's fsync (one per batch of entries: group commit).",
			Buckets: latencyBuckets,
		}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftkv_http_requests_total",
			Help: "HTTP requests answered on the client address, by method and status code.",
		}, []string{"method", "code"}),
	}
	m.proposalsApplied = m.proposals.WithLabelValues("applied")
	m.linearizableReadSeconds = m.readIndexSeconds.WithLabelValues(api.Linearizable)
	m.leaseReadSeconds = m.readIndexSeconds.WithLabelValues(api.Lease)
	for _, o := range []string{"applied", "rejected", "unknown"} {
		m.proposals.WithLabelValues(o) // export zeros: alerts on rate() need the series
	}
	m.reg.MustRegister(m.proposals, m.proposalSeconds, m.readIndexSeconds, m.fsyncSeconds, m.httpRequests,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return m
}

// bind registers the collector that reads the node's state at scrape time.
func (m *metrics) bind(s *Server) {
	m.reg.MustRegister(&nodeCollector{s: s}, &coordCollector{s: s})
}

// Gatherer exposes the member's registry, so an embedding program can
// merge it into its own exposition.
func (s *Server) Gatherer() prometheus.Gatherer { return s.metrics.reg }

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	s.metrics.handler.ServeHTTP(w, r)
}

// proposed records one client write's outcome.
func (m *metrics) proposed(start time.Time, err error) {
	switch {
	case err == nil:
		m.proposalsApplied.Inc()
		m.proposalSeconds.Observe(time.Since(start).Seconds())
	case errors.Is(err, node.ErrUnknownOutcome):
		m.proposals.WithLabelValues("unknown").Inc()
	default:
		m.proposals.WithLabelValues("rejected").Inc()
	}
}

// readBarrier records a successful read barrier's latency.
func (m *metrics) readBarrier(level string, start time.Time, err error) {
	if err != nil {
		return
	}
	o := m.leaseReadSeconds
	if level == api.Linearizable {
		o = m.linearizableReadSeconds
	}
	o.Observe(time.Since(start).Seconds())
}

// observeHTTP counts one answer. The method label is limited to the
// methods the API uses, so a client cannot grow the label set.
func (m *metrics) observeHTTP(method string, w *responseWriter) {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete:
	default:
		method = "other"
	}
	code := w.code
	if code == 0 {
		code = http.StatusOK // nothing written: net/http answers 200
	}
	// Resolving the labels hashes them and formats the code on every
	// request; the counters are few, so keep them.
	key := httpCounterKey{method, code}
	if c, ok := m.httpCounters.Load(key); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c := m.httpRequests.WithLabelValues(method, strconv.Itoa(code))
	m.httpCounters.Store(key, c)
	c.Inc()
}

// httpCounterKey names one raftkv_http_requests_total series. The codes
// net/http lets a handler write are 100–999, so the set is bounded.
type httpCounterKey struct {
	method string
	code   int
}

// timedLog times the WAL's fsyncs; everything else passes through.
type timedLog struct {
	node.LogStore
	fsync prometheus.Histogram
}

// Unwrap lets the node reach the log's space reporting (node/space.go).
func (l timedLog) Unwrap() node.LogStore { return l.LogStore }

func (l timedLog) Sync() error {
	start := time.Now()
	err := l.LogStore.Sync()
	l.fsync.Observe(time.Since(start).Seconds())
	return err
}

// nodeCollector reports the node's state as of the scrape.
type nodeCollector struct{ s *Server }

var (
	descRole = prometheus.NewDesc("raftkv_raft_role",
		"1 for this member's current role (leader, follower, candidate, learner, removed), 0 for the others.", []string{"role"}, nil)
	descIsLeader = prometheus.NewDesc("raftkv_raft_is_leader",
		"1 if this member is the leader.", nil, nil)
	descHasLeader = prometheus.NewDesc("raftkv_raft_has_leader",
		"1 if this member knows a leader.", nil, nil)
	descLeader = prometheus.NewDesc("raftkv_raft_leader_id",
		"Id of the leader this member knows, 0 when none.", nil, nil)
	descTerm = prometheus.NewDesc("raftkv_raft_term",
		"This member's current term.", nil, nil)
	descLeaderChanges = prometheus.NewDesc("raftkv_raft_leader_changes_total",
		"Times this member saw a new leader.", nil, nil)
	descCommit = prometheus.NewDesc("raftkv_raft_commit_index",
		"Highest log index this member knows committed.", nil, nil)
	descApplied = prometheus.NewDesc("raftkv_raft_applied_index",
		"Highest log index applied to this member's state machine.", nil, nil)
	descSnapshot = prometheus.NewDesc("raftkv_raft_snapshot_index",
		"Log index of this member's newest durable snapshot.", nil, nil)
	descLast = prometheus.NewDesc("raftkv_raft_last_index",
		"Index of the last entry in this member's log.", nil, nil)
	descMembers = prometheus.NewDesc("raftkv_cluster_members",
		"Members of the configuration in force, by kind (voter, learner).", []string{"kind"}, nil)
	descPeerLag = prometheus.NewDesc("raftkv_raft_peer_lag_entries",
		"On the leader: entries the peer's log is known to be behind the leader's (last index minus match index).", []string{"peer"}, nil)
	descPeerInflight = prometheus.NewDesc("raftkv_raft_peer_inflight_messages",
		"On the leader: AppendEntries sent to the peer and not yet acknowledged.", []string{"peer"}, nil)
	descSnapsSent = prometheus.NewDesc("raftkv_raft_snapshots_sent_total",
		"Snapshots this member sent to followers, by outcome (ok, failed).", []string{"outcome"}, nil)
	descSnapsReceived = prometheus.NewDesc("raftkv_raft_snapshots_received_total",
		"Snapshots this member received from a leader and stored.", nil, nil)
	descInDropped = prometheus.NewDesc("raftkv_raft_inbound_messages_dropped_total",
		"Raft messages received and dropped because the receive queue was full (Raft retransmits).", nil, nil)
	descOutDropped = prometheus.NewDesc("raftkv_transport_messages_dropped_total",
		"Raft messages to the peer dropped (queue full, connection down, too large).", []string{"peer"}, nil)
	descOutSent = prometheus.NewDesc("raftkv_transport_messages_sent_total",
		"Raft messages written to the peer's connection.", []string{"peer"}, nil)
	descInReceived = prometheus.NewDesc("raftkv_transport_messages_received_total",
		"Raft messages received from the peer.", []string{"peer"}, nil)
	descConnected = prometheus.NewDesc("raftkv_transport_peer_connected",
		"1 if the outbound stream to the peer is established.", []string{"peer"}, nil)
	descQueued = prometheus.NewDesc("raftkv_transport_peer_queued_messages",
		"Messages waiting in the peer's send queue.", []string{"peer"}, nil)
	descAlarmsRaised = prometheus.NewDesc("raftkv_alarms_raised",
		"Members with an alarm raised, as this member's configuration has them.", nil, nil)
	descAlarm = prometheus.NewDesc("raftkv_alarm",
		"1 for each member and alarm raised, with its cause (disk, quota).", []string{"member", "alarm", "cause"}, nil)
	descSpaceOK = prometheus.NewDesc("raftkv_disk_space_ok",
		"0 while this member's disk has no room for the next log segment (it takes no new entries beyond the current one).", nil, nil)
	descStateBytes = prometheus.NewDesc("raftkv_kv_state_bytes",
		"The state machine's size as its quota counts it.", nil, nil)
	descQuotaBytes = prometheus.NewDesc("raftkv_kv_quota_bytes",
		"The state machine's quota (--quota-bytes); negative: none.", nil, nil)
	descSpaceRefused = prometheus.NewDesc("raftkv_space_refused_proposals_total",
		"Proposals this member refused because its disk had no room for them.", nil, nil)
	descSpaceDropped = prometheus.NewDesc("raftkv_space_dropped_appends_total",
		"AppendEntries this member dropped because its disk had no room for their entries.", nil, nil)
)

var roleNames = []string{api.RoleLeader, api.RoleFollower, api.RoleCandidate, api.RoleLearner, api.RoleRemoved}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRole, descIsLeader, descHasLeader, descLeader, descTerm,
		descLeaderChanges, descCommit, descApplied, descSnapshot, descLast, descMembers, descPeerLag,
		descPeerInflight, descSnapsSent, descSnapsReceived, descInDropped, descOutDropped, descOutSent,
		descInReceived, descConnected, descQueued, descAlarmsRaised, descAlarm, descSpaceOK, descStateBytes,
		descQuotaBytes, descSpaceRefused, descSpaceDropped} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.s.node
	st := n.Status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	role := roleName(st.Role)
	for _, r := range roleNames {
		gauge(descRole, boolFloat(r == role), r)
	}
	gauge(descIsLeader, boolFloat(role == api.RoleLeader))
	gauge(descHasLeader, boolFloat(st.Lead != pb.None))
	gauge(descLeader, float64(st.Lead))
	gauge(descTerm, float64(st.Term))
	gauge(descCommit, float64(st.Commit))
	gauge(descApplied, float64(st.Applied))
	gauge(descSnapshot, float64(st.SnapshotIndex))
	gauge(descLast, float64(st.LastIndex))
	voters, learners := 0, 0
	for _, id := range confMembers(st.Conf) {
		if st.Conf.IsVoter(id) {
			voters++
		} else {
			learners++
		}
	}
	gauge(descMembers, float64(voters), "voter")
	gauge(descMembers, float64(learners), "learner")
	for id, pr := range st.Progress {
		if id == st.ID {
			continue
		}
		peer := strconv.FormatUint(uint64(id), 10)
		lag := uint64(0)
		if st.LastIndex > pr.Match {
			lag = uint64(st.LastIndex - pr.Match)
		}
		gauge(descPeerLag, float64(lag), peer)
		gauge(descPeerInflight, float64(pr.InflightMsgs), peer)
	}
	k := n.Counters()
	counter(descLeaderChanges, k.LeaderChanges)
	counter(descSnapsSent, k.SnapshotsSent, "ok")
	counter(descSnapsSent, k.SnapshotsSendFailed, "failed")
	counter(descSnapsReceived, k.SnapshotsReceived)
	counter(descInDropped, k.MessagesDropped)
	alarms, _ := n.Alarms()
	gauge(descAlarmsRaised, float64(len(alarms)))
	for _, m := range alarms {
		gauge(descAlarm, 1, strconv.FormatUint(uint64(m.ID), 10), m.Alarm, m.AlarmCause)
	}
	gauge(descSpaceOK, boolFloat(n.SpaceOK()))
	gauge(descStateBytes, float64(c.s.store.Size()))
	gauge(descQuotaBytes, float64(c.s.store.QuotaBytes()))
	refused, dropped := n.SpaceCounters()
	counter(descSpaceRefused, refused)
	counter(descSpaceDropped, dropped)
	ts, ok := n.TransportStats()
	if !ok {
		return
	}
	for id, p := range ts.Peers {
		peer := strconv.FormatUint(uint64(id), 10)
		counter(descOutDropped, p.Dropped, peer)
		counter(descOutSent, p.Sent, peer)
		counter(descInReceived, p.Received, peer)
		gauge(descConnected, boolFloat(p.Connected), peer)
		gauge(descQueued, float64(p.Queued), peer)
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
