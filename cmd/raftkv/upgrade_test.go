package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/server"
	"github.com/raftkv/raftkv/storage/vfs"
)

// The upgrade from a build before store revisions: a data dir whose latest
// snapshot is kv format 1 must not start (its member would convert at its
// own index and diverge); one backup restored on every member converts at
// one index for all.

const (
	v1Applied = 40
	v1Term    = 2
	v1Keys    = 20
)

// kvSnapshotV1 is a kv snapshot stream in format 1, as a build before
// revisions wrote it, at applied index v1Applied: key/NN holds "value NN",
// last written at log index 3+NN; no sessions.
func kvSnapshotV1() []byte {
	b := binary.AppendUvarint([]byte("RKVS\x01"), v1Applied)
	b = binary.AppendUvarint(b, v1Keys)
	for i := range v1Keys {
		for _, s := range []string{fmt.Sprintf("key/%02d", i), fmt.Sprintf("value %02d", i)} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		b = binary.AppendUvarint(b, uint64(3+i))
	}
	b = binary.AppendUvarint(b, 0)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

// writeOldDataDir lays out dir as a member of members left it under a
// build before revisions: its latest snapshot (format 1) installed in the
// log, and the cluster id.
func writeOldDataDir(t *testing.T, dir string, members []node.Member) {
	t.Helper()
	log, snaps, err := node.OpenStorage(vfs.OS(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	id := node.ClusterIDOf(members)
	meta := pb.SnapshotMeta{Index: v1Applied, Term: v1Term, Conf: node.SeedConf(id, members)}
	sink, err := snaps.Create(meta)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write(kvSnapshotV1()); err != nil {
		t.Fatal(err)
	}
	if err := sink.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := log.Save(pb.HardState{Term: v1Term, Commit: v1Applied}, &meta, nil); err != nil {
		t.Fatal(err)
	}
	if err := log.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster_id"), fmt.Appendf(nil, "%016x\n", id), 0o600); err != nil {
		t.Fatal(err)
	}
}

// dirContents maps every file under dir to a hash of its content.
func dirContents(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		out[path] = sha256.Sum256(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStartRefusesOldSnapshotFormat shows that a member whose data dir
// holds a format 1 snapshot refuses to start, with an error that names the
// data dir, the snapshot's index and the procedure, and changes no file.
func TestStartRefusesOldSnapshotFormat(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "old")
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	writeOldDataDir(t, dir, []node.Member{{ID: 1, PeerAddr: pl.Addr().String(), Voter: true}})
	before := dirContents(t, dir)
	s, err := server.Start(server.Config{
		ID: 1, DataDir: dir, PeerListener: pl, ClientListener: cl,
		HeartbeatInterval: 20 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err == nil {
		s.Close()
		t.Fatal("a member over a format 1 snapshot started")
	}
	if !errors.Is(err, kv.ErrOldSnapshotFormat) {
		t.Fatalf("start: %v; want it to wrap kv.ErrOldSnapshotFormat", err)
	}
	t.Logf("refused: %v", err)
	for _, want := range []string{dir, fmt.Sprintf("snapshot %d", v1Applied), "raftkv snapshot save", "raftkv snapshot restore", "docs/operations.md"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("start error %q does not name %q", err, want)
		}
	}
	after := dirContents(t, dir)
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("the refused start changed the data dir:\nbefore %v\nafter  %v", before, after)
	}
}

// TestRestoreConvertsOldBackup shows the documented upgrade: the old
// member's snapshot file, taken as the backup and restored with the CLI on
// three new members, is converted at the backup's index on each; all
// three start, keep the ETags from before the conversion, and hold
// identical states and revisions after applying the same further writes.
func TestRestoreConvertsOldBackup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tmp := t.TempDir()
	old := filepath.Join(tmp, "old")
	writeOldDataDir(t, old, []node.Member{{ID: 1, PeerAddr: "127.0.0.1:1", Voter: true}})
	// What `raftkv snapshot save` downloads from the old build is its
	// snapshot file byte for byte.
	files, err := filepath.Glob(filepath.Join(old, "snap", "*.snap"))
	if err != nil || len(files) != 1 {
		t.Fatalf("old data dir snapshot files %v (%v), want one", files, err)
	}
	backup := files[0]

	dirs := []string{filepath.Join(tmp, "n1"), filepath.Join(tmp, "n2"), filepath.Join(tmp, "n3")}
	ss := startMembers(t, dirs, func(peers []string) []node.Member {
		spec := ""
		for i, p := range peers {
			spec += fmt.Sprintf("%d=%s,", i+1, p)
		}
		for i, d := range dirs {
			code, out, errText := cli(t, "snapshot", "restore", backup, "--id", fmt.Sprint(i+1), "--data-dir", d, "--cluster", spec)
			if code != 0 {
				t.Fatalf("restore member %d: exit %d: %s", i+1, code, errText)
			}
			if !strings.Contains(out, fmt.Sprintf("at index %d", v1Applied)) || !strings.Contains(out, "converted from kv snapshot format 1") {
				t.Fatalf("restore member %d printed %q; want the index and the conversion", i+1, out)
			}
		}
		return nil
	})
	for i, s := range ss {
		if rev, _ := s.Store().Revision(); rev < v1Applied {
			t.Fatalf("member %d starts at revision %d, want at least the backup's index %d", i+1, rev, v1Applied)
		}
	}
	c := newClient(t, ss)
	got, err := c.Get(ctx, "key/05")
	if err != nil || string(got.Value) != "value 05" || got.Rev != 3+5 {
		t.Fatalf("key/05 after the upgrade: %+v, %v; want value 05 at its old revision 8", got, err)
	}
	if _, err := c.Put(ctx, "key/05", []byte("new"), client.IfMatch(got.Rev)); err != nil {
		t.Fatalf("If-Match with the ETag from before the upgrade: %v", err)
	}
	for i := range 30 {
		if _, err := c.Put(ctx, fmt.Sprintf("after/%02d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if _, err := c.Delete(ctx, fmt.Sprintf("key/%02d", i%v1Keys)); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitIdentical(t, ss)
}

// waitIdentical waits until every member's kv state hashes alike (the
// hash covers the applied index, the revisions and the history) and has
// the same revision.
func waitIdentical(t *testing.T, ss []*server.Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var hashes, revs []string
		for _, s := range ss {
			rev, compacted := s.Store().Revision()
			hashes = append(hashes, fmt.Sprintf("%016x@%d", s.Store().Hash(), s.Store().AppliedIndex()))
			revs = append(revs, fmt.Sprintf("%d/%d", rev, compacted))
		}
		same := true
		for i := range ss {
			same = same && hashes[i] == hashes[0] && revs[i] == revs[0]
		}
		if same {
			t.Logf("identical on %d members: hash %s, revision/compacted %s", len(ss), hashes[0], revs[0])
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("members differ after the same writes: hashes %v, revisions %v", hashes, revs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
