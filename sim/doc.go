// Package sim is a deterministic simulator of raftkv clusters: N replicas,
// each a real core driven by the production runtime policy
// (driver.Runtime, with driver.Recover at every start), a durable store
// that loses unsynced writes on a crash (by default the production WAL and
// snapshot files on a fault-injecting file system), a per-replica state
// machine that takes and installs snapshots (on half the seeds the real
// kv.Store), and a seeded network that drops, duplicates, delays, reorders
// and partitions messages. Virtual time is counted in ticks.
//
// The simulator stands in for the node's goroutines (replica.go): the
// Readys, apply jobs and snapshot writes the runtime hands out complete
// after random delays, but only in orders the node's goroutines can
// produce: a durable prefix of the outstanding Readys at a time, under one
// fsync (group commit), apply jobs in order, one snapshot at a time. Runs
// draw the runtime's bounds (MaxOutstandingReadys, MaxApplyJobs) small and
// large, stall disks (fsyncs hang for up to three election timeouts, so a
// stalled leader must hand over) and pause processes (no ticks, messages
// held; a replica that led resumes into a lease read, which the lease
// guard must turn into a ReadIndex); on half the seeds ticks run late as
// a busy run loop's ticker delivers them (one held back, the ones due
// meanwhile dropped, the held one taken together with the next). What it
// does not run: the node's
// goroutines and channels, the TCP transport and the HTTP server.
//
// A run has two phases. In the safety phase random faults and client
// operations (proposals, ReadIndex and lease reads, leader transfers,
// membership changes) are applied for a number of ticks while checkers
// assert the properties of Figure 3 of the Raft paper after every batch of
// Readys a replica makes durable, and after every tick:
//
//   - Election Safety (§5.2)         check_election.go
//   - Leader Append-Only (§5.3)      check_append_only.go
//   - Log Matching (§5.3)            check_log_matching.go
//   - Leader Completeness (§5.4)     check_completeness.go
//   - the commitment rule (§5.4.2, Figure 8: a leader counts replicas
//     only of entries of its term)   check_commit_rule.go
//   - State Machine Safety (§5.4.3)  check_state_machine.go (and, with the
//     kv state machine, equal kv.Store hashes at equal applied indexes)
//   - persistence (Figure 2: term and vote durable before messages leave,
//     terms never decrease, one vote per term)  check_persistence.go
//   - clients (values seen committed survive, commands applied once)
//     check_clients.go
//   - linearizable reads (§6.4, lease reads §6.4.1: an answer reaches
//     every index committed anywhere before the read was asked)
//     check_reads.go
//   - leases (§6.4.1: no leader would answer a lease read once a later
//     term elected a leader)  closed.go
//
// and that no replica's durable commit index passes its durable log (the
// core's own commit index may run ahead of the durable log while Readys
// wait for the disk; the runtime applies only what is durable).
// A run of at least 50 seeds must also have exercised every kind of read,
// snapshots taken and installed, membership changes, crashes (some tearing
// a write), transfers and leader changes (TestSimulation's coverage check).
//
// On a third of the seeds a lease nemesis aims at read leases: bridge
// partitions (two halves that both reach one replica) whose bridge
// restarts and comes back on the side without the leader, few writes, a
// fast network, and lease reads at every replica that believes it leads.
// On a third of the seeds some messages are slow, delayed past half an
// election timeout (the lease margin); where both nemeses meet, the
// bridge's link to the leader is slow and the bridge may instead stop
// hearing the leader while its late answers are still on their way.
// On two thirds of the seeds the network reports closed connections as a
// kernel would (a crashed replica's, a refused send to one that is down),
// and falsely too (links reset at random, partitions answering with RST),
// and the replicas elect early on them (closed.go).
//
// In the liveness phase every fault heals and every crashed replica
// restarts; a leader must then commit a fresh proposal within
// LivenessTicks.
//
// Determinism: everything random comes from math/rand/v2 PCG sources
// seeded by the run's seed (one for the run, one for whether it has slow
// messages); replicas, messages and maps are visited in
// sorted order; nothing reads the wall clock. The same seed replays the
// same run, event for event (TestDeterminism holds this).
//
// Commands:
//
//	go test ./sim                                   # 1000 seeds + scenarios
//	go test ./sim -run TestSimulation -seeds=N -seedstart=S
//	go test ./sim -run TestSimulation -seed=N -v    # replay one seed
//	go test ./sim -run TestSimulation -seed=N -v -tracelen=5000
//	go test ./sim -run TestSimulation -store=wal -fsm=kv   # store: wal|mem|auto, fsm: kv|hash|auto
//	make sim-long SEEDS=100000                      # seeds over GOMAXPROCS workers
//	go test -tags mutation -run TestMutation ./sim  # each named core bug must be caught
//
// Stores (-store, Options.Store). The WAL store (NewWALStore, the default;
// under the race detector the default -store=auto runs it on odd seeds and
// the memory store on even ones, to keep go test -race ./sim short) is the
// production storage path: a storage.Log and a storage.Snapshots on
// the replica's own vfs.FaultFS, seeded from the run's seed, used as the
// node uses them (see walstore.go): the core sees the newest snapshot
// file, and a received snapshot is stored before the core sees it; what
// is snapshotted and compacted, and what a restart recovers, is the
// runtime's decision (driver.Runtime, driver.Recover). A crash is
// FaultFS.CrashRandom (half the crashes tear the last unsynced write) and
// a reopen of the log and snapshot store; an injected fsync (or write)
// failure with EIO is sticky in the log and stops the replica, which
// restarts from what is durable. Segment and cache sizes are drawn small,
// so logs roll, drop segments and read entries back from files.
//
// The in-memory durability model (NewMemStore, -store=mem) holds the
// durable state in a raft.MemoryStorage and unsynced writes in a pending
// buffer; its snapshot images are durable as soon as they are put. The
// runtime decides its snapshots and compaction as for the WAL store.
//
// State machines (-fsm, Options.FSM). The hash-only state machine records
// the chain hash of what it applied. The kv state machine also feeds each
// committed command to a kv.Store, as the server does: clients send kv
// commands (put, append, delete; unconditional, if-absent or if-revision)
// on a small key space, each with its command id as idempotency key;
// snapshots carry the kv snapshot stream, and restarts and installs
// restore it.
//
// The playground (playground.go, playground_act.go, playground_scenes.go)
// drives the same cluster by hand for the browser page of cmd/playground:
// no random faults, the WAL store and the kv state machine, one event (a
// delivery or a tick) at a time; every crash, cut, drop, proposal and
// membership change is a recorded Action, so options and actions replay
// to the same State. The checkers run after every event; a violation
// stops the run.
//
// A Sim (and a Playground) is not safe for concurrent use; independent
// Sims may run in parallel.
package sim
