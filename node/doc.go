// Package node runs a Raft member: it drives the deterministic core in
// package raft with a real clock, the WAL and snapshot store of package
// storage, and the peer network of package transport, and applies committed
// commands to a user's FSM.
//
// Embedding takes three steps: open the storage (OpenStorage), build the
// member with New (every dependency is a Config field), and Start it. Then
// Propose returns the FSM's result once the command is applied; ReadIndex
// and LeaseRead are read barriers; AddLearner, Promote, RemoveMember and
// ChangeVoters change membership by joint consensus; TransferLeadership
// hands over; Status reports; Stop stops.
//
// # Outcomes
//
// Every Propose ends in exactly one of: the FSM's result (applied once);
// an error saying it was definitely not applied (*NotLeaderError, ErrBusy,
// ErrTransferring, ErrNoSpace, ErrStopped, a context error before it was
// sent); or ErrUnknownOutcome (it was appended, then leadership was lost
// before it committed, or the node stopped or the context ended before it
// applied). A proposal committed before its leader stepped down is applied
// and answered with its result; ProposeThroughStepDown waits past the
// step-down for the entry's fate, as etcd's members do.
//
// # Goroutines
//
// The policy (what to persist, apply, snapshot and compact, when, and in
// which order) is not here: it is driver.Runtime, a deterministic
// component the simulator drives too. The node gives it a real clock and
// does the I/O it asks for. Each goroutine's state is a struct of its own
// in the Node (runState, applyState; shared state sits under
// sharedState's mutex or in atomics in published):
//
//   - run owns the runtime and through it the core: ticks, received
//     messages, proposals, API requests (as closures), transport reports,
//     and the completions of the other goroutines' I/O are each one call
//     into the runtime, after which it hands out the work the runtime
//     asks for. It sends the messages that may leave at once (the leader's
//     AppendEntries go out while its own fsync runs, dissertation §10.2.1),
//     and decides when a new commit index that no AppendEntries carries
//     goes out on its own: at once while writes are sparse, else with the
//     next AppendEntries or after a millisecond (commitnotice.go).
//   - persist writes the Readys handed to it and fsyncs once for all that
//     queued up meanwhile (driver.PersistBatch: group commit across
//     Readys), then sends the messages that waited for durability (votes,
//     acknowledgements) and reports the durable prefix. A follower keeps
//     answering heartbeats while an fsync is pending because run does not
//     wait for persist; once MaxOutstandingReadys wait for it, run still
//     sends what needs no persistence.
//   - apply runs the runtime's apply jobs in order: calls the FSM,
//     resolves proposals and read barriers, and takes the snapshot images
//     the runtime asks for (FSM.Snapshot must be cheap).
//   - snapshot writes images to the snapshot store; the runtime then has
//     run compact the log (driver.CompactPoint).
//   - while the disk is full, one short-lived goroutine at a time asks the
//     log to prepare its next segment again (space.go: it may wait for an
//     fsync, which run must not).
//   - the transport's goroutines (see package transport), or, with
//     MemNetwork, one per snapshot being streamed to a peer.
//
// No other goroutine is started. Queues between them are bounded, each by
// a named limit: proposals (ProposalQueueLen; full means ErrBusy),
// received messages (DefaultRecvQueueLen; dropped when full, Raft
// retransmits), API requests (requestQueueLen; callers wait), read
// barriers (MaxPendingReads; more get ErrBusy), outstanding Readys
// (MaxOutstandingReadys) and apply jobs (ApplyQueueLen; full holds back
// Advance, which holds back new Readys), one snapshot at a time, and the
// transport's reports (coalesced per peer).
//
// # Errors
//
// The API returns the node's own errors only (errors.go): what the core,
// raft/confchange and the runtime refuse is translated, its detail kept
// as text.
//
// A failed write or fsync stops the node (Err reports it): after a failed
// fsync the page cache may lie, so nothing that depended on it may be
// acknowledged; a restart recovers from what is durable. A full disk is
// not such a failure: the log says so before any write fails, and the
// node stops taking new entries until space is back (space.go).
//
// All exported methods are safe for concurrent use.
package node
