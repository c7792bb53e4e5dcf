// Package server is raftkv's member process minus the command line: it
// opens a member's data directory, runs a node.Node over a kv.Store, and
// serves the HTTP API of docs/api.md on the client listener.
//
// # Job
//
//   - Writes (PUT, POST ?op=append, DELETE) are validated with
//     kv.Config.Validate, proposed through node.Propose, and answered with
//     the kv.Result. Reads are served from the local store after the read
//     barrier their consistency level asks for (ReadIndex, LeaseRead, or
//     none for stale).
//   - A follower answers writes, linearizable and lease reads, and admin
//     changes with 307 to the leader's published client address, or 503
//     no_leader when it knows none.
//   - Every member publishes its own client address in the replicated
//     configuration (node.SetClientAddr on the leader; a follower asks the
//     leader with PUT /v1/cluster/members/{id}/client-addr), so followers
//     can redirect to the leader and /v1/cluster lists every member's.
//   - Shutdown drains: new requests get 503 shutting_down, in-flight ones
//     finish, a leader hands leadership to the most caught-up voter, and
//     the node stops last.
//
// # Invariants
//
//   - Every answer carries X-Raft-Term and X-Raft-Leader.
//   - An error answer's code says whether a write may still apply
//     (api.MayHaveApplied): 504 unknown_outcome may, and so may 500
//     internal (a failure of the member itself says nothing either way);
//     everything else was refused before it was proposed or decided by
//     the state machine.
//   - Every resource one client can hold is bounded: concurrent requests
//     (MaxConcurrentRequests, 429 busy beyond), body bytes (value limit
//     plus slack, 413), header bytes, and time (read/write/idle timeouts,
//     RequestTimeout for proposals and read barriers).
//   - The cluster id is derived at bootstrap from the sorted initial
//     member list, so every initial member computes the same one, and is
//     persisted in the data directory; a restart reads it back and ignores
//     the member list.
//
// # HTTP/1.1 fast path
//
// On a cleartext client listener, every connection is first read by the
// fast path (fasthttp.go, fastparse.go): it parses each request strictly
// and serves the plainest requests of the hot routes itself (single-key
// GET, HEAD, PUT, POST and DELETE, and batches; Content-Length bodies,
// no Expect, Upgrade or Transfer-Encoding) with the same handler, a
// lighter http.Request, and an answer written with one write. The first
// request it does not accept, from an h2c preface to a malformed line,
// hands the connection with every byte read so far to net/http, which
// serves it from then on: net/http's answers and rules decide everything
// unusual. A client sees the same answers either way, apart from header
// order and the framing of answers between 2 and 64 KiB (a Content-Length
// instead of chunks), and timeouts that may end up to 1/64 early (a
// connection moves its deadlines only by more than that). Each connection
// reuses one request, header and response writer from request to request,
// which the handlers of these routes do not keep once they return; and
// before it reads the next request it lets other goroutines run, so that
// under load the read usually finds the request already there. With TLS,
// net/http serves every connection. A handed-over h2c connection reads
// through a buffer and writes behind an h2Writer (h2write.go), so that
// the answers of many streams leave in one system call.
//
// # Concurrency
//
// net/http runs each request on its own goroutine, and the fast path each
// connection's requests on the connection's goroutine; they share the
// node and the store, both safe for concurrent use. One background goroutine
// (publish) polls the node's status to publish the client address and, on
// a member that joined, to learn the cluster id; another (announce) tells
// the leader this member's client address for the live view (ui.go); a
// third (alarm) raises and clears this member's no_space alarm as its disk
// and the state's quota fill and empty (alarm.go). All exported methods
// are safe for concurrent use.
//
// Operations: /metrics (metrics.go, one Prometheus registry per Server),
// /ui/ and /v1/debug/* (ui.go, ui_announce.go), /debug/applied for the
// black-box cluster tests (applied.go), /debug/pprof/ with EnablePprof
// (pprof.go), and GET /v1/snapshot with RestoreSnapshot for backups
// (backup.go).
package server
