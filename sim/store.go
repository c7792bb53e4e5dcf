package sim

import (
	"errors"
	"fmt"

	"github.com/raftkv/raftkv/driver"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// Store is what a simulated replica persists to: the driver's LogStore plus
// the few things the simulator itself needs. The in-memory model below is
// one implementation; the WAL on a fault-injecting file system is meant to
// be another, chosen by the StoreFactory a Sim is built with.
type Store interface {
	driver.LogStore
	// CreateSnapshot durably records a snapshot of the state machine at i
	// (which must be applied, hence durable) with the configuration in
	// force there, and compacts the log up to it.
	CreateSnapshot(i pb.Index, conf pb.ConfState) error
	// DurableHardState is the hard state a crash now would keep.
	DurableHardState() pb.HardState
	// Crash discards every write not made durable by Sync, as power loss
	// does. Afterwards the store reads as its durable state.
	Crash() error
	// FailNextSync makes the next Sync fail without making anything durable
	// (the failed fsync of a dying disk); the replica must then stop.
	FailNextSync()
}

// StoreFactory builds the empty store of replica id.
type StoreFactory func(id pb.NodeID) Store

// errSyncFailed is the injected fsync failure.
var errSyncFailed = errors.New("sim: injected fsync failure")

// memStore models durability over two raft.MemoryStorage: durable holds
// what survived every Sync, visible what the core reads (every Save, synced
// or not: the page cache). Saves wait in pending until Sync replays them
// onto durable; Crash rebuilds visible from durable.
type memStore struct {
	visible  *raft.MemoryStorage
	durable  *raft.MemoryStorage
	pending  []saveOp
	failSync bool
}

type saveOp struct {
	hs   pb.HardState
	snap *pb.SnapshotMeta
	ents []pb.Entry
}

// NewMemStore is the StoreFactory of the in-memory durability model.
func NewMemStore(pb.NodeID) Store {
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

// CreateSnapshot writes the snapshot to both views: the application writes
// its snapshot file durably before it compacts anything.
func (s *memStore) CreateSnapshot(i pb.Index, conf pb.ConfState) error {
	if err := s.durable.CreateSnapshot(i, conf); err != nil {
		return fmt.Errorf("sim: durable snapshot at %d: %w", i, err)
	}
	if err := s.visible.CreateSnapshot(i, conf); err != nil {
		return fmt.Errorf("sim: snapshot at %d: %w", i, err)
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
