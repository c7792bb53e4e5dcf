// Package raft is the deterministic core of the Raft consensus algorithm
// ("In Search of an Understandable Consensus Algorithm", Ongaro and
// Ousterhout, extended version, Figures 2–13) with the extensions of
// Ongaro's dissertation: PreVote (§9.6), CheckQuorum and the vote lease (§6
// of the paper, the removed-server problem), leader transfer (§3.10),
// ReadIndex and lease reads (§6.4), learners (§4.2.1) and pipelined
// replication with the leader's fsync in parallel (§10.2.1).
//
// A Raft is a pure state machine. Its inputs are Tick, Step, Propose,
// ProposeConfChange, ReadIndex, LeaseRead and TransferLeader; its output is a
// numbered Ready — entries and hard state to persist, messages that may
// leave now, messages that may leave only once the Ready is durable,
// committed entries to apply, a snapshot to install, reads to release —
// acknowledged with Advance. The Ready type documents the order in which a
// runtime must handle it; package driver is the one implementation of that
// order, used by package node and by the simulator.
//
// Where the paper's rules live:
//
//	raft.go         roles and terms (§5.1), Step and the term rules of Figure 2, RequestVote receiver (§5.2, §5.4.1)
//	election.go     elections (§5.2) and PreVote (dissertation §9.6)
//	replication.go  the leader: AppendEntries, nextIndex/matchIndex, commitment (§5.3, §5.4.2, Figure 8)
//	follower.go     AppendEntries and InstallSnapshot receivers (Figure 2, Figure 13)
//	log.go          the log: Log Matching, conflict search, the election restriction (§5.3, §5.4.1)
//	confs.go        membership by joint consensus (§6, Figures 10–11)
//	read.go         ReadIndex and lease reads (§8, dissertation §6.4)
//	transfer.go     leadership transfer (dissertation §3.10)
//	closed.go       the early election after a closed connection to the leader
//	node.go         Ready and Advance: the persistence contract of Figure 2
//
// docs/guide.md walks through the paper section by section with links to
// these functions and to the tests that show them.
//
// Invariants the core keeps (and its tests check): at most one vote per
// term, durable before it is sent; currentTerm durable before any message of
// that term leaves; a leader never overwrites or deletes its own entries,
// and commits by counting replicas only entries of its own term; committed
// entries are never truncated (applied <= committed <= lastIndex); the same
// inputs in the same order produce the same outputs (randomness comes from
// Config.Seed, and members are visited in ascending id order).
// CheckInvariants states the invariants of the core's state in code; the
// test harness and the simulator call it after every Step, Tick and Advance.
//
// A failed storage read (Storage.Term or Entries failing for an entry the
// log holds; ErrCompacted is expected and handled) stops the core rather
// than panicking: Err and Status report the failure, no Ready or message
// leaves after it, and Step, Tick, Advance and every request return it.
//
// The core has no goroutines, no clock and no I/O, and imports only
// package raftpb and its own sub-packages. A Raft is not safe for
// concurrent use: one goroutine owns it. MemoryStorage is not safe for
// concurrent use either.
package raft
