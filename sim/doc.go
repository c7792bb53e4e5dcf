// Package sim is a deterministic simulator for the raft core: N replicas,
// each a real core driven by the production Ready loop (driver.Handle), a
// durable store that loses unsynced writes on a crash, a per-replica state
// machine that takes and installs snapshots, and a seeded network that
// drops, duplicates, delays, reorders and partitions messages. Virtual time
// is counted in ticks.
//
// A run has two phases. In the safety phase random faults and client
// operations (proposals, ReadIndex, leader transfers, membership changes)
// are applied for a number of ticks while checkers assert the properties of
// Figure 3 of the Raft paper after every Ready every replica handles, and
// after every tick:
//
//   - Election Safety (§5.2)         check_election.go
//   - Leader Append-Only (§5.3)      check_append_only.go
//   - Log Matching (§5.3)            check_log_matching.go
//   - Leader Completeness (§5.4)     check_completeness.go
//   - State Machine Safety (§5.4.3)  check_state_machine.go
//   - persistence (Figure 2: term and vote durable before messages leave,
//     terms never decrease, one vote per term)  check_persistence.go
//   - clients (values seen committed survive, commands applied once,
//     ReadIndex not stale)          check_clients.go
//
// In the liveness phase every fault heals and every crashed replica
// restarts; a leader must then commit a fresh proposal within
// LivenessTicks.
//
// Determinism: everything random comes from one math/rand/v2 PCG source
// seeded by the run's seed; replicas, messages and maps are visited in
// sorted order; nothing reads the wall clock. The same seed replays the
// same run, event for event (TestDeterminism holds this).
//
// Commands:
//
//	go test ./sim                                   # 1000 seeds + scenarios
//	go test ./sim -run TestSimulation -seeds=N -seedstart=S
//	go test ./sim -run TestSimulation -seed=N -v    # replay one seed
//	go test ./sim -run TestSimulation -seed=N -v -tracelen=5000
//	make sim-long SEEDS=100000                      # seeds over GOMAXPROCS workers
//
// Stores: the in-memory durability model (NewMemStore) holds the durable
// state in a raft.MemoryStorage and unsynced writes in a pending buffer. A
// replica's store is built by Options.Store, so a WAL on the faulty vfs
// replaces it with one constructor. Snapshots: every few applied entries a
// replica keeps an image of its state machine; it compacts its log to the
// newest image at least a margin behind its applied index
// (MemoryStorage.CreateSnapshot always compacts up to the snapshot, so the
// margin is kept by snapshotting an older image).
//
// A Sim is not safe for concurrent use; independent Sims may run in
// parallel.
package sim
