package sim

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"syscall"

	"github.com/raftkv/raftkv/driver"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage"
	"github.com/raftkv/raftkv/storage/vfs"
)

// The WAL store is the production storage path: a storage.Log and a
// storage.Snapshots, each replica on its own vfs.FaultFS, used as the node
// runtime uses them (node/persist.go, node/apply.go, node.recover):
//   - the core reads entries from the log and, as its latest snapshot, the
//     newest snapshot file, which may be newer than the point the log was
//     compacted to;
//   - a snapshot the replica takes is written as a file first; the log is
//     then compacted to the newest earlier snapshot at least the trailing
//     margin behind it (driver.CompactPoint, with the run's snapshot margin
//     as SnapshotTrailingEntries), so at least one interval of log stays
//     for followers a little behind; a snapshot that cannot be written is
//     logged and skipped;
//   - a snapshot a leader sends is stored as a file before the core sees it;
//   - at start the state machine restores the newest snapshot file, and if
//     the log does not hold that snapshot's last entry (the log record that
//     installs it was lost in a crash) the snapshot is installed in the log;
//   - a failed write or fsync is sticky in the log and fatal to the replica;
//   - a crash is FaultFS.CrashRandom: unsynced writes are lost, and half
//     the time the last write is torn.
//
// A snapshot file's data is the state machine's chain hash (8 bytes, big
// endian) followed by the kv store's snapshot stream when the kv state
// machine runs.
const (
	walDir        = "/data/wal"
	snapDir       = "/data/snap"
	snapshotsKept = 3 // as node.SnapshotsKept
)

// walStore is a replica's WAL and snapshot store on its FaultFS.
type walStore struct {
	fs    *vfs.FaultFS
	opts  storage.Options
	log   *storage.Log
	snaps *storage.Snapshots
	rng   *rand.Rand
	// tearing makes half the crashes tear the last write (the default).
	tearing bool
	// lastCrashTorn: the last Crash tore a write (counted in Stats).
	lastCrashTorn bool
	// behind lists the snapshots the log may be compacted to, oldest
	// first (node's snapsBehind): the one restored at start or installed,
	// and those taken since.
	behind []pb.SnapshotMeta
	// saved and durable track the hard state: Save records it, a Sync that
	// returns without error makes it durable (the log's contract).
	saved, durable pb.HardState
}

var quiet = slog.New(slog.DiscardHandler)

// NewWALStore is the StoreFactory of the production storage path. Segment
// and cache sizes are drawn from seed, small enough that logs roll over
// segments, remove them after compaction and read entries back from files.
func NewWALStore(_ pb.NodeID, seed uint64) Store {
	rng := rand.New(rand.NewPCG(seed, 0x3a1))
	opts := storage.Options{
		SegmentBytes: int64(512 + rng.IntN(8<<10)),
		CacheBytes:   []int64{-1, 1 << 10, 0}[rng.IntN(3)],
		Logger:       quiet,
	}
	s := &walStore{fs: vfs.NewFaultFS(mix64(seed)), opts: opts, rng: rng, tearing: true}
	if err := s.open(); err != nil {
		panic(fmt.Sprintf("sim: opening an empty WAL store: %v", err))
	}
	return s
}

func (s *walStore) open() error {
	log, err := storage.Open(s.fs, walDir, s.opts)
	if err != nil {
		return err
	}
	snaps, err := storage.OpenSnapshots(s.fs, snapDir, snapshotsKept)
	if err != nil {
		return err
	}
	s.log, s.snaps = log, snaps
	hs, _, err := log.InitialState()
	if err != nil {
		return err
	}
	s.saved, s.durable = hs, hs
	return nil
}

func (s *walStore) InitialState() (pb.HardState, pb.ConfState, error) {
	return s.log.InitialState()
}

func (s *walStore) Entries(lo, hi pb.Index, maxBytes uint64) ([]pb.Entry, error) {
	return s.log.Entries(lo, hi, maxBytes)
}

func (s *walStore) Term(i pb.Index) (pb.Term, error) { return s.log.Term(i) }
func (s *walStore) FirstIndex() pb.Index             { return s.log.FirstIndex() }
func (s *walStore) LastIndex() pb.Index              { return s.log.LastIndex() }

// Snapshot is the newest snapshot file, as the node's storage view has it.
func (s *walStore) Snapshot() (pb.SnapshotMeta, error) {
	m, _ := s.snaps.Latest()
	return m, nil
}

func (s *walStore) Save(hs pb.HardState, snap *pb.SnapshotMeta, ents []pb.Entry) error {
	if err := s.log.Save(hs, snap, ents); err != nil {
		return err
	}
	if !hs.IsEmpty() {
		s.saved = hs
	}
	if snap != nil {
		// The log restarts at it: nothing older is left to compact.
		s.behind = append(s.behind[:0], *snap)
	}
	return nil
}

func (s *walStore) Sync() error {
	if err := s.log.Sync(); err != nil {
		return err
	}
	s.durable = s.saved
	return nil
}

func (s *walStore) DurableHardState() pb.HardState { return s.durable }

// FailNextSync makes one of the next few fsyncs fail with EIO (the next
// one half the time): letting a few succeed first moves the fault into the
// middle of multi-step operations, such as a segment roll, or a received
// snapshot stored as a file whose log record then cannot be synced.
func (s *walStore) FailNextSync() { s.fs.FailSyncAfter(s.faultSkip(), syscall.EIO) }

// FailNextWrite makes one of the next few writes fail with EIO or ENOSPC:
// a failing or full disk.
func (s *walStore) FailNextWrite() {
	err := syscall.EIO
	if s.rng.IntN(2) == 0 {
		err = syscall.ENOSPC
	}
	s.fs.FailWriteAfter(s.faultSkip(), err)
}

func (s *walStore) faultSkip() int {
	if s.rng.IntN(2) == 0 {
		return 0
	}
	return 1 + s.rng.IntN(3)
}

// Crash loses what was not synced, perhaps tearing the last write, and
// reopens the log and snapshot store from what is left, as a restarted
// process does (a torn tail is cut off; corruption fails the run).
func (s *walStore) Crash() error {
	s.fs.FailSyncAfter(0, nil)
	s.fs.FailWriteAfter(0, nil)
	if s.tearing {
		s.lastCrashTorn = s.fs.CrashRandom()
	} else {
		s.fs.Crash()
	}
	s.log, s.snaps = nil, nil
	if err := s.open(); err != nil {
		return fmt.Errorf("reopening the WAL store: %w", err)
	}
	return nil
}

func (s *walStore) PutImage(img image) error {
	w, err := s.snaps.Create(img.meta())
	if err != nil {
		return err
	}
	defer w.Abort()
	var chain [8]byte
	binary.BigEndian.PutUint64(chain[:], img.chain)
	if _, err := w.Write(chain[:]); err != nil {
		return err
	}
	if _, err := w.Write(img.kv); err != nil {
		return err
	}
	return w.Commit()
}

func (s *walStore) Image(i pb.Index) (image, error) {
	meta, rc, err := s.snaps.Open(i)
	if err != nil {
		return image{}, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc) // to io.EOF: the checksum is verified
	if err != nil {
		return image{}, err
	}
	if len(data) < 8 {
		return image{}, fmt.Errorf("sim: snapshot %d holds %d bytes", i, len(data))
	}
	img := image{index: meta.Index, term: meta.Term, conf: meta.Conf,
		chain: binary.BigEndian.Uint64(data)}
	if len(data) > 8 {
		img.kv = data[8:]
	}
	return img, nil
}

// Recover is node.recover: restore from the newest snapshot file, and
// install it in the log if the log does not hold its last entry.
func (s *walStore) Recover() (image, error) {
	meta, ok := s.snaps.Latest()
	s.behind = s.behind[:0]
	if !ok {
		return image{}, nil
	}
	s.behind = append(s.behind, meta)
	img, err := s.Image(meta.Index)
	if err != nil {
		return image{}, err
	}
	if t, err := s.log.Term(meta.Index); err != nil || t != meta.Term {
		hs, _, err := s.log.InitialState()
		if err != nil {
			return image{}, err
		}
		hs.Commit = max(hs.Commit, meta.Index)
		hs.Term = max(hs.Term, meta.Term)
		if err := s.Save(hs, &meta, nil); err != nil {
			return image{}, fmt.Errorf("installing snapshot %d in the log: %w", meta.Index, err)
		}
		if err := s.Sync(); err != nil {
			return image{}, fmt.Errorf("installing snapshot %d in the log: %w", meta.Index, err)
		}
	}
	return img, nil
}

// TakeSnapshot writes img as a snapshot file and compacts the log to the
// newest earlier snapshot at least trailing entries behind it
// (node.writeSnapshot, driver.CompactPoint). Like the node, it counts img
// among the snapshots behind even when writing it fails.
func (s *walStore) TakeSnapshot(img image, trailing pb.Index) (pb.SnapshotMeta, error) {
	meta := img.meta()
	var to pb.SnapshotMeta
	to, s.behind = driver.CompactPoint(s.behind, meta, uint64(trailing))
	s.behind = append(s.behind, meta)
	if err := s.PutImage(img); err != nil {
		return pb.SnapshotMeta{}, fmt.Errorf("%w: %w", errSnapshotNotWritten, err)
	}
	if to.Index == 0 {
		return pb.SnapshotMeta{}, nil
	}
	if err := s.log.Compact(to); err != nil {
		return pb.SnapshotMeta{}, fmt.Errorf("compacting the log to %d: %w", to.Index, err)
	}
	s.durable = s.saved // Compact syncs everything saved
	return to, nil
}

// FillDisk bounds the file system to what it uses plus slack bytes.
func (s *walStore) FillDisk(slack int64) { s.fs.SetCapacity(s.fs.Used() + slack) }

// FreeDisk lifts the bound, and has the log notice at once.
func (s *walStore) FreeDisk() {
	s.fs.SetCapacity(0)
	s.log.RetrySpace()
}

func (s *walStore) DiskFull() bool { return s.fs.Capacity() != 0 }

func (s *walStore) EntryRoom() int64 { return s.log.EntryRoom() }
func (s *walStore) RetrySpace()      { s.log.RetrySpace() }
