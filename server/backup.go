package server

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/node"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/storage"
	"github.com/raftkv/raftkv/storage/vfs"
)

// Backups. GET /v1/snapshot streams a snapshot file byte for byte: the
// file carries its own checksums, so the copy an operator keeps can be
// checked anywhere (storage.VerifySnapshotFile) and restored into a new
// cluster's data directories with RestoreSnapshot.
const (
	PathSnapshotFile = "/v1/snapshot"
	// HeaderSnapshotIndex and HeaderSnapshotTerm name the snapshot sent.
	HeaderSnapshotIndex = "X-Raftkv-Snapshot-Index"
	HeaderSnapshotTerm  = "X-Raftkv-Snapshot-Term"
	// snapshotSendBytesPerSecond is the slowest transfer rate the write
	// deadline allows for, over the usual WriteTimeout.
	snapshotSendBytesPerSecond = 1 << 20
	// snapshotDir is where node.OpenStorage keeps snapshot files.
	snapshotDir = "snap"
)

// sendSnapshot answers GET /v1/snapshot: it takes a snapshot of everything
// this member has applied (unless the newest covers it), verifies the
// file's checksums, and streams it. It is not redirected: a follower's
// snapshot is as good a backup as the leader's, only as old as its
// applied index, which the headers name.
func (s *Server) sendSnapshot(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 4*s.cfg.Limits.RequestTimeout)
	defer cancel()
	idx, err := s.node.Snapshot(ctx)
	if err != nil {
		s.nodeError(w, r, err)
		return
	}
	f, path, meta, err := s.openSnapshot(ctx, idx)
	if err != nil {
		s.fail(w, api.CodeInternal, err.Error())
		return
	}
	defer f.Close()
	if _, err := storage.VerifySnapshotFile(f, path); err != nil {
		s.log.Error("snapshot file is damaged", "path", path, "err", err)
		s.fail(w, api.CodeInternal, "this member's snapshot is damaged: "+err.Error())
		return
	}
	fi, err := f.Stat()
	if err != nil {
		s.fail(w, api.CodeInternal, err.Error())
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", storage.SnapshotFileName(meta)))
	h.Set(HeaderSnapshotIndex, strconv.FormatUint(uint64(meta.Index), 10))
	h.Set(HeaderSnapshotTerm, strconv.FormatUint(uint64(meta.Term), 10))
	// A large snapshot outlasts the server's WriteTimeout: allow for a
	// slow but moving transfer.
	d := s.cfg.Limits.WriteTimeout + time.Duration(fi.Size()/snapshotSendBytesPerSecond)*time.Second
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.Copy(w, io.NewSectionReader(f, 0, fi.Size())); err != nil {
		s.log.Warn("sending snapshot", "index", uint64(meta.Index), "err", err)
	}
}

// openSnapshot opens the newest snapshot file once it covers idx. The
// snapshot Snapshot returned may still be being written (a periodic one
// was under way), and the store prunes old files, so it waits and retries.
func (s *Server) openSnapshot(ctx context.Context, idx pb.Index) (vfs.File, string, pb.SnapshotMeta, error) {
	for {
		meta, ok := s.node.LatestSnapshot()
		if ok && meta.Index >= idx {
			path := filepath.Join(s.cfg.DataDir, snapshotDir, storage.SnapshotFileName(meta))
			f, err := vfs.OS().Open(path)
			if err == nil {
				return f, path, meta, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return nil, "", meta, fmt.Errorf("opening snapshot: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil, "", pb.SnapshotMeta{}, fmt.Errorf("no snapshot covering index %d in time: %w", idx, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// RestoreInfo describes a data directory seeded from a backup.
type RestoreInfo struct {
	Index     uint64
	Term      uint64
	ClusterID uint64
	// Converted is set when the backup's data was in kv snapshot format 1
	// (from before revisions) and was converted as it was written.
	Converted bool
}

// RestoreSnapshot seeds the empty data directory dataDir of member id of
// a new cluster from the backup file: it checks every checksum of the
// backup first (a damaged file is refused, the error wraps
// storage.ErrCorrupt), stores its data as the member's snapshot with the
// configuration given by cluster (not the one in the backup, which names
// the old cluster's members), and records the new cluster's id. Every
// member of the new cluster is seeded from the same file with the same
// cluster, then started: each recovers the state from the snapshot, and
// they elect a leader as after any restart. On failure nothing is left in
// dataDir.
//
// A backup in kv snapshot format 1 (from before revisions), which a member
// refuses to start from, is converted to the current format as it is
// written: every member restored from the same backup converts at the same
// index and so starts from the identical state.
func RestoreSnapshot(backup, dataDir string, id uint64, cluster []node.Member) (RestoreInfo, error) {
	if !slices.ContainsFunc(cluster, func(m node.Member) bool { return uint64(m.ID) == id }) {
		return RestoreInfo{}, fmt.Errorf("restore: member %d is not in the cluster given", id)
	}
	f, err := vfs.OS().Open(backup)
	if err != nil {
		return RestoreInfo{}, fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	old, err := storage.VerifySnapshotFile(f, backup)
	if err != nil {
		return RestoreInfo{}, fmt.Errorf("restore: refusing %s, it is not an intact snapshot: %w", backup, err)
	}
	if err := checkEmptyDir(dataDir); err != nil {
		return RestoreInfo{}, fmt.Errorf("restore: %w", err)
	}
	info := RestoreInfo{Index: uint64(old.Index), Term: uint64(old.Term), ClusterID: restoredClusterID(cluster, old)}
	format, err := seed(f, backup, dataDir, old, info.ClusterID, cluster)
	if err != nil {
		clearDir(dataDir)
		return RestoreInfo{}, fmt.Errorf("restore: %w", err)
	}
	info.Converted = format == 1
	return info, nil
}

// seed writes the data dir and returns the kv snapshot format the backup
// was in.
func seed(f vfs.File, backup, dataDir string, old pb.SnapshotMeta, clusterID uint64, cluster []node.Member) (format byte, err error) {
	log, snaps, err := node.OpenStorage(vfs.OS(), dataDir)
	if err != nil {
		return 0, err
	}
	defer log.Close()
	meta := pb.SnapshotMeta{Index: old.Index, Term: old.Term, Conf: node.SeedConf(clusterID, cluster)}
	_, data, err := storage.OpenSnapshotFile(f, backup)
	if err != nil {
		return 0, err
	}
	sink, err := snaps.Create(meta)
	if err != nil {
		return 0, err
	}
	// The data is checked against its checksum again as it is copied: the
	// file could change between the check and the copy. The kv limits
	// that bound a format 1 stream's keys and values are the defaults, as
	// `raftkv server` runs with.
	if format, err = kv.ConvertSnapshot(sink, data, kv.Config{}); err != nil {
		sink.Abort()
		return 0, err
	}
	if err := sink.Commit(); err != nil {
		return 0, err
	}
	// Install the snapshot in the log too, as a follower does on
	// InstallSnapshot: the log then starts after it at its term.
	if err := log.Save(pb.HardState{Term: meta.Term, Commit: meta.Index}, &meta, nil); err != nil {
		return 0, err
	}
	if err := log.Sync(); err != nil {
		return 0, err
	}
	// Last: a data directory with a cluster id is a bootstrapped member.
	return format, storeClusterID(dataDir, clusterID)
}

// restoredClusterID derives the new cluster's id from its members and the
// snapshot, so that every member seeded alike computes the same id, and a
// cluster restored onto the addresses of the one it was taken from still
// gets a new id: a surviving member of the old cluster is then refused by
// the transport instead of mixing two histories.
func restoredClusterID(cluster []node.Member, meta pb.SnapshotMeta) uint64 {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], node.ClusterIDOf(cluster))
	h.Write(b[:])
	fmt.Fprintf(h, "/restored/%d/%d", meta.Index, meta.Term)
	if id := binary.BigEndian.Uint64(h.Sum(nil)); id != 0 {
		return id
	}
	return 1
}

// checkEmptyDir creates dir, or accepts it if it holds nothing: a restore
// never writes over a member's state.
func checkEmptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(names) > 0 {
		return fmt.Errorf("data dir %s is not empty; restore seeds a new member only", dir)
	}
	return nil
}

// clearDir removes what a failed restore wrote into the (empty) dir.
func clearDir(dir string) {
	names, _ := os.ReadDir(dir)
	for _, n := range names {
		os.RemoveAll(filepath.Join(dir, n.Name()))
	}
}
