package node_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage/vfs"
)

// kvSnapshotV1 is a kv snapshot stream in format 1 (before revisions) at
// applied index 5 holding a=v, written at index 3, and no sessions.
func kvSnapshotV1() []byte {
	body := []byte("RKVS\x01\x05\x01\x01a\x01v\x03\x00")
	return binary.LittleEndian.AppendUint32(body, crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
}

// seedSnapshotOnly writes a snapshot at index 5 whose body is body into a
// fresh data dir, without installing it in the log: recovery would then
// write the log.
func seedSnapshotOnly(t *testing.T, dir string, body []byte) {
	t.Helper()
	log, snaps, err := node.OpenStorage(vfs.OS(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	members := []node.Member{{ID: 1, PeerAddr: "127.0.0.1:1", Voter: true}}
	sink, err := snaps.Create(pb.SnapshotMeta{Index: 5, Term: 2, Conf: node.SeedConf(node.ClusterIDOf(members), members)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := sink.Commit(); err != nil {
		t.Fatal(err)
	}
}

// dirDigest hashes every file's path and content under dir.
func dirDigest(t *testing.T, dir string) [32]byte {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		h.Write([]byte(path + "\x00"))
		h.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

func openWith(t *testing.T, dir string) (*node.Node, node.LogStore, error) {
	t.Helper()
	log, snaps, err := node.OpenStorage(vfs.OS(), dir)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(node.Config{ID: 1, FSM: kv.New(kv.Config{}), Log: log, Snapshots: snaps})
	return n, log, err
}

// TestNewRefusesOldSnapshotFormatUntouched shows that a member whose
// latest snapshot is in the kv format from before revisions refuses to
// open with kv.ErrOldSnapshotFormat and the snapshot's index, and leaves
// every file of its data dir as it was, even where recovery would have
// installed the snapshot in the log; the same snapshot once converted
// opens, and recovery does write the log then.
func TestNewRefusesOldSnapshotFormatUntouched(t *testing.T) {
	old := t.TempDir()
	seedSnapshotOnly(t, old, kvSnapshotV1())
	before := dirDigest(t, old)
	_, log, err := openWith(t, old)
	log.Close()
	if !errors.Is(err, kv.ErrOldSnapshotFormat) || !bytes.Contains([]byte(err.Error()), []byte("snapshot 5")) {
		t.Fatalf("node.New over a format 1 snapshot: %v; want kv.ErrOldSnapshotFormat naming snapshot 5", err)
	}
	if dirDigest(t, old) != before {
		t.Fatal("the refused start changed the data dir")
	}

	var converted bytes.Buffer
	if _, err := kv.ConvertSnapshot(&converted, bytes.NewReader(kvSnapshotV1()), kv.Config{}); err != nil {
		t.Fatal(err)
	}
	cur := t.TempDir()
	seedSnapshotOnly(t, cur, converted.Bytes())
	before = dirDigest(t, cur)
	n, log, err := openWith(t, cur)
	if err != nil {
		log.Close()
		t.Fatalf("node.New over the converted snapshot: %v", err)
	}
	if got := n.Status().Applied; got != 5 {
		t.Errorf("applied %d after opening, want the snapshot's 5", got)
	}
	log.Close()
	if dirDigest(t, cur) == before {
		t.Fatal("recovery did not install the snapshot in the log: the refusal above proved nothing")
	}
}
