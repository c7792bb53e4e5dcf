package node

// Hooks for the external tests: both read atomics, so a test goroutine may
// call them at any time.

// SnapshotWrittenBytes is the size of the last snapshot written (0 before
// the first), which the size factor weighs the log against.
func SnapshotWrittenBytes(n *Node) uint64 { return n.pub.lastSnapBytes.Load() }

// SnapshotInProgress reports whether the runtime has asked for a snapshot
// that is not written yet.
func SnapshotInProgress(n *Node) bool { return n.pub.snapshotting.Load() }
