package node

// Hooks for the external tests: both read atomics, so a test goroutine may
// call them at any time.

// SnapshotWrittenBytes is the size of the last snapshot written (0 before
// the first), which the size factor weighs the log against.
func SnapshotWrittenBytes(n *Node) uint64 { return n.lastSnapBytes.Load() }

// SnapshotInProgress reports whether a snapshot has been taken and is
// still being written.
func SnapshotInProgress(n *Node) bool { return n.snapshotting.Load() }
