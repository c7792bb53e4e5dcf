// Package client is the Go client of raftkv's HTTP API.
//
// A Client knows several endpoints. It sends writes, linearizable and
// lease reads and admin changes to the leader it last learned of (from a
// 307's Location, the X-Raft-Leader header and GET /v1/cluster), follows
// redirects itself, and moves on to another endpoint when one is down,
// draining, or has no leader, backing off between rounds, until the
// context ends.
//
// # Exactly once
//
// Every key-value write carries an Idempotency-Key, generated once per
// call and reused by each of its retries, so a write retried after a lost
// answer (a killed leader, a 504) is applied at most once: the state
// machine answers a repeat with the first attempt's result. A write whose
// outcome could not be learned before the context ended fails with an
// error for which IsUnknownOutcome is true; any other error means it was
// not applied. Admin changes are not idempotent and are not retried once
// they may have reached a leader.
//
// # Concurrency and batching
//
// A Client is safe for concurrent use; it shares one http.Client and
// guards its leader cache with a mutex. Put, Append, Delete and Get calls
// from many goroutines are coalesced: at most Config.MaxBatchInflight
// requests of a kind (writes, or reads at one consistency level) are in
// flight, and calls that arrive while they all are wait and leave together
// as one POST /v1/batch. Each call still gets its own answer, and its own
// retries: an op that the batch answered no_leader or busy is resent
// alone, and a batch whose answer was lost is resent whole, which the
// Idempotency-Keys make safe. A lone caller never waits for a batch.
package client
