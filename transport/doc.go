// Package transport carries Raft messages and snapshots between the members
// of one cluster over TCP, optionally with mutual TLS.
//
// # Job
//
// Send never blocks: each message goes to a bounded queue of its peer and is
// written by that peer's writer goroutine; when a queue is full, or the peer
// cannot be reached, messages are dropped, counted, and the Handler hears
// ReportUnreachable (Raft resends); when the peer closed the connection or
// refused a new one, as a dead process's kernel does, it also hears
// ReportClosed (a timeout never counts). SendSnapshot streams a snapshot over a
// connection of its own, chunk by chunk, and reports the outcome with
// ReportSnapshot. Arriving messages go to Handler.HandleMessage; arriving
// snapshots to Handler.HandleSnapshot as an io.Reader.
//
// # Wire
//
// One long-lived TCP connection per peer and direction carries messages:
// the sender dials, the receiver accepts. Every connection opens with a
// handshake (magic, protocol version, stream kind, cluster id, sender id,
// receiver id, CRC32C) that the receiver answers with a status; then come
// frames of [u32 length][u32 CRC32C][payload]. See wire.go.
//
// # Goroutines
//
//   - accept loop (one): owns the listener; starts a serve goroutine per
//     connection, up to MaxInboundConns.
//   - serve (one per accepted connection): owns that connection and its
//     read buffer; runs TLS, the handshake, then the message or snapshot
//     stream, calling Handler.HandleMessage / HandleSnapshot.
//   - peer writer (one per peer, peer.run): owns the outbound message
//     connection, its bufio.Writer and encode buffer; dials with backoff,
//     drains the queue a batch at a time, one flush per batch.
//   - connection watcher (one per outbound message connection): blocks in
//     Read so that a close by the receiver is seen while idle; joined by the
//     writer before it redials.
//   - snapshot sender (at most one per peer, while a transfer runs): owns
//     the snapshot connection and the caller's data; calls ReportSnapshot.
//   - reporter (one): delivers ReportUnreachable, ReportClosed and
//     refused-snapshot reports, so that no Handler method runs on a goroutine that is inside
//     a Transport method.
//
// All but the watcher are counted in Transport.wg, which Stop waits for; a
// watcher is joined by its writer. RemovePeer ends the peer's writer (and
// waits for it), its snapshot sender and its inbound connections.
//
// # Invariants
//
//   - Memory is bounded: queues by SendQueueLen, frames by MaxFrameBytes
//     (checked before anything is allocated, and buffers grow with the
//     bytes that actually arrive), snapshots by SnapshotChunkBytes on each
//     side, connections by MaxInboundConns.
//   - A connection is only served after its handshake names this cluster,
//     this member as receiver, and a sender added with AddPeer; anything
//     else is closed with one rate-limited log line. A message whose From
//     differs from the handshake's sender is dropped.
//   - A frame that is oversized, truncated, fails its checksum or does not
//     decode closes its connection; the transport never panics on input.
//   - Messages to one peer leave in Send order on one connection; order is
//     not promised across a reconnection.
//   - At most one snapshot transfer is in flight per peer; an interrupted
//     transfer is reported failed and can simply be sent again.
//   - After Stop returns no goroutine of the transport remains and no
//     Handler method is called.
//
// # Concurrency
//
// All exported methods of Transport are safe for concurrent use. Handler
// methods are called concurrently from several goroutines (one per inbound
// stream plus the snapshot senders and the reporter) and must be safe for
// that; they must not block on a caller of Stop, which waits for them.
//
// The package uses only the standard library.
package transport
