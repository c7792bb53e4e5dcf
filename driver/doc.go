// Package driver is the runtime policy of a Raft member in one
// deterministic, single-threaded component (Runtime), and the few I/O
// helpers that go with it (PersistBatch, Recover). Package node wraps it
// with goroutines and the real clock; package sim steps it with virtual
// time and completes its I/O in random orders and after random delays. So
// the simulator runs the production policy, not a copy of it.
//
// # Job
//
// The Runtime owns the core (raft.Raft). Events come in as method calls:
// Tick(now), Step, Propose, ReadIndex, LeaseRead(now), the transport's
// reports, and the completions of the I/O it asked for: PersistDone(id),
// ApplyDone, SnapshotDone. What the events require comes out as Work:
// Readys to persist, messages to send, apply jobs (with a snapshot to take
// after some of them), log compactions, and answers to RequestSnapshot. It
// decides:
//
//   - Ready pipelining: up to MaxOutstandingReadys Readys are handed out
//     before the first is durable; while that many wait, the messages that
//     need no persistence still leave (raft.Raft.TakeMessages), so a slow
//     disk does not pass for a dead server. The persister may cover several
//     Readys with one fsync (group commit, PersistBatch).
//   - the apply hand-off: a durable Ready's committed entries (or snapshot)
//     go to the applier as one job, at most MaxApplyJobs outstanding; a
//     full applier holds back Advance, which holds back new Readys.
//   - snapshots and compaction: an image every SnapshotEntries applied
//     entries (and, with SnapshotSizeFactor, only once the log since the
//     last one outweighs it), one at a time; once durable, the log is
//     compacted to CompactPoint's choice. RequestSnapshot forces one.
//   - the disk-stall hand-over: a leader whose fsync has made no progress
//     for an election timeout hands leadership to MostCaughtUpVoter, and
//     steps down after one more.
//   - the lease guard: a gap between ticks longer than LeaseGap (a paused
//     process) makes lease reads fall back to ReadIndex for one election
//     timeout, and so does a lease whose heartbeat round was sent, by the
//     clock, longer than LeaseTicks intervals plus TickSlack ago (late
//     ticks stretch a lease counted in ticks); ClosedPromiseTicks is the shortest
//     vote refusal after a closed connection to the leader that this
//     keeps safe (closed.go), and New rejects a core with a shorter one.
//
// Recover is the policy of a start: restore from the newest snapshot, and
// install it in the log when the crash lost the record that did.
//
// # Invariants
//
// The persistence contract of raft/ready.go holds by construction: a
// Ready's MessagesAfterPersist leave only from PersistBatch, after the
// fsync that covers it; its committed entries are handed to the applier
// only after PersistDone reports it durable, and it is advanced only after
// that hand-off; Readys are persisted, reported and advanced in the order
// handed out (PersistDone rejects any other). The core must hand out each
// committed entry once, in order, after any snapshot it installs; the
// Runtime checks it and stops the member otherwise (an error from
// PersistDone or ApplyDone), rather than apply an entry twice or skip
// one. Apply jobs are applied in the order handed out. Counters count the
// policy's decisions (group commits, a full pipeline, stall hand-overs,
// lease gaps) so tests and the simulator can show they happened.
//
// # Concurrency
//
// None: a Runtime is driven from one goroutine (node's run goroutine, or
// the simulator). Nothing in it reads the clock or a random source.
package driver
