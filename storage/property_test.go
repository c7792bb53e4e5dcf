package storage

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

var propertySeeds = flag.Int("storage.seeds", 300, "seeds for TestPropertyCrashRecovery")

// TestPropertyCrashRecovery runs random Save/Sync/Compact/rewrite/restart
// sequences on FaultFS, with crashes at random points, some during a flush
// (a failed write or fsync followed by power loss that may tear the last
// write). After every crash the reopened log must equal the model's state
// at some record boundary between the last successful Sync and the last
// Save: nothing synced is lost, nothing is corrupt, and replaced entries
// never come back. At the end, a bit flipped in any synced record but the
// very last must make Open refuse. Run more seeds with -storage.seeds=N.
func TestPropertyCrashRecovery(t *testing.T) {
	for seed := 0; seed < *propertySeeds; seed++ {
		p := newPropRun(t, uint64(seed))
		if err := p.run(); err != nil {
			t.Fatalf("seed %d: %v\ntrace:\n%s", seed, err, strings.Join(p.trace, "\n"))
		}
	}
}

// model is what the log should show.
type model struct {
	hard pb.HardState
	snap pb.SnapshotMeta
	ents []pb.Entry // entries after snap
}

func (m model) last() pb.Index { return m.snap.Index + pb.Index(len(m.ents)) }

func (m model) term(i pb.Index) pb.Term {
	if i == m.snap.Index {
		return m.snap.Term
	}
	return m.ents[i-m.snap.Index-1].Term
}

func (m model) state() logState {
	return logState{hard: m.hard, snap: m.snap, first: m.snap.Index + 1, last: m.last(), ents: m.ents}
}

func (m *model) append(e pb.Entry) {
	m.ents = append(m.ents[:e.Index-m.snap.Index-1:e.Index-m.snap.Index-1], e)
}

func (m *model) compact(meta pb.SnapshotMeta) {
	m.ents = append([]pb.Entry(nil), m.ents[meta.Index-m.snap.Index:]...)
	m.snap = meta
}

type propRun struct {
	t     *testing.T
	rng   *rand.Rand
	fs    *vfs.FaultFS
	seg   int64
	l     *Log
	m     model
	cands []logState // states at each record boundary since the last good Sync
	term  pb.Term
	trace []string
}

func newPropRun(t *testing.T, seed uint64) *propRun {
	rng := rand.New(rand.NewPCG(seed, 42))
	return &propRun{t: t, rng: rng, fs: vfs.NewFaultFS(seed), seg: 256 + rng.Int64N(4096), term: 1}
}

func (p *propRun) logf(format string, args ...any) {
	p.trace = append(p.trace, fmt.Sprintf(format, args...))
}

func (p *propRun) open() error {
	l, err := Open(p.fs, testDir, Options{SegmentBytes: p.seg, CacheBytes: p.rng.Int64N(4096) - 1024, Logger: quietLogger})
	p.l = l
	return err
}

func (p *propRun) step() { p.cands = append(p.cands, p.m.state()) }

func (p *propRun) synced() { p.cands = []logState{p.m.state()} }

func (p *propRun) run() error {
	if err := p.open(); err != nil {
		return err
	}
	p.synced()
	ops := 20 + p.rng.IntN(80)
	for op := 0; op < ops; op++ {
		var err error
		switch r := p.rng.IntN(100); {
		case r < 40:
			err = p.saveEntries()
		case r < 47:
			err = p.saveHardState()
		case r < 52:
			err = p.installSnapshot()
		case r < 70:
			p.logf("sync")
			if err = p.l.Sync(); err == nil {
				p.synced()
			}
		case r < 78:
			err = p.compact()
		case r < 84:
			err = p.restart()
		case r < 94:
			err = p.crashDuringSync()
		default:
			err = p.crash()
		}
		if err != nil {
			return err
		}
	}
	if err := p.crash(); err != nil {
		return err
	}
	return p.flipBits()
}

func (p *propRun) randData() []byte {
	d := make([]byte, p.rng.IntN(200))
	for i := range d {
		d[i] = byte(p.rng.Uint32())
	}
	return d
}

// saveEntries appends or rewrites a suffix, as a follower does (never at or
// below the commit index), sometimes with a new hard state.
func (p *propRun) saveEntries() error {
	from := p.m.last() + 1
	if p.rng.IntN(4) == 0 && from > p.m.hard.Commit+1 && from > p.m.snap.Index+1 {
		lo := max(p.m.hard.Commit, p.m.snap.Index) + 1
		from = lo + pb.Index(p.rng.Int64N(int64(from-lo)))
		p.term++
	}
	p.term = max(p.term, p.m.term(from-1))
	var ents []pb.Entry
	for i := range 1 + p.rng.IntN(8) {
		ents = append(ents, pb.Entry{Index: from + pb.Index(i), Term: p.term, Data: p.randData()})
	}
	var hs pb.HardState
	if p.rng.IntN(2) == 0 {
		last := ents[len(ents)-1].Index
		hs = pb.HardState{Term: p.term, Vote: pb.NodeID(p.rng.IntN(3)), Commit: p.m.hard.Commit + pb.Index(p.rng.Int64N(int64(last-p.m.hard.Commit)+1))}
	}
	p.logf("save %v ents %d..%d term %d", hs, from, ents[len(ents)-1].Index, p.term)
	if err := p.l.Save(hs, nil, ents); err != nil {
		return err
	}
	p.termFirst(hs)
	for _, e := range ents {
		p.m.append(e)
		p.step()
	}
	if !hs.IsEmpty() && hs != p.m.hard {
		p.m.hard = hs
		p.step()
	}
	return nil
}

// termFirst models the record a Save that also carries a snapshot or
// entries writes first when hs changes the term or vote: that term and
// vote with the commit index unchanged.
func (p *propRun) termFirst(hs pb.HardState) {
	if !hs.IsEmpty() && (hs.Term != p.m.hard.Term || hs.Vote != p.m.hard.Vote) {
		p.m.hard = pb.HardState{Term: hs.Term, Vote: hs.Vote, Commit: p.m.hard.Commit}
		p.step()
	}
}

func (p *propRun) saveHardState() error {
	hs := pb.HardState{Term: p.term, Vote: pb.NodeID(p.rng.IntN(3)), Commit: p.m.hard.Commit}
	p.logf("save %v", hs)
	if err := p.l.Save(hs, nil, nil); err != nil {
		return err
	}
	if hs != p.m.hard {
		p.m.hard = hs
		p.step()
	}
	return nil
}

func (p *propRun) installSnapshot() error {
	p.term++
	idx := max(p.m.hard.Commit, p.m.snap.Index+1) + pb.Index(p.rng.IntN(20))
	snap := pb.SnapshotMeta{Index: idx, Term: p.term, Conf: pb.ConfState{Voters: []pb.NodeID{1, pb.NodeID(2 + p.rng.IntN(5))}}}
	hs := pb.HardState{Term: p.term, Commit: idx}
	ents := []pb.Entry{{Index: idx + 1, Term: p.term, Data: p.randData()}}
	p.logf("install snapshot %d/%d", idx, p.term)
	if err := p.l.Save(hs, &snap, ents); err != nil {
		return err
	}
	p.termFirst(hs)
	p.m = model{hard: p.m.hard, snap: snap}
	p.step()
	p.m.append(ents[0])
	p.step()
	p.m.hard = hs
	p.step()
	return nil
}

func (p *propRun) compact() error {
	hi := min(p.m.hard.Commit, p.m.last())
	idx := p.m.snap.Index // a stale request now and then: only deletes
	if hi > p.m.snap.Index && p.rng.IntN(5) > 0 {
		idx = p.m.snap.Index + 1 + pb.Index(p.rng.Int64N(int64(hi-p.m.snap.Index)))
	}
	meta := pb.SnapshotMeta{Index: idx, Term: p.m.term(idx), Conf: pb.ConfState{Voters: []pb.NodeID{1}}}
	if idx == p.m.snap.Index {
		meta = p.m.snap
	}
	p.logf("compact %d", idx)
	if idx > p.m.snap.Index {
		p.m.compact(meta)
		p.step()
	}
	if err := p.l.Compact(meta); err != nil {
		return err
	}
	p.synced()
	return nil
}

func (p *propRun) restart() error {
	p.logf("close and reopen")
	if err := p.l.Close(); err != nil {
		return err
	}
	p.synced()
	return p.reopenCheck()
}

func (p *propRun) reopenCheck() error {
	if err := p.open(); err != nil {
		return err
	}
	got := stateOf(p.t, p.l)
	for i := len(p.cands) - 1; i >= 0; i-- {
		if got.diff(p.cands[i]) == nil {
			p.logf("  recovered state %d of %d", i, len(p.cands)-1)
			p.m = model{hard: got.hard, snap: got.snap, ents: got.ents}
			p.term = max(p.term, got.hard.Term)
			p.synced()
			return nil
		}
	}
	return fmt.Errorf("recovered state matches no state since the last sync: %v (vs synced)", got.diff(p.cands[0]))
}

func (p *propRun) crash() error {
	p.logf("crash")
	p.fs.CrashRandom()
	return p.reopenCheck()
}

// crashDuringSync makes a write or fsync of the next flush fail, as power
// loss would interrupt it, then crashes, maybe tearing the last write.
func (p *propRun) crashDuringSync() error {
	n := p.rng.IntN(5)
	if p.rng.IntN(2) == 0 {
		p.fs.FailSyncAfter(n, syscall.EIO)
	} else {
		p.fs.FailWriteAfter(n, syscall.ENOSPC)
	}
	if p.rng.IntN(2) == 0 {
		if err := p.saveEntries(); err != nil {
			return err
		}
	}
	err := p.l.Sync()
	p.logf("sync failing after %d: %v", n, err)
	p.fs.FailSyncAfter(0, nil)
	p.fs.FailWriteAfter(0, nil)
	if err == nil {
		p.synced()
	} else if !errors.Is(err, syscall.EIO) && !errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("sync failed with %v", err)
	}
	return p.crash()
}

// flipBits checks that a flipped bit in any synced record but the final
// one of the last segment is reported, never loaded.
func (p *propRun) flipBits() error {
	must(p.t, p.l.Close())
	names, _ := p.fs.ReadDir(testDir)
	var segs []string
	for _, n := range names {
		if strings.HasSuffix(n, walSuffix) {
			segs = append(segs, filepath.Join(testDir, n))
		}
	}
	for range 3 {
		k := p.rng.IntN(len(segs))
		data, _ := p.fs.ReadFile(segs[k])
		limit := int64(len(data))
		if k == len(segs)-1 {
			limit = lastRecordOffset(p.t, data, segs[k])
		}
		if limit == 0 {
			continue
		}
		off := p.rng.Int64N(limit)
		must(p.t, p.fs.FlipBit(segs[k], off, uint(p.rng.IntN(8))))
		l, err := Open(p.fs, testDir, Options{SegmentBytes: p.seg, Logger: quietLogger})
		if err == nil {
			l.Close()
			return fmt.Errorf("bit flipped in %s at %d of %d was not reported", segs[k], off, len(data))
		}
		if !errors.Is(err, ErrCorrupt) {
			return fmt.Errorf("bit flip in %s at %d: %v, want corruption", segs[k], off, err)
		}
		p.fs.WriteFile(segs[k], data)
	}
	return p.reopenCheck()
}

// lastRecordOffset returns where the final record of a segment starts.
func lastRecordOffset(t testing.TB, data []byte, path string) int64 {
	starts, _ := segmentRecords(t, data, path)
	return starts[len(starts)-1]
}
