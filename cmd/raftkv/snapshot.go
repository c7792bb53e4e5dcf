package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/server"
	"github.com/raftkv/raftkv/storage"
	"github.com/raftkv/raftkv/storage/vfs"
)

// Backup and restore. `snapshot save` downloads a member's newest snapshot
// file (GET /v1/snapshot) and keeps it only once its checksums hold;
// `snapshot restore` seeds an empty data directory of a new cluster from
// such a file. The file is a snapshot file byte for byte, with its own
// checksums, so it can be checked again wherever it is copied.

func newSnapshotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Back up a cluster to a file, and seed a new cluster from one",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newSnapshotSaveCmd(g), newSnapshotRestoreCmd())
	return cmd
}

func newSnapshotSaveCmd(g *globals) *cobra.Command {
	var transferTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "Save the leader's newest snapshot (taken now) to FILE",
		Long: `Find the leader through --endpoints, ask it to take a snapshot of everything
it has applied, and download it to FILE. If the leader cannot send it, a
voter that follows the same leader and has applied up to the leader's commit
index sends it instead; a member that fell behind or was removed never does,
so a backup is never silently stale. The download is written beside FILE,
its checksums are verified, and only then is it renamed to FILE. The line
printed names the member the snapshot came from and its index.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			tlsCfg, err := loadTLS(g.tlsCert, g.tlsKey, g.tlsCA)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), transferTimeout)
			defer cancel()
			return failed(saveSnapshot(ctx, cmd.OutOrStdout(), splitList(g.endpoints), tlsCfg, a[0]))
		},
	}
	cmd.Flags().DurationVar(&transferTimeout, "transfer-timeout", 30*time.Minute, "bound on taking and downloading the snapshot")
	return cmd
}

// viewTimeout bounds each GET /v1/cluster while looking for the leader.
const viewTimeout = 5 * time.Second

type snapshotSource struct {
	id   uint64
	addr string
	role string
}

func saveSnapshot(ctx context.Context, out io.Writer, endpoints []string, tlsCfg *tls.Config, file string) error {
	if len(endpoints) == 0 {
		return errors.New("no endpoint given (--endpoints)")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, Proxy: http.ProxyFromEnvironment}}
	defer hc.CloseIdleConnections()
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	sources, err := snapshotSources(ctx, hc, scheme, endpoints)
	if err != nil {
		return err
	}
	var errs []error
	for _, src := range sources {
		n, resp, err := download(ctx, hc, scheme+"://"+src.addr+server.PathSnapshotFile, file)
		if err != nil {
			errs = append(errs, fmt.Errorf("member %d (%s) at %s: %w", src.id, src.role, src.addr, err))
			continue
		}
		fmt.Fprintf(out, "saved snapshot at index %s (term %s) from member %d (%s) at %s to %s, %d bytes, checksums verified\n",
			resp.Header.Get(server.HeaderSnapshotIndex), resp.Header.Get(server.HeaderSnapshotTerm), src.id, src.role, src.addr, file, n)
		return nil
	}
	return errors.Join(errs...)
}

// snapshotSources finds the leader through the endpoints and lists where a
// backup may come from: the leader first, then the voters that follow it
// and have applied up to its commit index.
func snapshotSources(ctx context.Context, hc *http.Client, scheme string, endpoints []string) ([]snapshotSource, error) {
	lead, leadAddr, errs := findLeader(ctx, hc, scheme, endpoints)
	if lead == nil {
		return nil, fmt.Errorf("no leader found, and a snapshot from any other member may be stale: %w", errors.Join(errs...))
	}
	out := []snapshotSource{{id: lead.Self.ID, addr: leadAddr, role: api.RoleLeader}}
	for _, m := range lead.Members {
		if m.ID == lead.Self.ID || !m.Voter || m.ClientAddr == "" {
			continue
		}
		v, err := clusterView(ctx, hc, scheme, m.ClientAddr)
		if err == nil && v.Self.ID == m.ID && v.Self.Role == api.RoleFollower && v.Leader == lead.Self.ID &&
			v.Self.AppliedIndex >= lead.Self.CommitIndex {
			out = append(out, snapshotSource{id: m.ID, addr: m.ClientAddr, role: api.RoleFollower})
		}
	}
	return out, nil
}

// findLeader asks the endpoints, then the members they list, for a member
// that says it leads. The leader an endpoint names is asked next; an
// endpoint that names none still lists the others: a member removed from
// the cluster, once told so, knows no leader, but one of the members its
// last configuration lists leads. Each address is asked at most once.
func findLeader(ctx context.Context, hc *http.Client, scheme string, endpoints []string) (*api.Cluster, string, []error) {
	var errs []error
	queue := slices.Clone(endpoints)
	queued := map[string]bool{}
	for _, ep := range endpoints {
		queued[ep] = true
	}
	for i := 0; i < len(queue); i++ {
		addr := queue[i]
		v, err := clusterView(ctx, hc, scheme, addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		if v.Self.Role == api.RoleLeader {
			return v, addr, nil
		}
		if m, ok := v.Member(v.Leader); v.Leader != 0 && ok && m.ClientAddr != "" {
			if !queued[m.ClientAddr] {
				queued[m.ClientAddr] = true
				queue = slices.Insert(queue, i+1, m.ClientAddr)
			}
		} else {
			errs = append(errs, fmt.Errorf("%s: member %d (%s) knows no leader's client address", addr, v.Self.ID, v.Self.Role))
		}
		for _, m := range v.Members {
			if m.ClientAddr != "" && !queued[m.ClientAddr] {
				queued[m.ClientAddr] = true
				queue = append(queue, m.ClientAddr)
			}
		}
	}
	return nil, "", errs
}

func clusterView(ctx context.Context, hc *http.Client, scheme, addr string) (*api.Cluster, error) {
	ctx, cancel := context.WithTimeout(ctx, viewTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+api.PathCluster, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", api.PathCluster, resp.Status)
	}
	var v api.Cluster
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&v); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", api.PathCluster, err)
	}
	return &v, nil
}

// download fetches u into file: into a temporary file beside it, which is
// synced and verified before it takes file's name.
func download(ctx context.Context, hc *http.Client, u, file string) (int64, *http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e api.ErrorBody
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return 0, nil, fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return 0, nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	tmp := file + ".part"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return 0, nil, err
	}
	n, err := io.Copy(f, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("download cut short: %d of %d bytes", n, resp.ContentLength)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = verifyFile(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, nil, err
	}
	syncDir(filepath.Dir(file))
	return n, resp, nil
}

func verifyFile(path string) error {
	f, err := vfs.OS().Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := storage.VerifySnapshotFile(f, path); err != nil {
		return fmt.Errorf("the snapshot received is damaged: %w", err)
	}
	return nil
}

// syncDir makes a rename durable; best effort, the file is whole anyway.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

func newSnapshotRestoreCmd() *cobra.Command {
	var dataDir, cluster string
	var id uint64
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Seed an empty data dir of a new cluster from a saved snapshot",
		Long: `Verify FILE's checksums, then write it as the snapshot of member --id of a
new cluster whose voters are --cluster, into the empty --data-dir. Do this for
every member of the new cluster, with the same FILE and --cluster, then start
each with 'raftkv server' on the same --data-dir (--cluster is not needed
then). A damaged FILE is refused and nothing is written. A FILE saved by a
build from before store revisions (kv snapshot format 1) is converted to
the current format as it is written, at the backup's index on every member:
this is how such a cluster moves to this build, since its members refuse to
start from their old data dirs.

  raftkv snapshot restore backup.snap --id 1 --data-dir ./data/1 \
    --cluster 1=10.0.0.1:7001,2=10.0.0.2:7001,3=10.0.0.3:7001`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			switch {
			case id == 0:
				return errors.New("--id is required and must be positive")
			case dataDir == "":
				return errors.New("--data-dir is required")
			case cluster == "":
				return errors.New("--cluster is required: the voters of the new cluster")
			}
			members, err := server.ParseCluster(cluster)
			if err != nil {
				return fmt.Errorf("--cluster: %w", err)
			}
			info, err := server.RestoreSnapshot(a[0], dataDir, id, members)
			if err != nil {
				return failed(err)
			}
			converted := ""
			if info.Converted {
				converted = fmt.Sprintf(", converted from kv snapshot format 1 to %d", kv.SnapshotVersion)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored snapshot at index %d (term %d) into %s as member %d of cluster %s%s\n",
				info.Index, info.Term, dataDir, id, server.FormatClusterID(info.ClusterID), converted)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.Uint64Var(&id, "id", 0, "this member's id in the new cluster")
	fl.StringVar(&dataDir, "data-dir", "", "the member's data directory; must be empty or absent")
	fl.StringVar(&cluster, "cluster", "", "the new cluster's voters as id=peerAddr,...")
	return cmd
}

func newHealthCmd(g *globals) *cobra.Command {
	var ready bool
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Check that members answer /healthz (or /readyz with --ready); exit 1 if one does not",
		Long: `Check every member in --endpoints: GET /healthz (the process is up and its node
runs) or, with --ready, GET /readyz (it also knows a leader and has applied
what it knows committed). Meant for container health checks, where there is
no shell or curl: raftkv health --endpoints 127.0.0.1:8001 --timeout 2s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tlsCfg, err := loadTLS(g.tlsCert, g.tlsKey, g.tlsCA)
			if err != nil {
				return err
			}
			path := api.PathHealthz
			if ready {
				path = api.PathReadyz
			}
			return failed(checkHealth(cmd.Context(), cmd.OutOrStdout(), splitList(g.endpoints), tlsCfg, path, g.timeout))
		},
	}
	cmd.Flags().BoolVar(&ready, "ready", false, "check /readyz instead of /healthz")
	return cmd
}

func checkHealth(ctx context.Context, out io.Writer, endpoints []string, tlsCfg *tls.Config, path string, timeout time.Duration) error {
	hc := &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	defer hc.CloseIdleConnections()
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	var errs []error
	for _, ep := range endpoints {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+ep+path, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep, err))
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			errs = append(errs, fmt.Errorf("%s: %s %s", ep, resp.Status, strings.TrimSpace(string(b))))
			continue
		}
		fmt.Fprintf(out, "%s %s ok\n", ep, path)
	}
	return errors.Join(errs...)
}
