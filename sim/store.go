package sim

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/raftkv/raftkv/driver"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage"
)

// Store is what a simulated replica persists to: the driver's LogStore
// (the core reads it as its raft.Storage; as the node's storage view, its
// Snapshot is the newest snapshot file), the snapshot files beside it, and
// the few things the simulator itself needs. Two implementations: the
// in-memory durability model (NewMemStore) and the production WAL and
// snapshot store on a fault-injecting file system (NewWALStore). The
// runtime's policy (driver.Runtime, driver.Recover) decides what is
// stored, snapshotted and compacted, for both alike.
type Store interface {
	driver.LogStore
	// DurableHardState is the hard state a crash now would keep.
	DurableHardState() pb.HardState
	// Crash discards every write not made durable by Sync, as power loss
	// does, and reopens the store from what is left.
	Crash() error
	// FailNextSync makes the next fsync fail without making anything
	// durable (the failed fsync of a dying disk); the replica must then stop.
	FailNextSync()
	// Compact drops the log up to meta, which a durable snapshot covers.
	Compact(meta pb.SnapshotMeta) error

	// PutImage durably stores a snapshot of the state machine: one the
	// replica took, or one a leader sent (stored before the core hears of it).
	PutImage(img image) error
	// Image reads back the stored snapshot at index i.
	Image(i pb.Index) (image, error)
	// Latest is the newest stored snapshot.
	Latest() (pb.SnapshotMeta, bool)
}

// StoreFactory builds the empty store of replica id; seed (drawn from the
// run's seed and id) feeds any random choice the store makes.
type StoreFactory func(id pb.NodeID, seed uint64) Store

// errSyncFailed is the memory store's injected fsync failure.
var errSyncFailed = errors.New("sim: injected fsync failure")

// isDiskFault reports whether err comes from an injected disk fault, which
// stops the replica (it restarts from what is durable), rather than from a
// bug, which fails the run.
func isDiskFault(err error) bool {
	return errors.Is(err, errSyncFailed) || errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ENOSPC) ||
		errors.Is(err, storage.ErrNoSpace)
}

// memStore models durability over two raft.MemoryStorage: durable holds
// what survived every Sync, visible what the core reads (every Save, synced
// or not: the page cache). Saves wait in pending until Sync replays them
// onto durable; Crash rebuilds visible from durable. Snapshot images are
// durable as soon as they are put (the newest driver.SnapshotsKept are
// kept, as the snapshot files are); Compact compacts both logs.
type memStore struct {
	visible  *raft.MemoryStorage
	durable  *raft.MemoryStorage
	pending  []saveOp
	failSync bool
	imgs     imageStore
}

type saveOp struct {
	hs   pb.HardState
	snap *pb.SnapshotMeta
	ents []pb.Entry
}

// NewMemStore is the StoreFactory of the in-memory durability model.
func NewMemStore(pb.NodeID, uint64) Store {
	return &memStore{visible: raft.NewMemoryStorage(), durable: raft.NewMemoryStorage()}
}

func (s *memStore) InitialState() (pb.HardState, pb.ConfState, error) {
	return s.visible.InitialState()
}

func (s *memStore) Entries(lo, hi pb.Index, maxBytes uint64) ([]pb.Entry, error) {
	return s.visible.Entries(lo, hi, maxBytes)
}

func (s *memStore) Term(i pb.Index) (pb.Term, error) { return s.visible.Term(i) }
func (s *memStore) FirstIndex() pb.Index             { return s.visible.FirstIndex() }
func (s *memStore) LastIndex() pb.Index              { return s.visible.LastIndex() }

// Snapshot is the newest image, as the node's storage view has it.
func (s *memStore) Snapshot() (pb.SnapshotMeta, error) {
	m, _ := s.Latest()
	return m, nil
}

// Latest is the newest image.
func (s *memStore) Latest() (pb.SnapshotMeta, bool) {
	if len(s.imgs.indexes) == 0 {
		return pb.SnapshotMeta{}, false
	}
	img, _ := s.imgs.get(s.imgs.indexes[len(s.imgs.indexes)-1])
	return img.meta(), true
}

// Save applies the write to what the core reads and queues it for Sync.
func (s *memStore) Save(hs pb.HardState, snap *pb.SnapshotMeta, ents []pb.Entry) error {
	op := saveOp{hs: hs, snap: snap, ents: ents}
	if err := applySave(s.visible, op); err != nil {
		return err
	}
	s.pending = append(s.pending, op)
	return nil
}

// applySave writes in the order the Ready contract names: snapshot, then
// entries, then hard state.
func applySave(ms *raft.MemoryStorage, op saveOp) error {
	if op.snap != nil {
		if err := ms.ApplySnapshot(*op.snap); err != nil {
			return err
		}
	}
	if err := ms.Append(op.ents); err != nil {
		return err
	}
	if !op.hs.IsEmpty() {
		ms.SetHardState(op.hs)
	}
	return nil
}

// Sync makes every pending write durable, unless a failure was injected.
func (s *memStore) Sync() error {
	if s.failSync {
		s.failSync = false
		return errSyncFailed
	}
	for _, op := range s.pending {
		if err := applySave(s.durable, op); err != nil {
			return fmt.Errorf("sim: replaying a synced write: %w", err)
		}
	}
	s.pending = s.pending[:0]
	return nil
}

func (s *memStore) FailNextSync() { s.failSync = true }

func (s *memStore) DurableHardState() pb.HardState { return s.durable.HardState() }

func (s *memStore) PutImage(img image) error {
	s.imgs.put(img)
	if n := len(s.imgs.indexes); n > driver.SnapshotsKept {
		s.imgs.pruneBelow(s.imgs.indexes[n-driver.SnapshotsKept])
	}
	return nil
}

func (s *memStore) Image(i pb.Index) (image, error) {
	img, ok := s.imgs.get(i)
	if !ok {
		return image{}, fmt.Errorf("sim: no image at %d", i)
	}
	return img, nil
}

// Compact drops both logs up to meta. Everything up to an applied index
// is durable (apply follows persist), so the durable log holds meta.Index.
func (s *memStore) Compact(meta pb.SnapshotMeta) error {
	if err := s.durable.CreateSnapshot(meta.Index, meta.Conf); err != nil {
		return fmt.Errorf("sim: durable snapshot at %d: %w", meta.Index, err)
	}
	if err := s.visible.CreateSnapshot(meta.Index, meta.Conf); err != nil {
		return fmt.Errorf("sim: snapshot at %d: %w", meta.Index, err)
	}
	return nil
}

// Crash forgets the page cache: visible becomes a copy of durable.
func (s *memStore) Crash() error {
	s.pending = nil
	s.failSync = false
	v := raft.NewMemoryStorage()
	snap, _ := s.durable.Snapshot()
	if err := v.ApplySnapshot(snap); err != nil {
		return err
	}
	if first, last := s.durable.FirstIndex(), s.durable.LastIndex(); first <= last {
		ents, err := s.durable.Entries(first, last+1, 0)
		if err != nil {
			return err
		}
		if err := v.Append(ents); err != nil {
			return err
		}
	}
	v.SetHardState(s.durable.HardState())
	s.visible = v
	return nil
}
