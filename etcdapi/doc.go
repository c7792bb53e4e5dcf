// Package etcdapi serves etcd's v3 gRPC API (KV, Watch, Lease, Cluster,
// Maintenance; Auth answers as an etcd with auth disabled) over the same
// node.Node and kv.Store as the HTTP API, so that etcd clients, etcdctl
// and etcd's benchmark tool work against raftkv unchanged.
//
// # Job
//
// It is a thin adapter: each request becomes a kv.Command proposed
// through the node (writes), a kv.Store read after the read barrier the
// request asks for (linearizable: ReadIndex, on any member; serializable:
// none), a kv.Watcher (watch), or a node call (membership, leadership).
// The protocol types are etcd's published ones (go.etcd.io/etcd/api/v3).
//
// # Invariants
//
//   - Every member answers every request. A follower forwards writes,
//     lease keep-alives and time-to-live requests to the leader's etcd
//     address: puts, deletes, txns and lease grants and revokes on one
//     stream per leader, many per message (forward.go), the rest as
//     calls of their own. Each member's address is in the replicated member table
//     (node.SetEtcdAddr): a leader sets its own, a follower asks the
//     leader to (publish.go). A forwarded request that meets a member
//     that does not lead either is refused (not leader), never forwarded
//     twice; the member that forwarded it tries again.
//   - A write forwarded to the leader carries an idempotency key, the
//     same on every attempt, so a write retried after an unknown outcome
//     applies at most once. A write served by the leader it reached
//     carries none and is not retried after an unknown outcome, as etcd.
//   - Errors are etcd's (rpctypes): a command that may or may not have
//     applied is reported as etcd reports it, "request timed out"
//     (codes.Unavailable), which the etcd client does not retry for
//     writes.
//   - Headers carry the cluster id, this member's id, the store revision
//     the answer reflects and the Raft term.
//
// # Concurrency
//
// gRPC runs each call on its own goroutine. A watch stream has one
// goroutine receiving from the stream and one handler goroutine that does
// the rest and all the sending: the requests, the leader check, and the
// delivery of the watches whose kv.Watcher the store names ready
// (Watcher.OnReady), so a change wakes one goroutine per stream whatever
// its number of watches. The publish loop, one
// goroutine per Server, keeps this member's etcd address in the member
// table. A follower's stream of forwarded writes has a sender and a
// receiver goroutine; the leader's end has the handler reading frames, a
// goroutine per write and a writer of answers. Server is safe for
// concurrent use.
package etcdapi
