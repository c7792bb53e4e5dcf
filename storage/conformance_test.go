package storage

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

// TestConformanceWithMemoryStorage drives a *Log and a raft.MemoryStorage
// through the same random operations (appends, rewrites, hard states,
// snapshots, compactions, restarts of the Log) and checks after each one
// that every raft.Storage method answers alike, errors included.
func TestConformanceWithMemoryStorage(t *testing.T) {
	for seed := uint64(0); seed < 100; seed++ {
		if err := conformanceRun(t, seed); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
}

func conformanceRun(t *testing.T, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 7))
	fs := vfs.NewFaultFS(seed)
	segBytes := 300 + rng.Int64N(2000)
	l := openLog(t, fs, testDir, segBytes)
	defer func() { l.Close() }()
	ms := raft.NewMemoryStorage()
	term := pb.Term(1)
	for op := 0; op < 60; op++ {
		var desc string
		var errM, errL error
		switch r := rng.IntN(10); {
		case r < 5:
			// Never rewrite committed entries: Raft does not, and the
			// Log refuses a commit index past its end.
			lo := pb.Index(max(1, int64(ms.LastIndex())+1-rng.Int64N(4), int64(ms.HardState().Commit)+1))
			if rng.IntN(20) == 0 {
				lo += 2 // a gap: both must refuse
			}
			if t0, err := ms.Term(lo - 1); err == nil {
				term = max(term, t0)
			}
			if lo <= ms.LastIndex() {
				term++
			}
			ents := mkEnts(lo, lo+pb.Index(1+rng.IntN(6)), term, rng.IntN(120))
			desc = fmt.Sprintf("append %d..%d/%d", lo, ents[len(ents)-1].Index, term)
			errM = ms.Append(ents)
			errL = l.Save(pb.HardState{}, nil, ents)
		case r < 6:
			hs := pb.HardState{Term: term, Vote: pb.NodeID(rng.IntN(3)), Commit: pb.Index(rng.Int64N(int64(ms.LastIndex()) + 1))}
			desc = fmt.Sprintf("hard state %+v", hs)
			ms.SetHardState(hs)
			errL = l.Save(hs, nil, nil)
		case r < 7:
			term++
			snap := pb.SnapshotMeta{Index: pb.Index(max(1, int64(ms.LastIndex())+rng.Int64N(5)-2, int64(ms.HardState().Commit))), Term: term, Conf: pb.ConfState{Voters: []pb.NodeID{1, 2}}}
			desc = fmt.Sprintf("apply snapshot %d/%d", snap.Index, snap.Term)
			errM = ms.ApplySnapshot(snap)
			if errM == nil {
				errL = l.Save(pb.HardState{}, &snap, nil)
			} else if l.Save(pb.HardState{}, &snap, nil) == nil {
				errL = nil
			} else {
				errL = errM
			}
		case r < 9:
			i := ms.FirstIndex() + pb.Index(rng.IntN(int(ms.LastIndex()-ms.FirstIndex()+3)))
			conf := pb.ConfState{Voters: []pb.NodeID{pb.NodeID(1 + rng.IntN(3))}}
			desc = fmt.Sprintf("snapshot at %d", i)
			errM = ms.CreateSnapshot(i, conf)
			tm, _ := ms.Term(i)
			if errM == nil {
				errL = l.Compact(pb.SnapshotMeta{Index: i, Term: tm, Conf: conf})
			} else {
				errL = l.Compact(pb.SnapshotMeta{Index: i, Term: 0, Conf: conf})
			}
		default:
			desc = "restart"
			must(t, l.Close())
			l = openLog(t, fs, testDir, segBytes)
		}
		if (errM == nil) != (errL == nil) {
			return fmt.Errorf("op %d %s: memory says %v, log says %v", op, desc, errM, errL)
		}
		if err := compareStorage(rng, ms, l); err != nil {
			return fmt.Errorf("op %d %s: %v", op, desc, err)
		}
		if rng.IntN(3) == 0 {
			must(t, l.Sync())
		}
	}
	return nil
}

func compareStorage(rng *rand.Rand, ms *raft.MemoryStorage, l *Log) error {
	if ms.FirstIndex() != l.FirstIndex() || ms.LastIndex() != l.LastIndex() {
		return fmt.Errorf("range [%d,%d] vs [%d,%d]", ms.FirstIndex(), ms.LastIndex(), l.FirstIndex(), l.LastIndex())
	}
	hm, cm, _ := ms.InitialState()
	hl, cl, err := l.InitialState()
	if err != nil || hm != hl || !cm.Equal(cl) {
		return fmt.Errorf("initial state %v %v vs %v %v (%v)", hm, cm, hl, cl, err)
	}
	sm, _ := ms.Snapshot()
	sl, _ := l.Snapshot()
	if sm.Index != sl.Index || sm.Term != sl.Term || !sm.Conf.Equal(sl.Conf) {
		return fmt.Errorf("snapshot %+v vs %+v", sm, sl)
	}
	for i := pb.Index(0); i <= ms.LastIndex()+2; i++ {
		tm, em := ms.Term(i)
		tl, el := l.Term(i)
		if tm != tl || !sameErr(em, el) {
			return fmt.Errorf("Term(%d): %d,%v vs %d,%v", i, tm, em, tl, el)
		}
	}
	for range 10 {
		lo := pb.Index(rng.Int64N(int64(ms.LastIndex()) + 3))
		hi := lo + pb.Index(rng.Int64N(int64(ms.LastIndex()-min(lo, ms.LastIndex()))+3))
		maxBytes := uint64(rng.IntN(3)) * uint64(rng.IntN(600))
		em, errM := ms.Entries(lo, hi, maxBytes)
		el, errL := l.Entries(lo, hi, maxBytes)
		if !sameErr(errM, errL) {
			return fmt.Errorf("Entries(%d,%d,%d): %v vs %v", lo, hi, maxBytes, errM, errL)
		}
		if err := entsDiff(em, el); err != nil {
			return fmt.Errorf("Entries(%d,%d,%d): %v", lo, hi, maxBytes, err)
		}
	}
	return nil
}

func sameErr(a, b error) bool {
	for _, e := range []error{raft.ErrCompacted, raft.ErrUnavailable} {
		if errors.Is(a, e) != errors.Is(b, e) {
			return false
		}
	}
	return (a == nil) == (b == nil)
}
