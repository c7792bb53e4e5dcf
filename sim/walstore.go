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
// storage.Snapshots (keeping driver.SnapshotsKept files), each replica on
// its own vfs.FaultFS, used as the node uses them:
//   - the core reads entries from the log and, as its latest snapshot, the
//     newest snapshot file, which may be newer than the point the log was
//     compacted to;
//   - what is written, snapshotted and compacted, and what a start
//     recovers, is the runtime's decision (driver.Runtime, driver.Recover),
//     not the store's;
//   - a snapshot a leader sends is stored as a file before the core sees it;
//   - a failed write or fsync is sticky in the log and fatal to the replica;
//   - a crash is FaultFS.CrashRandom: unsynced writes are lost, and half
//     the time the last write is torn.
//
// A snapshot file's data is the state machine's chain hash (8 bytes, big
// endian) followed by the kv store's snapshot stream when the kv state
// machine runs.
const (
	walDir  = "/data/wal"
	snapDir = "/data/snap"
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
	snaps, err := storage.OpenSnapshots(s.fs, snapDir, driver.SnapshotsKept)
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

// Latest is the newest snapshot file.
func (s *walStore) Latest() (pb.SnapshotMeta, bool) { return s.snaps.Latest() }

// Compact drops the log up to meta; it syncs everything saved.
func (s *walStore) Compact(meta pb.SnapshotMeta) error {
	if err := s.log.Compact(meta); err != nil {
		return fmt.Errorf("compacting the log to %d: %w", meta.Index, err)
	}
	s.durable = s.saved
	return nil
}

func (s *walStore) Save(hs pb.HardState, snap *pb.SnapshotMeta, ents []pb.Entry) error {
	if err := s.log.Save(hs, snap, ents); err != nil {
		return err
	}
	if !hs.IsEmpty() {
		s.saved = hs
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
