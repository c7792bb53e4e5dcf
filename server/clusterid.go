package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/raftkv/raftkv/node"
	pb "github.com/raftkv/raftkv/raftpb"
)

// clusterIDFile holds the cluster id in hex, in the data directory.
const clusterIDFile = "cluster_id"

// ParseCluster parses the --cluster flag, "id=peerAddr,...", sorted by id.
func ParseCluster(s string) ([]node.Member, error) {
	var out []node.Member
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		idStr, addr, ok := strings.Cut(part, "=")
		if !ok || addr == "" {
			return nil, fmt.Errorf("cluster member %q: want id=peerAddr", part)
		}
		id, err := strconv.ParseUint(idStr, 10, 64)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("cluster member %q: id must be a positive integer", part)
		}
		for _, m := range out {
			if m.ID == pb.NodeID(id) {
				return nil, fmt.Errorf("cluster member %d named twice", id)
			}
		}
		out = append(out, node.Member{ID: pb.NodeID(id), PeerAddr: addr, Voter: true})
	}
	if len(out) == 0 {
		return nil, errors.New("cluster: no members")
	}
	slices.SortFunc(out, func(a, b node.Member) int { return int(a.ID) - int(b.ID) })
	return out, nil
}

// ClusterIDOf derives the cluster id from the initial members: the first 8
// bytes of SHA-256 over "id=peerAddr" sorted by id. Every initial member is
// started with the same list, so every one computes the same id without
// talking to the others.
func ClusterIDOf(members []node.Member) uint64 { return node.ClusterIDOf(members) }

// loadClusterID reads the persisted cluster id; ok is false if there is none.
func loadClusterID(dir string) (id uint64, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, clusterIDFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("reading cluster id: %w", err)
	}
	id, err = strconv.ParseUint(strings.TrimSpace(string(b)), 16, 64)
	if err != nil || id == 0 {
		return 0, false, fmt.Errorf("cluster id file %s holds %q: not a hex id", filepath.Join(dir, clusterIDFile), b)
	}
	return id, true, nil
}

// storeClusterID persists id durably: temp file, fsync, rename, fsync dir,
// so that a crash leaves either no file or the whole id.
func storeClusterID(dir string, id uint64) error {
	tmp := filepath.Join(dir, clusterIDFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("writing cluster id: %w", err)
	}
	_, err = fmt.Fprintf(f, "%016x\n", id)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing cluster id: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, clusterIDFile)); err != nil {
		return fmt.Errorf("writing cluster id: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("writing cluster id: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("writing cluster id: sync dir: %w", err)
	}
	return nil
}

// FormatClusterID renders a cluster id as in GET /v1/cluster.
func FormatClusterID(id uint64) string { return fmt.Sprintf("%016x", id) }

// Bootstrapped reports whether dir holds a member's state already (its
// cluster id), in which case --cluster is not needed and is ignored.
func Bootstrapped(dir string) bool {
	_, ok, err := loadClusterID(dir)
	return ok || err != nil
}
