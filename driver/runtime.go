package driver

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/confchange"
	pb "github.com/raftkv/raftkv/raftpb"
)

// Config sets a Runtime's policy. Zero limits take the defaults named.
type Config struct {
	// Core is the member's core, built from the recovered log; the Runtime
	// owns it from now on.
	Core *raft.Raft
	// Snapshot is the snapshot the state machine was restored from at start
	// (see Recover); zero if none.
	Snapshot pb.SnapshotMeta
	// Now is the clock reading at start.
	Now time.Time

	// TickInterval is the time between Ticks; ElectionTimeout the minimum
	// election timeout. Both drive the disk-stall hand-over and the lease
	// guard; the core itself counts ticks.
	TickInterval, ElectionTimeout time.Duration
	// TickSlack is how far the ticks may fall behind the clock and still be
	// trusted to time a lease (see closed.go): a lease read falls back to
	// ReadIndex unless the heartbeat round the lease rests on was sent at
	// most LeaseTicks intervals plus TickSlack ago by the clock. Default 0:
	// ticks exactly on time, as in the simulator.
	TickSlack time.Duration
	// LeaseGap is the gap between ticks (a paused process) after which
	// lease reads fall back to ReadIndex for an election timeout. Default
	// two tick intervals.
	LeaseGap time.Duration
	// MaxOutstandingReadys bounds Readys handed out and not yet persisted
	// and advanced. Default DefaultMaxOutstandingReadys.
	MaxOutstandingReadys int
	// MaxApplyJobs bounds apply jobs handed out and not yet done. Default
	// DefaultMaxApplyJobs.
	MaxApplyJobs int
	// SnapshotEntries: a snapshot is asked for after this many applied
	// entries; 0 never.
	SnapshotEntries uint64
	// SnapshotSizeFactor: a snapshot also waits until the entries applied
	// since the last one hold this many times its size in bytes (§5.1.3).
	SnapshotSizeFactor float64
	// SnapshotTrailingEntries: see CompactPoint.
	SnapshotTrailingEntries uint64
	// Logger reports role changes and disk stalls; nil discards.
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultMaxOutstandingReadys = 64
	DefaultMaxApplyJobs         = 64
)

// ApplyJob is one batch for the state machine. Jobs are applied in the order
// handed out: first Snapshot (if set) is restored, then Entries are applied
// (skipping any at or below the applied index), then, if TakeSnapshot is set,
// an image of the state is taken at the last applied entry and written out;
// its outcome comes back through SnapshotDone.
type ApplyJob struct {
	Snapshot     *pb.SnapshotMeta
	Entries      []pb.Entry
	TakeSnapshot bool
}

// SnapshotResult answers a RequestSnapshot: the index of the snapshot that
// now covers the applied state, or the error that prevented it.
type SnapshotResult struct {
	Token uint64
	Index pb.Index
	Err   error
}

// Work is what the runtime asks of its I/O after one or more events. The
// executor does it in this order: react to SoftStates; hand out
// ReadStates; hand Persist to the persister; send Send; hand Apply to the
// applier; compact the log to each of Compact; answer Snapshots.
type Work struct {
	SoftStates []raft.SoftState
	ReadStates []raft.ReadState
	// Persist holds Readys to write and make durable, in order (see
	// PersistBatch). The persister may cover several with one fsync, and
	// reports each durable prefix with PersistDone.
	Persist []raft.Ready
	// Send holds messages that may leave now.
	Send []pb.Message
	// Apply holds jobs for the state machine; report each with ApplyDone.
	Apply []ApplyJob
	// Compact holds snapshots, durable now, the log may be compacted to.
	Compact   []pb.SnapshotMeta
	Snapshots []SnapshotResult
	// CommitUnsent: a follower has not been sent the commit index. The
	// executor calls SendCommit a moment later (if no AppendEntries with
	// entries carries it first, SendCommit sends nothing); the core sends
	// it on the next tick otherwise.
	CommitUnsent bool
}

// IsEmpty reports whether w asks for nothing.
func (w *Work) IsEmpty() bool {
	return len(w.SoftStates) == 0 && len(w.ReadStates) == 0 && len(w.Persist) == 0 &&
		len(w.Send) == 0 && len(w.Apply) == 0 && len(w.Compact) == 0 && len(w.Snapshots) == 0
}

// ErrSnapshotInProgress answers a RequestSnapshot while a snapshot is
// being taken or written.
var ErrSnapshotInProgress = errors.New("driver: a snapshot is already being written")

// Runtime is the runtime policy of one member, deterministic and
// single-threaded: the events come in as method calls with the clock passed
// in, and what they require of the disk, the state machine and the network
// comes out as Work. See doc.go.
type Runtime struct {
	cfg  Config
	core *raft.Raft
	log  *slog.Logger
	work Work

	now      time.Time
	lastTick time.Time
	// leaseBlockedUntil: no lease reads before it (see Tick).
	leaseBlockedUntil time.Time
	// tickTimes holds the clock at the last LeaseTicks ticks, the tick
	// numbered n at n mod LeaseTicks (the start counts as tick 0), so that
	// LeaseTrusted can date the round a lease rests on; ticks counts the
	// Ticks.
	tickTimes []time.Time
	ticks     uint64

	// outstanding are the Readys handed out, oldest first; the first
	// persisted of them are durable and wait for apply room to be advanced.
	outstanding []raft.Ready
	persisted   int // how many of outstanding are durable
	// persistWait is the first tick that saw the disk owe a Ready with no
	// progress since (zero: none has yet). Counting from a tick rather
	// than from the hand-out keeps a run goroutine that was itself held
	// up (the clock read at the last tick is stale) from blaming the disk.
	persistWait time.Time
	stallSince  time.Time // zero unless the disk-stall hand-over began
	lastPersist uint64    // ID of the newest durable Ready

	applyJobs int // handed out, not yet done
	// handed is the index of the last entry handed to the applier.
	handed pb.Index
	// Snapshot policy: lastSnap is the index of the newest snapshot taken,
	// asked for or installed; durableSnap of the newest known durable;
	// sinceSnapBytes the entry data handed out since lastSnap;
	// lastSnapBytes the size of the last one written.
	lastSnap       pb.Index
	durableSnap    pb.Index
	sinceSnapBytes uint64
	lastSnapBytes  uint64
	snapshotting   bool
	// forceToken is the RequestSnapshot waiting for the image in progress
	// (0: none); forcePending one waiting for apply room.
	forceToken, forcePending uint64
	behind                   []pb.SnapshotMeta // see CompactPoint

	counters Counters
}

// Counters count the runtime's policy decisions since it started.
type Counters struct {
	// PipelineFull counts events after which MaxOutstandingReadys Readys
	// were waiting, so only messages that need no persistence left.
	PipelineFull uint64
	// GroupCommits counts PersistDone reports that covered more than one
	// Ready (one fsync for several).
	GroupCommits uint64
	// DiskStallHandOvers and DiskStallStepDowns count the leader's
	// reactions to its own stalled fsync.
	DiskStallHandOvers, DiskStallStepDowns uint64
	// LeaseGaps counts gaps in the ticks that blocked lease reads.
	LeaseGaps uint64
}

// Counters returns the counters.
func (rt *Runtime) Counters() Counters { return rt.counters }

// New starts the runtime of cfg.Core.
func New(cfg Config) (*Runtime, error) {
	if cfg.Core == nil {
		return nil, fmt.Errorf("driver: config: no core")
	}
	if cfg.TickInterval <= 0 || cfg.ElectionTimeout < 2*cfg.TickInterval {
		return nil, fmt.Errorf("driver: config: election timeout %v must be at least twice the tick %v",
			cfg.ElectionTimeout, cfg.TickInterval)
	}
	if cfg.MaxOutstandingReadys <= 0 {
		cfg.MaxOutstandingReadys = DefaultMaxOutstandingReadys
	}
	if cfg.MaxApplyJobs <= 0 {
		cfg.MaxApplyJobs = DefaultMaxApplyJobs
	}
	if cfg.SnapshotSizeFactor < 0 {
		return nil, fmt.Errorf("driver: config: SnapshotSizeFactor %v is negative", cfg.SnapshotSizeFactor)
	}
	if cfg.TickSlack < 0 {
		return nil, fmt.Errorf("driver: config: TickSlack %v is negative", cfg.TickSlack)
	}
	if cfg.LeaseGap <= 0 {
		cfg.LeaseGap = 2 * cfg.TickInterval
	}
	lease := cfg.Core.LeaseTicks()
	if cp := cfg.Core.ClosedPromiseTicks(); cp != 0 {
		if want := ClosedPromiseTicks(lease, cfg.TickInterval, cfg.TickSlack); cp < want {
			return nil, fmt.Errorf("driver: config: the core's closed-connection promise of %d ticks does not outlast a lease of %d ticks with %v of tick slack (want at least %d)",
				cp, lease, cfg.TickSlack, want)
		}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	rt := &Runtime{cfg: cfg, core: cfg.Core, log: logger, now: cfg.Now, lastTick: cfg.Now,
		handed: cfg.Snapshot.Index, lastSnap: cfg.Snapshot.Index, durableSnap: cfg.Snapshot.Index}
	if cfg.Snapshot.Index > 0 {
		rt.behind = []pb.SnapshotMeta{cfg.Snapshot}
	}
	rt.tickTimes = make([]time.Time, lease)
	for i := range rt.tickTimes {
		rt.tickTimes[i] = cfg.Now
	}
	return rt, nil
}

// Core is the core, for queries (Status, ConfState, Lead...) from the
// goroutine that drives the runtime. Changing it other than through the
// Runtime breaks the runtime's bookkeeping.
func (rt *Runtime) Core() *raft.Raft { return rt.core }

// Snapshotting reports whether a snapshot was asked for and is not durable
// (or failed) yet.
func (rt *Runtime) Snapshotting() bool { return rt.snapshotting }

// LastSnapshotBytes is the size of the last snapshot written (0 before the
// first), which SnapshotSizeFactor weighs the log against.
func (rt *Runtime) LastSnapshotBytes() uint64 { return rt.lastSnapBytes }

// Work returns what the events since the last call require, and forgets it.
func (rt *Runtime) Work() Work {
	rt.produce()
	w := rt.work
	rt.work = Work{}
	w.CommitUnsent = rt.core.CommitUnsent()
	return w
}

// SendCommit sends the commit index to the followers no AppendEntries has
// carried it to yet (Work.CommitUnsent); see raft.Raft.SendCommit.
func (rt *Runtime) SendCommit() { rt.core.SendCommit() }

// Tick advances the clock to now and the core by one tick. Missed ticks are
// not replayed: a burst of ticks with no messages processed in between would
// make a leader fail CheckQuorum and followers campaign after a mere
// scheduling delay. A gap (the process was paused, a long GC) instead blocks
// lease reads for one election timeout, because the core's lease is counted
// in ticks and no ticks passed while the world moved on.
//
// An error means the core has stopped (raft.ErrStorageFailed), as Err
// reports: the member must stop.
func (rt *Runtime) Tick(now time.Time) error {
	if rt.noteGap(now) {
		// Time nobody watched does not count against the disk either.
		rt.persistWait = time.Time{}
	}
	rt.lastTick, rt.now = now, now
	rt.ticks++
	rt.tickTimes[rt.ticks%uint64(len(rt.tickTimes))] = now
	if err := rt.core.Tick(); err != nil {
		return err
	}
	rt.checkDiskStall()
	return nil
}

// Err is the error that stopped the core (a failed read of its storage),
// or nil. Once it is set, no Ready or message leaves, every call returns
// it, and the member must stop.
func (rt *Runtime) Err() error { return rt.core.Err() }

// noteGap blocks lease reads when the ticks stopped for more than two
// intervals before now, and reports whether they did.
func (rt *Runtime) noteGap(now time.Time) bool {
	if now.Sub(rt.lastTick) <= rt.cfg.LeaseGap {
		return false
	}
	if !now.Before(rt.leaseBlockedUntil) {
		rt.counters.LeaseGaps++
	}
	rt.leaseBlockedUntil = now.Add(rt.cfg.ElectionTimeout)
	return true
}

// LeaseTrusted reports whether the tick clock has run without a gap long
// enough for a lease read at now to rely on it, and whether the lease, if
// the core holds one, rests on a heartbeat round sent at most LeaseTicks
// intervals plus TickSlack ago by the clock: the round left at or after
// the tick the core names (raft.Raft.LeaseSince) was counted, so the
// lease then ends no later than that long after the send, whatever ticks
// were late or lost.
func (rt *Runtime) LeaseTrusted(now time.Time) bool {
	rt.noteGap(now)
	if !now.After(rt.leaseBlockedUntil) {
		return false
	}
	since, ok := rt.core.LeaseSince()
	if !ok {
		return true // no lease: the core confirms with a round anyway
	}
	if since+uint64(len(rt.tickTimes)) <= rt.ticks {
		return false // not in the window the times are kept for
	}
	sent := rt.tickTimes[since%uint64(len(rt.tickTimes))]
	window := time.Duration(len(rt.tickTimes))*rt.cfg.TickInterval + rt.cfg.TickSlack
	return now.Sub(sent) <= window
}

// Step feeds a message received from a peer.
func (rt *Runtime) Step(m pb.Message) error { return rt.core.Step(m) }

// Propose appends commands (leader only); see raft.Raft.Propose.
func (rt *Runtime) Propose(data ...[]byte) (pb.Index, pb.Term, error) {
	return rt.core.Propose(data...)
}

// ReadIndex asks for a read barrier; see raft.Raft.ReadIndex.
func (rt *Runtime) ReadIndex(ctx []byte) error { return rt.core.ReadIndex(ctx) }

// LeaseRead asks for a lease read at now, which falls back to ReadIndex
// while a clock gap makes the lease untrustworthy.
func (rt *Runtime) LeaseRead(ctx []byte, now time.Time) error {
	if !rt.LeaseTrusted(now) {
		return rt.core.ReadIndex(ctx)
	}
	return rt.core.LeaseRead(ctx)
}

// ReportClosed passes on that the connection to id was closed by the
// other end or refused (see closed.go).
func (rt *Runtime) ReportClosed(id pb.NodeID) { rt.core.ReportClosed(id) }

// ReportUnreachable and ReportSnapshot pass on what the transport learnt.
func (rt *Runtime) ReportUnreachable(id pb.NodeID) { rt.core.ReportUnreachable(id) }

// ReportSnapshot: see raft.Raft.ReportSnapshot.
func (rt *Runtime) ReportSnapshot(id pb.NodeID, ok bool) { rt.core.ReportSnapshot(id, ok) }

// produce hands out Readys while fewer than MaxOutstandingReadys are
// outstanding. When that many are (the fsync is slow or stalled), the
// messages that need no persistence still leave: heartbeats and their
// answers must keep flowing, or a slow disk would pass for a dead server
// and cost an election.
func (rt *Runtime) produce() {
	for rt.core.HasReady() && len(rt.outstanding) < rt.cfg.MaxOutstandingReadys {
		rd := rt.core.Ready()
		if rd.SoftState != nil {
			rt.work.SoftStates = append(rt.work.SoftStates, *rd.SoftState)
			rt.log.Info("role changed", "role", rd.SoftState.Role.String(),
				"leader", uint64(rd.SoftState.Lead), "term", uint64(rt.core.Term()))
		}
		rt.work.ReadStates = append(rt.work.ReadStates, rd.ReadStates...)
		rt.outstanding = append(rt.outstanding, rd)
		rt.work.Persist = append(rt.work.Persist, rd)
		rt.work.Send = append(rt.work.Send, rd.Messages...)
	}
	if len(rt.outstanding) >= rt.cfg.MaxOutstandingReadys {
		rt.counters.PipelineFull++
		rt.work.Send = append(rt.work.Send, rt.core.TakeMessages()...)
	}
}

// PersistDone reports that every Ready up to and including id is durable
// (written and, where MustSync asked, fsynced) and its MessagesAfterPersist
// sent. Readys become durable in the order handed out.
func (rt *Runtime) PersistDone(id uint64) error {
	n := rt.persisted
	for n < len(rt.outstanding) && rt.outstanding[n].ID <= id {
		n++
	}
	if n == rt.persisted || rt.outstanding[n-1].ID != id {
		return fmt.Errorf("driver: Ready %d reported durable out of order (last durable %d)", id, rt.lastPersist)
	}
	if n-rt.persisted > 1 {
		rt.counters.GroupCommits++
	}
	rt.persisted, rt.lastPersist = n, id
	rt.persistWait = time.Time{} // the disk made progress
	rt.stallSince = time.Time{}
	return rt.advance()
}

// advance hands the durable Readys' committed entries to the applier while
// it has room, and advances them.
func (rt *Runtime) advance() error {
	for rt.persisted > 0 {
		rd := &rt.outstanding[0]
		needsApply := rd.Snapshot != nil || len(rd.CommittedEntries) > 0
		if needsApply && rt.applyJobs >= rt.cfg.MaxApplyJobs {
			return nil // ApplyDone resumes
		}
		if needsApply {
			if err := rt.handOut(rd.Snapshot, rd.CommittedEntries); err != nil {
				return err
			}
		}
		if err := rt.core.Advance(*rd); err != nil {
			return fmt.Errorf("driver: %w", err)
		}
		rt.outstanding[0] = raft.Ready{}
		rt.outstanding = rt.outstanding[1:]
		rt.persisted--
	}
	rt.maybeForceSnapshot()
	return nil
}

// handOut makes an apply job and decides whether a snapshot follows it.
// The core must hand out each committed entry once, in order, after any
// snapshot it installs: anything else would apply an entry twice or skip
// one, so it stops the member with the indexes named.
func (rt *Runtime) handOut(snap *pb.SnapshotMeta, ents []pb.Entry) error {
	job := ApplyJob{Snapshot: snap, Entries: ents}
	if snap != nil {
		if snap.Index <= rt.handed {
			return fmt.Errorf("driver: the core hands out snapshot %d after entries up to %d", snap.Index, rt.handed)
		}
		// A received snapshot is durable before the core hears of it.
		rt.handed, rt.lastSnap, rt.durableSnap, rt.sinceSnapBytes = snap.Index, snap.Index, snap.Index, 0
		// The log restarts at it: nothing older is left to compact.
		rt.behind = append(rt.behind[:0], *snap)
	}
	for i := range ents {
		if ents[i].Index != rt.handed+1 {
			return fmt.Errorf("driver: the core hands out entry %d for applying after %d", ents[i].Index, rt.handed)
		}
		rt.handed = ents[i].Index
		rt.sinceSnapBytes += uint64(len(ents[i].Data))
	}
	if rt.snapshotDue() {
		job.TakeSnapshot = true
		rt.snapshotting, rt.lastSnap, rt.sinceSnapBytes = true, rt.handed, 0
	}
	rt.applyJobs++
	rt.work.Apply = append(rt.work.Apply, job)
	return nil
}

// snapshotDue: every SnapshotEntries applied entries, and with
// SnapshotSizeFactor once the log since the last image outweighs it enough.
func (rt *Runtime) snapshotDue() bool {
	if rt.snapshotting || rt.cfg.SnapshotEntries == 0 || uint64(rt.handed-rt.lastSnap) < rt.cfg.SnapshotEntries {
		return false
	}
	f := rt.cfg.SnapshotSizeFactor
	return f == 0 || float64(rt.sinceSnapBytes) >= f*float64(rt.lastSnapBytes)
}

// ApplyDone reports that the oldest apply job handed out is done.
func (rt *Runtime) ApplyDone() error {
	if rt.applyJobs == 0 {
		return fmt.Errorf("driver: ApplyDone with no apply job handed out")
	}
	rt.applyJobs--
	return rt.advance()
}

// RequestSnapshot asks for a snapshot of the applied state now; the answer
// comes back in Work.Snapshots with token (not 0).
func (rt *Runtime) RequestSnapshot(token uint64) {
	if rt.snapshotting || rt.forcePending != 0 {
		rt.work.Snapshots = append(rt.work.Snapshots, SnapshotResult{Token: token, Err: ErrSnapshotInProgress})
		return
	}
	rt.forcePending = token
	rt.maybeForceSnapshot()
}

func (rt *Runtime) maybeForceSnapshot() {
	if rt.forcePending == 0 || rt.applyJobs >= rt.cfg.MaxApplyJobs {
		return
	}
	token := rt.forcePending
	rt.forcePending = 0
	if rt.handed == rt.durableSnap {
		rt.work.Snapshots = append(rt.work.Snapshots, SnapshotResult{Token: token, Index: rt.handed})
		return
	}
	rt.forceToken = token
	rt.snapshotting, rt.lastSnap, rt.sinceSnapBytes = true, rt.handed, 0
	rt.applyJobs++
	rt.work.Apply = append(rt.work.Apply, ApplyJob{TakeSnapshot: true})
}

// SnapshotDone reports the snapshot an apply job asked for: meta is the
// image taken (zero if none could be), size its bytes, err nil if it is
// durable. Once it is, the log is compacted to the point CompactPoint
// picks. A snapshot that failed is still counted among those behind, as
// the next one's compaction may go past it only to a durable one anyway.
func (rt *Runtime) SnapshotDone(meta pb.SnapshotMeta, size uint64, err error) {
	rt.snapshotting = false
	if rt.forceToken != 0 {
		rt.work.Snapshots = append(rt.work.Snapshots, SnapshotResult{Token: rt.forceToken, Index: meta.Index, Err: err})
		rt.forceToken = 0
	}
	if err != nil {
		rt.log.Error("snapshot failed", "index", uint64(meta.Index), "err", err)
	} else {
		rt.lastSnapBytes = size
		rt.durableSnap = max(rt.durableSnap, meta.Index)
	}
	if meta.Index == 0 {
		return
	}
	if n := len(rt.behind); n > 0 && rt.behind[n-1].Index >= meta.Index {
		return // one as new was installed or taken meanwhile
	}
	var to pb.SnapshotMeta
	to, rt.behind = CompactPoint(rt.behind, meta, rt.cfg.SnapshotTrailingEntries)
	rt.behind = append(rt.behind, meta)
	if err == nil && to.Index > 0 {
		rt.work.Compact = append(rt.work.Compact, to)
	}
}

// checkDiskStall hands leadership away when the leader's own fsync has been
// stuck for longer than an election timeout: a leader that cannot persist
// cannot commit, and followers would otherwise wait for it forever. After
// one more election timeout it steps down.
func (rt *Runtime) checkDiskStall() {
	waiting := rt.persisted < len(rt.outstanding)
	if !waiting {
		rt.persistWait = time.Time{}
	} else if rt.persistWait.IsZero() {
		rt.persistWait = rt.now
	}
	if rt.core.Role() != raft.Leader || !waiting || rt.now.Sub(rt.persistWait) < rt.cfg.ElectionTimeout {
		rt.stallSince = time.Time{}
		return
	}
	if rt.stallSince.IsZero() {
		rt.stallSince = rt.now
		to := MostCaughtUpVoter(rt.core.Status(), nil)
		rt.counters.DiskStallHandOvers++
		rt.log.Warn("disk stalled, handing over leadership", "to", uint64(to))
		if to != pb.None {
			_ = rt.core.TransferLeader(to)
		}
		return
	}
	if rt.now.Sub(rt.stallSince) >= rt.cfg.ElectionTimeout {
		rt.counters.DiskStallStepDowns++
		rt.log.Warn("disk still stalled, stepping down")
		rt.core.StepDown()
		rt.stallSince = rt.now // once per election timeout
	}
}

// MostCaughtUpVoter is the voter other than the leader with the longest
// matched log, the one that can take over soonest, among those eligible
// (nil: all); ties go to the lowest id. None when st is not a leader's or no
// voter qualifies. Every hand-over (a stalled disk, a shutdown, an
// operator's transfer with no target) picks with it.
func MostCaughtUpVoter(st raft.Status, eligible func(pb.NodeID) bool) pb.NodeID {
	var to pb.NodeID
	var best pb.Index
	for id, pr := range st.Progress {
		if id == st.ID || pr.Learner || !st.Conf.IsVoter(id) || (eligible != nil && !eligible(id)) {
			continue
		}
		if to == pb.None || pr.Match > best || (pr.Match == best && id < to) {
			to, best = id, pr.Match
		}
	}
	return to
}

// ProposeConfChange proposes a membership change; see raft.Raft.ProposeConfChange.
func (rt *Runtime) ProposeConfChange(t confchange.Target) (pb.Index, pb.Term, error) {
	return rt.core.ProposeConfChange(t)
}

// TransferLeader asks for a leadership transfer; see raft.Raft.TransferLeader.
func (rt *Runtime) TransferLeader(to pb.NodeID) error { return rt.core.TransferLeader(to) }
