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
// and answered with its result.
//
// # Goroutines
//
//   - run owns the core: ticks, received messages, proposals, requests from
//     API calls (as closures), and advancing Readys once persisted. It sends
//     the messages that may leave at once (the leader's AppendEntries go
//     out while its own fsync runs, dissertation §10.2.1).
//   - persist writes each Ready to the WAL and fsyncs (group commit: one
//     Ready carries many proposals), then sends the messages that waited
//     for durability (votes, acknowledgements) and hands committed entries
//     to the applier. A follower keeps answering heartbeats while an fsync
//     is pending because run does not wait for persist; once
//     MaxOutstandingReadys wait for it, run still sends what needs no
//     persistence (raft.Raft.TakeMessages).
//   - apply calls the FSM, resolves proposals and read barriers, and takes
//     snapshot images (FSM.Snapshot must be cheap).
//   - snapshot writes images to the snapshot store and then compacts the
//     log up to the previous snapshot (or an older one, to keep
//     SnapshotTrailingEntries), keeping at least one interval of log behind
//     the newest snapshot so a slow follower can catch up from the log.
//   - while the disk is full, one short-lived goroutine at a time asks the
//     log to prepare its next segment again (space.go: it may wait for an
//     fsync, which run must not).
//   - the transport's goroutines (see package transport).
//
// Queues between them are bounded: proposals (ProposalQueueLen; full means
// ErrBusy), received messages (dropped when full; Raft retransmits),
// outstanding Readys (MaxOutstandingReadys) and apply batches
// (ApplyQueueLen; full stalls persist, which stalls new Readys).
//
// A failed write or fsync stops the node (Err reports it): after a failed
// fsync the page cache may lie, so nothing that depended on it may be
// acknowledged; a restart recovers from what is durable. A full disk is
// not such a failure: the log says so before any write fails, and the
// node stops taking new entries until space is back (space.go).
//
// All exported methods are safe for concurrent use.
package node
