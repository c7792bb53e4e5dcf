package storage

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

// TestSaveSyncReopen shows that synced entries and hard state come back
// after a clean restart and after a crash.
func TestSaveSyncReopen(t *testing.T) {
	fs := vfs.NewFaultFS(1)
	l := openLog(t, fs, testDir, 0)
	hs := pb.HardState{Term: 2, Vote: 3, Commit: 4}
	saveSync(t, l, hs, nil, append(mkEnts(1, 5, 1, 10), mkEnts(5, 8, 2, 100)...))
	want := stateOf(t, l)
	must(t, l.Close())

	l = openLog(t, fs, testDir, 0)
	if err := stateOf(t, l).diff(want); err != nil {
		t.Fatalf("after reopen: %v", err)
	}
	fs.Crash()
	l = openLog(t, fs, testDir, 0)
	if err := stateOf(t, l).diff(want); err != nil {
		t.Fatalf("after crash: %v", err)
	}
	must(t, l.Close())
}

// TestUnsyncedLostOnCrash shows that a crash drops what Sync did not cover
// and keeps what it did.
func TestUnsyncedLostOnCrash(t *testing.T) {
	fs := vfs.NewFaultFS(1)
	l := openLog(t, fs, testDir, 0)
	saveSync(t, l, pb.HardState{Term: 1, Commit: 2}, nil, mkEnts(1, 4, 1, 10))
	want := stateOf(t, l)
	must(t, l.Save(pb.HardState{Term: 1, Commit: 5}, nil, mkEnts(4, 9, 1, 10)))
	fs.Crash()
	l = openLog(t, fs, testDir, 0)
	if err := stateOf(t, l).diff(want); err != nil {
		t.Fatal(err)
	}
}

// TestTruncateThenAppend shows the Raft conflict truncation: entries from
// the rewritten index on are replaced, and the old ones never return, even
// when the replaced entries live in older segments.
func TestTruncateThenAppend(t *testing.T) {
	fs := vfs.NewFaultFS(1)
	l := openLog(t, fs, testDir, 512)
	saveSync(t, l, pb.HardState{}, nil, mkEnts(1, 40, 1, 50))
	if len(l.segs) < 3 {
		t.Fatalf("want several segments, got %d", len(l.segs))
	}
	saveSync(t, l, pb.HardState{Term: 2}, nil, mkEnts(5, 8, 2, 20))
	saveSync(t, l, pb.HardState{}, nil, mkEnts(8, 12, 2, 20))
	want := logState{hard: pb.HardState{Term: 2}, first: 1, last: 11,
		ents: append(mkEnts(1, 5, 1, 50), mkEnts(5, 12, 2, 20)...)}
	if err := stateOf(t, l).diff(want); err != nil {
		t.Fatalf("live: %v", err)
	}
	must(t, l.Close())
	l = openLog(t, fs, testDir, 512)
	if err := stateOf(t, l).diff(want); err != nil {
		t.Fatalf("after reopen: %v", err)
	}
	// Appending after a restart goes on from the rewritten end.
	saveSync(t, l, pb.HardState{}, nil, mkEnts(12, 14, 3, 20))
	must(t, l.Close())
	l = openLog(t, fs, testDir, 512)
	if got := l.LastIndex(); got != 13 {
		t.Fatalf("last index %d, want 13", got)
	}
	if tm, _ := l.Term(11); tm != 2 {
		t.Fatalf("term(11) = %d, want 2", tm)
	}
	must(t, l.Close())
}

// TestSaveRejectsHoles shows that Save refuses a gap, non-contiguous
// entries and a term going back, and leaves the log unchanged.
func TestSaveRejectsHoles(t *testing.T) {
	l := openLog(t, vfs.NewFaultFS(1), testDir, 0)
	saveSync(t, l, pb.HardState{}, nil, mkEnts(1, 4, 2, 10))
	bad := [][]pb.Entry{
		mkEnts(5, 6, 2, 1),
		{{Index: 4, Term: 2}, {Index: 6, Term: 2}},
		mkEnts(4, 5, 1, 1),
		{{Index: 4, Term: 2, Type: 9}},
	}
	for _, ents := range bad {
		if err := l.Save(pb.HardState{}, nil, ents); err == nil {
			t.Errorf("Save(%v) succeeded", ents)
		}
	}
	if l.LastIndex() != 3 {
		t.Fatalf("last index %d after rejected saves", l.LastIndex())
	}
	must(t, l.Sync())
}

// TestSegmentRolling shows that segments roll at SegmentBytes and that the
// log reads back across them.
func TestSegmentRolling(t *testing.T) {
	fs := vfs.NewFaultFS(1)
	l := openLog(t, fs, testDir, 1024)
	for i := pb.Index(1); i <= 100; i += 10 {
		saveSync(t, l, pb.HardState{Term: 1, Commit: i}, nil, mkEnts(i, i+10, 1, 90))
	}
	names, _ := fs.ReadDir(testDir)
	segs := 0
	for _, n := range names {
		if strings.HasSuffix(n, ".wal") {
			segs++
			fi, _ := fs.Stat(filepath.Join(testDir, n))
			if fi.Size() > 1024+200 {
				t.Errorf("segment %s has %d bytes", n, fi.Size())
			}
		}
	}
	if segs < 10 {
		t.Fatalf("%d segments, want at least 10", segs)
	}
	want := stateOf(t, l)
	must(t, l.Close())
	l = openLog(t, fs, testDir, 1024)
	if err := stateOf(t, l).diff(want); err != nil {
		t.Fatal(err)
	}
}

// TestCompaction shows that Compact moves FirstIndex, deletes segments the
// snapshot covers, keeps the hard state and survives a restart.
func TestCompaction(t *testing.T) {
	fs := vfs.NewFaultFS(1)
	l := openLog(t, fs, testDir, 1024)
	saveSync(t, l, pb.HardState{Term: 1, Vote: 1}, nil, nil)
	for i := pb.Index(1); i <= 200; i += 10 {
		saveSync(t, l, pb.HardState{}, nil, mkEnts(i, i+10, 1, 90))
	}
	if err := l.Save(pb.HardState{Term: 1, Vote: 1, Commit: 201}, nil, nil); err == nil {
		t.Fatal("Save accepted a commit index past the last entry")
	}
	saveSync(t, l, pb.HardState{Term: 1, Vote: 1, Commit: 150}, nil, nil)
	before := len(l.segs)
	conf := pb.ConfState{Voters: []pb.NodeID{1, 2, 3}}
	must(t, l.Compact(pb.SnapshotMeta{Index: 150, Term: 1, Conf: conf}))
	if len(l.segs) >= before {
		t.Fatalf("segments %d -> %d: nothing deleted", before, len(l.segs))
	}
	if l.FirstIndex() != 151 {
		t.Fatalf("first index %d", l.FirstIndex())
	}
	if _, err := l.Entries(150, 152, 0); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("Entries(150) = %v, want ErrCompacted", err)
	}
	if tm, err := l.Term(150); err != nil || tm != 1 {
		t.Fatalf("Term(150) = %d, %v", tm, err)
	}
	want := stateOf(t, l)
	must(t, l.Close())
	l = openLog(t, fs, testDir, 1024)
	if err := stateOf(t, l).diff(want); err != nil {
		t.Fatal(err)
	}
	_, cs, _ := l.InitialState()
	if !cs.Equal(conf) {
		t.Fatalf("conf %v", cs)
	}
	// Compacting everything keeps the newest segment and still reopens.
	must(t, l.Compact(pb.SnapshotMeta{Index: 200, Term: 1, Conf: conf}))
	must(t, l.Close())
	l = openLog(t, fs, testDir, 1024)
	if l.FirstIndex() != 201 || l.LastIndex() != 200 {
		t.Fatalf("range [%d,%d]", l.FirstIndex(), l.LastIndex())
	}
	saveSync(t, l, pb.HardState{}, nil, mkEnts(201, 203, 2, 5))
	must(t, l.Close())
}

// TestInstallSnapshot shows that Save with a snapshot discards the whole
// log, older and newer entries alike, and appends after it.
func TestInstallSnapshot(t *testing.T) {
	fs := vfs.NewFaultFS(1)
	l := openLog(t, fs, testDir, 1024)
	saveSync(t, l, pb.HardState{Term: 1}, nil, mkEnts(1, 50, 1, 40))
	snap := pb.SnapshotMeta{Index: 30, Term: 3, Conf: pb.ConfState{Voters: []pb.NodeID{1}}}
	saveSync(t, l, pb.HardState{Term: 3, Commit: 30}, &snap, mkEnts(31, 33, 3, 10))
	want := logState{hard: pb.HardState{Term: 3, Commit: 30}, snap: snap, first: 31, last: 32, ents: mkEnts(31, 33, 3, 10)}
	if err := stateOf(t, l).diff(want); err != nil {
		t.Fatalf("live: %v", err)
	}
	must(t, l.Compact(snap))
	must(t, l.Close())
	l = openLog(t, fs, testDir, 1024)
	if err := stateOf(t, l).diff(want); err != nil {
		t.Fatalf("reopened: %v", err)
	}
	must(t, l.Close())
}

// TestEntriesMaxBytes shows the size limit: a prefix within maxBytes, but
// never less than one entry, from files and from the cache alike.
func TestEntriesMaxBytes(t *testing.T) {
	for _, cache := range []int64{-1, 1 << 20} {
		l, err := Open(vfs.NewFaultFS(1), testDir, Options{SegmentBytes: 512, CacheBytes: cache, Logger: quietLogger})
		must(t, err)
		saveSync(t, l, pb.HardState{}, nil, mkEnts(1, 21, 1, 76)) // Size() = 100 each
		for _, tc := range []struct {
			max  uint64
			want int
		}{{0, 20}, {1, 1}, {100, 1}, {199, 1}, {200, 2}, {1000, 10}, {1 << 30, 20}} {
			got, err := l.Entries(1, 21, tc.max)
			must(t, err)
			if len(got) != tc.want {
				t.Errorf("cache %d: Entries(1,21,%d) gave %d entries, want %d", cache, tc.max, len(got), tc.want)
			}
		}
		if _, err := l.Entries(5, 23, 0); !errors.Is(err, raft.ErrUnavailable) {
			t.Errorf("Entries past last: %v", err)
		}
		must(t, l.Close())
	}
}

// TestLockHeldTwice shows that a second Open of a directory in use fails
// with ErrLocked, on the real file system and on FaultFS.
func TestLockHeldTwice(t *testing.T) {
	for name, fs := range map[string]vfs.FS{"os": vfs.OS(), "fault": vfs.NewFaultFS(1)} {
		dir := t.TempDir()
		l := openLog(t, fs, dir, 0)
		if _, err := Open(fs, dir, Options{}); !errors.Is(err, ErrLocked) {
			t.Fatalf("%s: second Open: %v, want ErrLocked", name, err)
		}
		must(t, l.Close())
		l = openLog(t, fs, dir, 0)
		must(t, l.Close())
	}
}

// TestStickyErrors shows that a failed write or fsync (EIO, ENOSPC) fails
// that Sync and every later call, and that a restart recovers what was
// synced before.
func TestStickyErrors(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EIO, syscall.ENOSPC} {
		for _, onSync := range []bool{false, true} {
			fs := vfs.NewFaultFS(1)
			l := openLog(t, fs, testDir, 0)
			saveSync(t, l, pb.HardState{Term: 1}, nil, mkEnts(1, 3, 1, 10))
			if onSync {
				fs.FailNextSync(errno)
			} else {
				fs.FailNextWrite(errno)
			}
			must(t, l.Save(pb.HardState{}, nil, mkEnts(3, 5, 1, 10)))
			err := l.Sync()
			if !errors.Is(err, errno) {
				t.Fatalf("%v sync=%v: Sync = %v", errno, onSync, err)
			}
			for i, err := range []error{
				l.Sync(), l.Save(pb.HardState{}, nil, mkEnts(5, 6, 1, 1)),
				l.Compact(pb.SnapshotMeta{Index: 1, Term: 1}), func() error { _, err := l.Entries(1, 2, 0); return err }(),
			} {
				if !errors.Is(err, errno) {
					t.Errorf("%v: call %d after failure = %v, want sticky error", errno, i, err)
				}
			}
			l.Close()
			fs.Crash()
			l = openLog(t, fs, testDir, 0)
			if l.LastIndex() != 2 {
				t.Fatalf("last index %d after recovery, want 2", l.LastIndex())
			}
			must(t, l.Close())
		}
	}
}

// TestConcurrentSaveSync shows group commit under the race detector:
// one goroutine saves while others sync; every entry is durable once the
// Sync that followed its Save returned.
func TestConcurrentSaveSync(t *testing.T) {
	fs := vfs.NewFaultFS(1)
	l := openLog(t, fs, testDir, 4096)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := l.Sync(); err != nil {
					t.Error(err)
					return
				}
				l.Entries(l.FirstIndex(), l.LastIndex()+1, 1000)
			}
		}()
	}
	for i := pb.Index(1); i <= 500; i++ {
		must(t, l.Save(pb.HardState{Term: 1, Commit: i - 1}, nil, mkEnts(i, i+1, 1, 30)))
		if i%7 == 0 {
			must(t, l.Sync())
		}
		if i%100 == 0 {
			must(t, l.Compact(pb.SnapshotMeta{Index: i - 50, Term: 1}))
		}
	}
	must(t, l.Sync())
	close(stop)
	wg.Wait()
	fs.Crash()
	l = openLog(t, fs, testDir, 4096)
	if l.LastIndex() != 500 || l.FirstIndex() != 451 {
		t.Fatalf("range [%d,%d]", l.FirstIndex(), l.LastIndex())
	}
	must(t, l.Close())
}

// TestClosedLog shows that a closed log refuses calls.
func TestClosedLog(t *testing.T) {
	l := openLog(t, vfs.NewFaultFS(1), testDir, 0)
	must(t, l.Close())
	if err := l.Save(pb.HardState{Term: 1}, nil, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Save after Close: %v", err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

// TestLeftoverTempRemoved shows that Open removes a temporary segment a
// crash left behind.
func TestLeftoverTempRemoved(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, vfs.OS(), dir, 0)
	must(t, l.Close())
	tmp := filepath.Join(dir, segmentName(2, 1)+tmpSuffix)
	must(t, os.WriteFile(tmp, []byte("junk"), 0o644))
	l = openLog(t, vfs.OS(), dir, 0)
	must(t, l.Close())
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("temp file still there: %v", err)
	}
}

// TestTornBatchKeepsTermWithEntries shows that a batch raising the term
// and carrying entries of that term, torn at any byte by power loss, never
// recovers those entries without the term and vote: a server's current
// term is at least the term of every entry it holds (Figure 2), or after a
// restart it could lead that term a second time with a different log.
func TestTornBatchKeepsTermWithEntries(t *testing.T) {
	for keep := int64(0); ; keep++ {
		fs := vfs.NewFaultFS(1)
		l := openLog(t, fs, testDir, 0)
		saveSync(t, l, pb.HardState{Term: 1, Commit: 3}, nil, mkEnts(1, 4, 1, 10))
		must(t, l.Save(pb.HardState{Term: 2, Vote: 1, Commit: 5}, nil, mkEnts(4, 7, 2, 10)))
		fs.FailNextSync(syscall.EIO)
		if err := l.Sync(); err == nil {
			t.Fatal("sync did not fail")
		}
		fs.CrashTearing(keep, false)
		l = openLog(t, fs, testDir, 0)
		st := stateOf(t, l)
		for _, e := range st.ents {
			if e.Term > st.hard.Term || (e.Term == 2 && st.hard.Vote != 1) {
				t.Fatalf("torn after %d bytes: entry %d of term %d recovered with hard state %+v", keep, e.Index, e.Term, st.hard)
			}
		}
		must(t, l.Close())
		if st.hard.Commit == 5 {
			return // the whole batch survived
		}
		if keep > 1<<16 {
			t.Fatal("the batch never survived whole")
		}
	}
}
