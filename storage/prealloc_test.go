package storage

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

// The tests of preallocated segments: zero-filled files, the zeros after
// the last record read as the end of the log, and preparation of the next
// file (in the background on the OS, inline elsewhere).

func openLogged(t testing.TB, fs vfs.FS, dir string, segBytes int64, logs *bytes.Buffer) (*Log, error) {
	t.Helper()
	return Open(fs, dir, Options{SegmentBytes: segBytes, Logger: slog.New(slog.NewTextHandler(logs, nil))})
}

func segmentFiles(t testing.TB, fs vfs.FS, dir string) []string {
	t.Helper()
	names, err := fs.ReadDir(dir)
	must(t, err)
	var out []string
	for _, n := range names {
		if strings.HasSuffix(n, walSuffix) {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out
}

func readAll(t testing.TB, fs vfs.FS, path string) []byte {
	t.Helper()
	f, err := fs.Open(path)
	must(t, err)
	defer f.Close()
	fi, err := f.Stat()
	must(t, err)
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil && len(b) > 0 {
		t.Fatal(err)
	}
	return b
}

// TestPreallocatedCleanReopen shows that segment files are zero-filled to
// their limit, and that a clean reopen (and a crash after Sync) reads the
// zeros as the end of the log: nothing lost, nothing logged.
func TestPreallocatedCleanReopen(t *testing.T) {
	for _, name := range []string{"os", "faultfs"} {
		t.Run(name, func(t *testing.T) {
			var fs vfs.FS = vfs.OS()
			dir := t.TempDir()
			ffs := vfs.NewFaultFS(1)
			if name == "faultfs" {
				fs, dir = ffs, testDir
			}
			const segBytes = 4096
			l := openLog(t, fs, dir, segBytes)
			for i := pb.Index(1); i <= 100; i += 10 {
				saveSync(t, l, pb.HardState{Term: 1, Commit: i}, nil, mkEnts(i, i+10, 1, 100))
			}
			want := stateOf(t, l)
			must(t, l.Close())
			segs := segmentFiles(t, fs, dir)
			if len(segs) < 3 {
				t.Fatalf("%d segments, want several", len(segs))
			}
			for _, p := range segs {
				data := readAll(t, fs, p)
				if _, end := segmentRecords(t, data, p); len(data) != segBytes || end >= segBytes {
					t.Fatalf("%s: %d bytes, records end at %d: not preallocated to %d", p, len(data), end, segBytes)
				}
			}
			names, _ := fs.ReadDir(dir)
			for _, n := range names {
				if strings.HasSuffix(n, tmpSuffix) {
					t.Fatalf("Close left %s", n)
				}
			}
			var logs bytes.Buffer
			l, err := openLogged(t, fs, dir, segBytes, &logs)
			must(t, err)
			if err := stateOf(t, l).diff(want); err != nil {
				t.Fatalf("after reopen: %v", err)
			}
			if name == "faultfs" {
				ffs.Crash()
				l, err = openLogged(t, fs, dir, segBytes, &logs)
				must(t, err)
				if err := stateOf(t, l).diff(want); err != nil {
					t.Fatalf("after crash: %v", err)
				}
			}
			must(t, l.Close())
			if logs.Len() > 0 {
				t.Fatalf("clean reopen logged: %s", logs.String())
			}
		})
	}
}

// TestSegmentRamp shows a new log's segment limits: 4 MiB, doubling, up
// to SegmentBytes.
func TestSegmentRamp(t *testing.T) {
	for _, c := range []struct {
		seq      uint32
		segBytes int64
		want     int64
	}{
		{1, 64 << 20, 4 << 20}, {2, 64 << 20, 8 << 20}, {5, 64 << 20, 64 << 20},
		{900, 64 << 20, 64 << 20}, {1, 4096, 4096}, {7, 4096, 4096}, {3, 10 << 20, 10 << 20},
	} {
		if got := segmentLimit(c.seq, c.segBytes); got != c.want {
			t.Errorf("segmentLimit(%d, %d) = %d, want %d", c.seq, c.segBytes, got, c.want)
		}
	}
}

// TestPreparedTempRemoved shows that a file left by a preparation that a
// crash interrupted is removed by Open, which logs nothing about it, and
// that an open log prepares the next file in the background on the OS.
func TestPreparedTempRemoved(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, vfs.OS(), dir, 4096)
	if l.w.next == nil || l.w.next.seq != 2 {
		t.Fatalf("no preparation of segment 2 under way: %+v", l.w.next)
	}
	saveSync(t, l, pb.HardState{}, nil, mkEnts(1, 5, 1, 10))
	must(t, l.Close())
	if _, err := os.Stat(prepPath(dir, 2)); !os.IsNotExist(err) {
		t.Fatalf("Close left the prepared file: %v", err)
	}
	tmp := prepPath(dir, 2)
	must(t, os.WriteFile(tmp, make([]byte, 1000), 0o644)) // half-prepared
	var logs bytes.Buffer
	l, err := openLogged(t, vfs.OS(), dir, 4096, &logs)
	must(t, err)
	if l.LastIndex() != 4 {
		t.Fatalf("last index %d, want 4", l.LastIndex())
	}
	// The file is gone, and preparing it anew starts over.
	saveSync(t, l, pb.HardState{}, nil, mkEnts(5, 80, 1, 100))
	must(t, l.Close())
	l, err = openLogged(t, vfs.OS(), dir, 4096, &logs)
	must(t, err)
	if l.LastIndex() != 79 {
		t.Fatalf("last index %d, want 79", l.LastIndex())
	}
	must(t, l.Close())
	if logs.Len() > 0 {
		t.Fatalf("logged: %s", logs.String())
	}
}

// TestCrashAfterPreparedRename crashes a roll after the new segment got
// its name (durably) and before the old one was sealed: the old one's
// missing seal is a torn write, cut off; the new one, a header and zeros,
// is a clean end. Nothing synced is lost.
func TestCrashAfterPreparedRename(t *testing.T) {
	fs := vfs.NewFaultFS(1)
	l := openLog(t, fs, testDir, 1024)
	saveSync(t, l, pb.HardState{Term: 1, Commit: 3}, nil, mkEnts(1, 8, 1, 100))
	if len(l.segs) != 1 {
		t.Fatalf("%d segments, want 1", len(l.segs))
	}
	want := stateOf(t, l)
	// An entry that does not fit: the roll's writes are the new header
	// (into the file prepared when segment 1 began), then the seal (fails).
	fs.FailWriteAfter(1, syscall.EIO)
	must(t, l.Save(pb.HardState{}, nil, mkEnts(8, 9, 1, 300)))
	if err := l.Sync(); err == nil {
		t.Fatal("sync succeeded")
	}
	fs.Crash()
	if segs := segmentFiles(t, fs, testDir); len(segs) != 2 {
		t.Fatalf("segments after crash: %v", segs)
	}
	var logs bytes.Buffer
	l, err := openLogged(t, fs, testDir, 1024, &logs)
	must(t, err)
	// The new segment was synced with its header and entry 8 in it: the
	// entry may be kept (Sync failed; it was saved).
	got := stateOf(t, l)
	if got.last == 8 {
		got.last, got.ents = 7, got.ents[:7]
	}
	if err := got.diff(want); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "torn write") {
		t.Fatalf("cutting the torn seal not logged: %q", logs.String())
	}
	saveSync(t, l, pb.HardState{}, nil, mkEnts(8, 20, 2, 100))
	want = stateOf(t, l)
	must(t, l.Close())
	logs.Reset()
	l, err = openLogged(t, fs, testDir, 1024, &logs)
	must(t, err)
	defer l.Close()
	if err := stateOf(t, l).diff(want); err != nil {
		t.Fatal(err)
	}
	if logs.Len() > 0 {
		t.Fatalf("second reopen logged: %s", logs.String())
	}
}

// TestTornWriteInPreallocatedSpace tears an unsynced batch written over
// the zeros of a preallocated segment: recovery cuts it off (overwriting
// it with zeros, so the file stays preallocated) and logs it, once.
func TestTornWriteInPreallocatedSpace(t *testing.T) {
	for _, keep := range []int64{5, 50, 150, 400} {
		fs := vfs.NewFaultFS(1)
		l := openLog(t, fs, testDir, 8192)
		saveSync(t, l, pb.HardState{Term: 1, Commit: 5}, nil, mkEnts(1, 10, 1, 100))
		want := stateOf(t, l)
		must(t, l.Save(pb.HardState{Term: 1, Commit: 12}, nil, mkEnts(10, 14, 1, 100)))
		fs.FailSyncAfter(0, syscall.EIO)
		if err := l.Sync(); err == nil {
			t.Fatal("sync succeeded")
		}
		fs.CrashTearing(keep, false)
		var logs bytes.Buffer
		l, err := openLogged(t, fs, testDir, 8192, &logs)
		must(t, err)
		got := stateOf(t, l)
		// A tear at a record boundary keeps whole entries: that is a state
		// between the last Sync and the last Save, not a torn write.
		if got.last == want.last {
			if err := got.diff(want); err != nil {
				t.Fatalf("keep %d: %v", keep, err)
			}
		}
		if got.last != want.last && got.last >= 14 {
			t.Fatalf("keep %d: last index %d", keep, got.last)
		}
		if keep%112 != 0 && !strings.Contains(logs.String(), "torn write") {
			t.Fatalf("keep %d: cut not logged: %q", keep, logs.String())
		}
		must(t, l.Close())
		seg := segmentFiles(t, fs, testDir)[0]
		if data := readAll(t, fs, seg); len(data) != 8192 {
			t.Fatalf("keep %d: segment is %d bytes after the cut, want still 8192", keep, len(data))
		}
		logs.Reset()
		l, err = openLogged(t, fs, testDir, 8192, &logs)
		must(t, err)
		if err := stateOf(t, l).diff(got); err != nil {
			t.Fatalf("keep %d: second reopen: %v", keep, err)
		}
		must(t, l.Close())
		if logs.Len() > 0 {
			t.Fatalf("keep %d: second reopen logged: %s", keep, logs.String())
		}
	}
}

// TestUnpreallocatedTail shows that a last segment that ends at its last
// record (an older log's, or cut by Truncate) opens cleanly and takes
// appends, which extend it.
func TestUnpreallocatedTail(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, vfs.OS(), dir, 4096)
	saveSync(t, l, pb.HardState{Term: 1, Commit: 30}, nil, mkEnts(1, 40, 1, 100))
	must(t, l.Close())
	segs := segmentFiles(t, vfs.OS(), dir)
	last := segs[len(segs)-1]
	must(t, os.Truncate(last, dataEnd(t, last)))
	var logs bytes.Buffer
	l, err := openLogged(t, vfs.OS(), dir, 4096, &logs)
	must(t, err)
	saveSync(t, l, pb.HardState{}, nil, mkEnts(40, 80, 1, 100))
	want := stateOf(t, l)
	must(t, l.Close())
	l, err = openLogged(t, vfs.OS(), dir, 4096, &logs)
	must(t, err)
	defer l.Close()
	if err := stateOf(t, l).diff(want); err != nil {
		t.Fatal(err)
	}
	if want.last != 79 || logs.Len() > 0 {
		t.Fatalf("last %d, logs %q", want.last, logs.String())
	}
}

// appendOnlyFS hides WriteAt, as file systems wrapped by code written
// before it (tests, tools) do: the log must write through Write alone.
type appendOnlyFS struct{ vfs.FS }

type appendOnlyFile struct{ vfs.File }

func (fs appendOnlyFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return appendOnlyFile{f}, nil
}

func (fs appendOnlyFS) Create(name string) (vfs.File, error) { return fs.wrap(fs.FS.Create(name)) }
func (fs appendOnlyFS) Open(name string) (vfs.File, error)   { return fs.wrap(fs.FS.Open(name)) }
func (fs appendOnlyFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenFile(name, flag, perm))
}

// TestWithoutWriteAt runs the log on files without WriteAt, through
// rolls, crashes and reopens.
func TestWithoutWriteAt(t *testing.T) {
	ffs := vfs.NewFaultFS(3)
	fs := appendOnlyFS{ffs}
	l := openLog(t, fs, testDir, 1024)
	next := pb.Index(1)
	for round := range 6 {
		for range 5 {
			saveSync(t, l, pb.HardState{Term: 1, Commit: next - 1}, nil, mkEnts(next, next+3, 1, 60))
			next += 3
		}
		want := stateOf(t, l)
		if round%2 == 0 {
			must(t, l.Close())
		} else {
			ffs.Crash()
		}
		l = openLog(t, fs, testDir, 1024)
		if err := stateOf(t, l).diff(want); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	if len(l.segs) < 3 {
		t.Fatalf("%d segments, want several", len(l.segs))
	}
	must(t, l.Close())
}
