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
// (the core reads it as its raft.Storage), the snapshot files beside it,
// and the few things the simulator itself needs. Two implementations:
// the in-memory durability model (NewMemStore) and the production WAL and
// snapshot store on a fault-injecting file system (NewWALStore).
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

	// PutImage durably stores a snapshot of the state machine: one the
	// replica took, or one a leader sent (stored before the core hears of it).
	PutImage(img image) error
	// Image reads back the stored snapshot at index i.
	Image(i pb.Index) (image, error)
	// Recover is what the runtime does at start: it returns the snapshot the
	// state machine restores (index 0: none), having made the log agree
	// with it.
	Recover() (image, error)
	// TakeSnapshot stores img, which the state machine took at its applied
	// index, and compacts the log as the store's runtime does, keeping at
	// least margin entries behind img where the policy allows. It returns
	// the snapshot the log was compacted to (index 0: none). An error
	// wrapping errSnapshotNotWritten leaves the replica running.
	TakeSnapshot(img image, margin pb.Index) (pb.SnapshotMeta, error)
}

// StoreFactory builds the empty store of replica id; seed (drawn from the
// run's seed and id) feeds any random choice the store makes.
type StoreFactory func(id pb.NodeID, seed uint64) Store

// errSyncFailed is the memory store's injected fsync failure.
var errSyncFailed = errors.New("sim: injected fsync failure")

// errSnapshotNotWritten marks a snapshot that could not be stored: the
// runtime logs it and goes on (the previous snapshot still covers the log).
var errSnapshotNotWritten = errors.New("sim: snapshot not written")

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
// durable as soon as they are put; the log is compacted to the newest
// image at least a margin behind the applied index, and the core sends the
// snapshot the log was compacted to.
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

func (s *memStore) Term(i pb.Index) (pb.Term, error)   { return s.visible.Term(i) }
func (s *memStore) FirstIndex() pb.Index               { return s.visible.FirstIndex() }
func (s *memStore) LastIndex() pb.Index                { return s.visible.LastIndex() }
func (s *memStore) Snapshot() (pb.SnapshotMeta, error) { return s.visible.Snapshot() }

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
	return nil
}

func (s *memStore) Image(i pb.Index) (image, error) {
	img, ok := s.imgs.get(i)
	if !ok {
		return image{}, fmt.Errorf("sim: no image at %d", i)
	}
	return img, nil
}

// Recover restores from the snapshot the log starts after.
func (s *memStore) Recover() (image, error) {
	snap, _ := s.visible.Snapshot()
	if snap.Index == 0 {
		return image{}, nil
	}
	img, err := s.Image(snap.Index)
	if err != nil || img.term != snap.Term {
		return image{}, fmt.Errorf("sim: no image for durable snapshot %d/%d", snap.Index, snap.Term)
	}
	return img, nil
}

// TakeSnapshot keeps img and compacts the log to the newest image at least
// margin entries behind it (MemoryStorage.CreateSnapshot always compacts up
// to the snapshot, so the margin is kept by snapshotting an older image).
func (s *memStore) TakeSnapshot(img image, margin pb.Index) (pb.SnapshotMeta, error) {
	s.imgs.put(img)
	if img.index <= margin {
		return pb.SnapshotMeta{}, nil
	}
	cur, _ := s.visible.Snapshot()
	old, ok := s.imgs.latestAtOrBelow(img.index-margin, cur.Index)
	if !ok {
		return pb.SnapshotMeta{}, nil
	}
	// The application writes its snapshot file durably before it compacts
	// anything: both views take it.
	if err := s.durable.CreateSnapshot(old.index, old.conf); err != nil {
		return pb.SnapshotMeta{}, fmt.Errorf("sim: durable snapshot at %d: %w", old.index, err)
	}
	if err := s.visible.CreateSnapshot(old.index, old.conf); err != nil {
		return pb.SnapshotMeta{}, fmt.Errorf("sim: snapshot at %d: %w", old.index, err)
	}
	s.imgs.pruneBelow(old.index)
	return old.meta(), nil
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
