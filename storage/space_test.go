package storage

import (
	"errors"
	"syscall"
	"testing"
	"time"

	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

// fillUntilNoSpace saves and syncs entries of size bytes, one per Save,
// from index next on, until Save refuses one with ErrNoSpace. Every other
// call must succeed: the log never meets the full disk on a write. It
// returns the next index not saved.
func fillUntilNoSpace(t *testing.T, l *Log, next pb.Index, size int) pb.Index {
	t.Helper()
	for i := 0; ; i++ {
		if i > 10000 {
			t.Fatal("the log never refused an entry")
		}
		err := l.Save(pb.HardState{Term: 1, Commit: next - 1}, nil, mkEnts(next, next+1, 1, size))
		if errors.Is(err, ErrNoSpace) {
			if l.SpaceOK() {
				t.Fatal("Save refused an entry for lack of space while SpaceOK")
			}
			if room := l.EntryRoom(); room >= int64(size) {
				t.Fatalf("Save refused %d bytes with EntryRoom %d", size, room)
			}
			return next
		}
		must(t, err)
		must(t, l.Sync())
		next++
	}
}

// TestNoSpaceRefusesEntriesBeforeTheDiskIsFull fills a log on a small
// file system: the preparation of a segment fails with ENOSPC, SpaceOK
// turns false while the current segment has room, the entries that fit
// are taken, the next is refused with ErrNoSpace and nothing else fails;
// hard states and compaction still work; everything acknowledged survives
// a crash; and once space is freed, entries are taken again.
func TestNoSpaceRefusesEntriesBeforeTheDiskIsFull(t *testing.T) {
	fs := vfs.NewFaultFS(1)
	const segBytes = 16 << 10
	l := openLog(t, fs, testDir, segBytes)
	// Room for the first segment, its prepared successor, and half more.
	fs.SetCapacity(fs.Used() + segBytes/2)
	next := fillUntilNoSpace(t, l, 1, 500)
	if next < 40 {
		t.Fatalf("only %d entries taken: the log stopped early", next-1)
	}
	// The refused Save changed nothing; small records still go in.
	saveSync(t, l, pb.HardState{Term: 2, Vote: 1, Commit: next - 1}, nil, nil)
	want := stateOf(t, l)
	if want.last != next-1 {
		t.Fatalf("last index %d, want %d", want.last, next-1)
	}
	fs.Crash()
	l, err := Open(fs, testDir, Options{SegmentBytes: segBytes, Logger: quietLogger})
	must(t, err)
	if err := stateOf(t, l).diff(want); err != nil {
		t.Fatalf("after a crash: %v", err)
	}
	if l.SpaceOK() {
		t.Fatal("a reopened log on a full disk reports SpaceOK")
	}
	if err := l.Save(pb.HardState{}, nil, mkEnts(next, next+1, 2, 4000)); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Save after reopening on a full disk: %v, want ErrNoSpace", err)
	}
	// Space comes back: a retry prepares the segment and entries go in.
	fs.SetCapacity(0)
	l.RetrySpace()
	if !l.SpaceOK() {
		t.Fatal("SpaceOK still false after space came back and RetrySpace")
	}
	saveSync(t, l, pb.HardState{}, nil, mkEnts(next, next+100, 2, 500))
	must(t, l.Close())
}

// TestNoSpaceCompactionFreesSpace shows that compacting a full log removes
// segments, which lets the next segment be prepared: SpaceOK turns true
// without RetrySpace, and entries are taken again.
func TestNoSpaceCompactionFreesSpace(t *testing.T) {
	fs := vfs.NewFaultFS(2)
	const segBytes = 16 << 10
	l := openLog(t, fs, testDir, segBytes)
	fs.SetCapacity(fs.Used() + 3*segBytes/2)
	next := fillUntilNoSpace(t, l, 1, 700)
	if n := len(l.segs); n < 2 {
		t.Fatalf("%d segments: nothing to compact", n)
	}
	term, err := l.Term(next - 1)
	must(t, err)
	must(t, l.Compact(pb.SnapshotMeta{Index: next - 1, Term: term}))
	if !l.SpaceOK() {
		t.Fatal("SpaceOK false after compaction removed segments")
	}
	saveSync(t, l, pb.HardState{}, nil, mkEnts(next, next+20, 1, 700))
	must(t, l.Close())
}

// TestNoSpaceOnTheRealFileSystem shows the background preparation on the
// OS noticing that it would leave less than the free reserve: SpaceOK
// turns false, entries beyond the segment are refused with ErrNoSpace, and
// once the reserve is met again a retry lets them in.
func TestNoSpaceOnTheRealFileSystem(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, vfs.OS(), dir, 64<<10)
	defer l.Close()
	// Preparing a segment must leave more than any disk has.
	l.SetFreeReserve(1 << 62)
	must(t, l.Sync())
	l.mu.Lock()
	l.w.stopPreparing()
	l.w.prepareNext(2)
	l.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for l.SpaceOK() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if l.SpaceOK() {
		t.Fatal("SpaceOK still true: the failed preparation was not noticed")
	}
	var err error
	next := pb.Index(1)
	for ; err == nil && next < 1000; next++ {
		err = l.Save(pb.HardState{}, nil, mkEnts(next, next+1, 1, 1000))
	}
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Save beyond the segment: %v, want ErrNoSpace", err)
	}
	must(t, l.Sync())
	// Free space again (the reserve is lifted).
	l.SetFreeReserve(0)
	l.RetrySpace()
	for !l.SpaceOK() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	saveSync(t, l, pb.HardState{}, nil, mkEnts(next-1, next+100, 1, 1000))
}

// TestWriteENOSPCIsFatal shows that a write failing with ENOSPC (as on a
// file system that allocates on overwrite) is sticky like EIO.
func TestWriteENOSPCIsFatal(t *testing.T) {
	fs := vfs.NewFaultFS(3)
	l := openLog(t, fs, testDir, 16<<10)
	defer l.Close()
	fs.FailNextWrite(syscall.ENOSPC)
	must(t, l.Save(pb.HardState{}, nil, mkEnts(1, 2, 1, 10)))
	if err := l.Sync(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Sync: %v, want ENOSPC", err)
	}
	if err := l.Save(pb.HardState{}, nil, mkEnts(2, 3, 1, 10)); err == nil {
		t.Fatal("Save after a failed write succeeded")
	}
}
