package sim

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/raftkv/raftkv/kv"
	pb "github.com/raftkv/raftkv/raftpb"
)

// image is a state-machine snapshot: enough to carry on applying after it
// and to compare it with every other replica's state at the same index.
type image struct {
	index pb.Index
	term  pb.Term
	// chain is the chain hash of every entry up to index; equal chains mean
	// equal applied histories.
	chain uint64
	// conf is the configuration in force at index.
	conf pb.ConfState
	// kv is the kv store's snapshot stream (nil without the kv state
	// machine).
	kv []byte
}

func (img image) meta() pb.SnapshotMeta {
	return pb.SnapshotMeta{Index: img.index, Term: img.term, Conf: img.conf}
}

// appliedRecord is one applied entry as the state machine saw it.
type appliedRecord struct {
	index pb.Index
	term  pb.Term
	hash  uint64
}

// stateMachine is a replica's deterministic state machine. It is volatile:
// a crash loses it, and restart rebuilds it from the durable snapshot image
// and the committed entries the core hands out again. With the kv state
// machine, it also feeds every committed command to a kv.Store, as the
// server does.
//
// Invariant: applied rises by exactly one per applied entry, or jumps to a
// restored snapshot's index.
type stateMachine struct {
	applied pb.Index
	term    pb.Term
	chain   uint64
	conf    pb.ConfState
	// kv is the real state machine, nil unless the run uses it.
	kv *kv.Store
	// watch follows every change of kv (kvcoord.go).
	watch watchState
	// records holds every entry applied in this incarnation, in order.
	records []appliedRecord
}

// kvConfig keeps the kv store's limits small enough that runs reach them:
// appends past the value bound, sessions forgotten by window and by count.
var kvConfig = kv.Config{MaxValueBytes: 512, SessionWindow: 64, MaxSessions: 16, HistoryRevisions: 48, MaxLeases: 3}

func newStateMachine(withKV bool) stateMachine {
	if withKV {
		return stateMachine{kv: kv.New(kvConfig)}
	}
	return stateMachine{}
}

func (sm *stateMachine) restore(img image) error {
	if sm.kv != nil {
		if err := sm.kv.Restore(bytes.NewReader(img.kv)); err != nil {
			return fmt.Errorf("restoring snapshot %d: %w", img.index, err)
		}
	}
	sm.applied, sm.term, sm.chain, sm.conf = img.index, img.term, img.chain, img.conf
	return nil
}

func (sm *stateMachine) image() (image, error) {
	img := image{index: sm.applied, term: sm.term, chain: sm.chain, conf: sm.conf}
	if sm.kv != nil {
		v, err := sm.kv.Snapshot()
		if err != nil {
			return image{}, err
		}
		var b bytes.Buffer
		if _, err := v.WriteTo(&b); err != nil {
			return image{}, err
		}
		img.kv = b.Bytes()
	}
	return img, nil
}

// apply applies e, which must be the next entry, and returns its hash.
func (sm *stateMachine) apply(e *pb.Entry) (uint64, error) {
	if e.Index != sm.applied+1 {
		return 0, fmt.Errorf("entry %d/%d handed out after applied index %d", e.Index, e.Term, sm.applied)
	}
	h := entryHash(e)
	switch e.Type {
	case pb.EntryConfChange:
		cs, err := pb.DecodeConfState(e.Data)
		if err != nil {
			return 0, fmt.Errorf("configuration entry %d: %w", e.Index, err)
		}
		sm.conf = cs
	case pb.EntryNormal:
		if sm.kv != nil && len(e.Data) > 0 {
			sm.kv.Apply(e.Index, e.Data) // results are the server's business
			if err := sm.checkWatch(); err != nil {
				return 0, fmt.Errorf("entry %d: %w", e.Index, err)
			}
		}
	}
	sm.applied, sm.term = e.Index, e.Term
	sm.chain = chainHash(sm.chain, e.Term, h)
	sm.records = append(sm.records, appliedRecord{index: e.Index, term: e.Term, hash: h})
	return h, nil
}

// imageStore holds the memory store's snapshot images: the ones its
// replica took and the ones it received. They are durable (snapshot
// files), so they survive a crash; those older than the store's snapshot
// are pruned.
type imageStore struct {
	byIndex map[pb.Index]image
	indexes []pb.Index // sorted keys of byIndex
}

func (s *imageStore) put(img image) {
	if s.byIndex == nil {
		s.byIndex = map[pb.Index]image{}
	}
	if _, ok := s.byIndex[img.index]; ok {
		return
	}
	s.byIndex[img.index] = img
	at, _ := slices.BinarySearch(s.indexes, img.index)
	s.indexes = slices.Insert(s.indexes, at, img.index)
}

func (s *imageStore) get(i pb.Index) (image, bool) {
	img, ok := s.byIndex[i]
	return img, ok
}

// pruneBelow drops images older than i.
func (s *imageStore) pruneBelow(i pb.Index) {
	n := 0
	for n < len(s.indexes) && s.indexes[n] < i {
		delete(s.byIndex, s.indexes[n])
		n++
	}
	s.indexes = s.indexes[n:]
}
