// Package loadgen drives N concurrent clients against a key-value store
// for a fixed time and records every operation's latency in an HDR
// histogram. One Run serves every backend (raftkv over HTTP, etcd over
// gRPC), so both stores see the same load: the same key space, value
// size, client count, warm-up and duration.
//
// A Store is safe for concurrent use; Run calls it from Config.Clients
// goroutines at once. Run owns its goroutines and returns after they end.
package loadgen
