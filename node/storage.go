package node

import (
	"fmt"
	"github.com/raftkv/raftkv/driver"
	"path/filepath"

	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage"
	"github.com/raftkv/raftkv/storage/vfs"
)

// SnapshotsKept is how many snapshot files are kept (the runtime's rule,
// driver.SnapshotsKept, which the simulator keeps too).
const SnapshotsKept = driver.SnapshotsKept

// OpenStorage opens (creating if needed) the WAL in dir/wal and the
// snapshot store in dir/snap on fs (vfs.OS() for the real disk).
func OpenStorage(fs vfs.FS, dir string) (LogStore, SnapshotStore, error) {
	log, err := storage.Open(fs, filepath.Join(dir, "wal"), storage.Options{})
	if err != nil {
		return nil, nil, fmt.Errorf("node: %w", err)
	}
	snaps, err := storage.OpenSnapshots(fs, filepath.Join(dir, "snap"), SnapshotsKept)
	if err != nil {
		log.Close()
		return nil, nil, fmt.Errorf("node: %w", err)
	}
	return log, snapStore{snaps}, nil
}

// snapStore adapts *storage.Snapshots to SnapshotStore.
type snapStore struct{ *storage.Snapshots }

func (s snapStore) Create(meta pb.SnapshotMeta) (SnapshotSink, error) {
	return s.Snapshots.Create(meta)
}
