package storage

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

// The surgery tests damage a closed log on the real file system the way
// disks and operators do, and check the documented outcome: a torn tail is
// cut off and logged; anything else is refused with the file and offset.

const surgerySegBytes = 4096

// buildSurgeryLog writes 200 entries of 100 bytes, synced in batches of 10,
// over several segments, and returns the dir and sorted segment paths.
func buildSurgeryLog(t *testing.T) (string, []string) {
	dir := t.TempDir()
	l := openLog(t, vfs.OS(), dir, surgerySegBytes)
	for i := pb.Index(1); i <= 200; i += 10 {
		saveSync(t, l, pb.HardState{Term: 1, Commit: i - 1}, nil, mkEnts(i, i+10, 1, 100))
	}
	must(t, l.Close())
	segs, _ := filepath.Glob(filepath.Join(dir, "*"+walSuffix))
	sort.Strings(segs)
	if len(segs) < 4 {
		t.Fatalf("want at least 4 segments, got %d", len(segs))
	}
	// The damage below lands in preallocated files, zeros after the records.
	for _, p := range segs {
		if fi, err := os.Stat(p); err != nil || fi.Size() != surgerySegBytes || dataEnd(t, p) >= surgerySegBytes {
			t.Fatalf("%s is not preallocated to %d bytes: %v", p, surgerySegBytes, err)
		}
	}
	return dir, segs
}

// recordStarts returns the offsets of the records of a segment file.
func recordStarts(t *testing.T, path string) []int64 {
	data, err := os.ReadFile(path)
	must(t, err)
	starts, _ := segmentRecords(t, data, path)
	return starts
}

// dataEnd returns where the records of a segment file end (its free,
// zero-filled space follows).
func dataEnd(t *testing.T, path string) int64 {
	data, err := os.ReadFile(path)
	must(t, err)
	_, end := segmentRecords(t, data, path)
	return end
}

// recordAt returns the start of the record that holds byte off.
func recordAt(starts []int64, off int64) int64 {
	k := sort.Search(len(starts), func(i int) bool { return starts[i] > off })
	return starts[k-1]
}

func openSurgery(dir string, logs *bytes.Buffer) (*Log, error) {
	return Open(vfs.OS(), dir, Options{SegmentBytes: surgerySegBytes, Logger: slog.New(slog.NewTextHandler(logs, nil))})
}

// checkRepaired opens dir and checks it holds entries 1..n unharmed, with
// n >= atLeast, and that the repair was logged.
func checkRepaired(t *testing.T, dir string, atLeast pb.Index) {
	var logs bytes.Buffer
	l, err := openSurgery(dir, &logs)
	if err != nil {
		t.Fatalf("open after tail damage: %v", err)
	}
	defer l.Close()
	if l.LastIndex() < atLeast || l.LastIndex() >= 200 {
		t.Fatalf("last index %d, want in [%d,200)", l.LastIndex(), atLeast)
	}
	got, err := l.Entries(1, l.LastIndex()+1, 0)
	must(t, err)
	if err := entsDiff(got, mkEnts(1, l.LastIndex()+1, 1, 100)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "torn write") {
		t.Fatalf("repair not logged: %q", logs.String())
	}
	// The repaired log takes new entries and reopens clean.
	saveSync(t, l, pb.HardState{}, nil, mkEnts(l.LastIndex()+1, l.LastIndex()+3, 2, 10))
}

func checkRefused(t *testing.T, dir, file string, off int64) {
	var logs bytes.Buffer
	l, err := openSurgery(dir, &logs)
	if err == nil {
		l.Close()
		t.Fatalf("open succeeded, want refusal naming %s at %d", file, off)
	}
	ce := wantCorrupt(t, err)
	if ce.File != file || ce.Offset != off {
		t.Fatalf("refused with %v, want %s at offset %d", err, file, off)
	}
	if !strings.Contains(err.Error(), filepath.Base(file)) {
		t.Fatalf("message %q does not name the file", err)
	}
}

// TestSurgeryTruncateTail shows a tail cut mid-record is repaired.
func TestSurgeryTruncateTail(t *testing.T) {
	dir, segs := buildSurgeryLog(t)
	last := segs[len(segs)-1]
	must(t, os.Truncate(last, dataEnd(t, last)-37))
	checkRepaired(t, dir, 190)
}

// TestSurgeryZeroTailSector shows a zeroed final sector is repaired.
func TestSurgeryZeroTailSector(t *testing.T) {
	dir, segs := buildSurgeryLog(t)
	last := segs[len(segs)-1]
	data, _ := os.ReadFile(last)
	end := int(dataEnd(t, last))
	from := (end - 1) / 512 * 512
	clear(data[from:end])
	must(t, os.WriteFile(last, data, 0o644))
	checkRepaired(t, dir, 180)
}

// TestSurgeryZeroMiddleSector shows a zeroed sector with records after it
// is refused, naming the first damaged record.
func TestSurgeryZeroMiddleSector(t *testing.T) {
	for _, which := range []string{"last segment", "older segment"} {
		t.Run(which, func(t *testing.T) {
			dir, segs := buildSurgeryLog(t)
			path := segs[len(segs)-1]
			if which == "older segment" {
				path = segs[1]
			}
			starts := recordStarts(t, path)
			data, _ := os.ReadFile(path)
			if len(data) < 1024+512 && which == "older segment" {
				t.Fatalf("segment too small: %d", len(data))
			}
			from := int64(512)
			clear(data[from : from+512])
			must(t, os.WriteFile(path, data, 0o644))
			checkRefused(t, dir, path, recordAt(starts, from))
		})
	}
}

// TestSurgeryFlipBit shows a flipped bit in a synced record (first,
// middle, last segment) is refused, naming the record.
func TestSurgeryFlipBit(t *testing.T) {
	for _, which := range []int{0, 1, -1} {
		dir, segs := buildSurgeryLog(t)
		path := segs[(which+len(segs))%len(segs)]
		starts := recordStarts(t, path)
		data, _ := os.ReadFile(path)
		off := starts[len(starts)/2] + 20 // inside a record that has others after it
		data[off] ^= 0x10
		must(t, os.WriteFile(path, data, 0o644))
		checkRefused(t, dir, path, recordAt(starts, off))
	}
}

// TestSurgeryDeleteNewestSegment shows a lost newest segment is refused:
// its predecessor's seal names it.
func TestSurgeryDeleteNewestSegment(t *testing.T) {
	dir, segs := buildSurgeryLog(t)
	must(t, os.Remove(segs[len(segs)-1]))
	prev := segs[len(segs)-2]
	starts := recordStarts(t, prev)
	checkRefused(t, dir, prev, starts[len(starts)-1]) // the seal
}

// TestSurgeryDeleteMiddleSegment shows a gap in segment numbers is refused.
func TestSurgeryDeleteMiddleSegment(t *testing.T) {
	dir, segs := buildSurgeryLog(t)
	must(t, os.Remove(segs[2]))
	checkRefused(t, dir, segs[3], 0)
}

// TestSurgeryDeleteOldestSegment shows entries lost with the oldest
// segment, and covered by no snapshot, are refused.
func TestSurgeryDeleteOldestSegment(t *testing.T) {
	dir, segs := buildSurgeryLog(t)
	must(t, os.Remove(segs[0]))
	checkRefused(t, dir, segs[1], 0)
}
