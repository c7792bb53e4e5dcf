package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/node"
	"github.com/raftkv/raftkv/playground"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
	"github.com/raftkv/raftkv/server"
)

type devFlags struct {
	dir                 string
	clientPort          int
	peerPort            int
	etcdPort            int
	heartbeat, election time.Duration
	logLevel            string
}

func newDevCmd(g *globals) *cobra.Command {
	f := &devFlags{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local three-member cluster in a temporary directory",
		Long: `Run a three-member cluster in this process, each member a real server on
127.0.0.1 ports, with its data in a temporary directory (removed on exit
unless --dir is given). Prints the endpoints and a sample command; Ctrl-C
or SIGTERM stops it cleanly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.heartbeat <= 0 || f.election < 2*f.heartbeat {
				return fmt.Errorf("--election-timeout %v must be at least twice --heartbeat-interval %v", f.election, f.heartbeat)
			}
			logger, err := newLogger(f.logLevel, "text")
			if err != nil {
				return err
			}
			return failed(runDev(cmd, f, server.Config{
				HeartbeatInterval: f.heartbeat, ElectionTimeout: f.election, Logger: logger,
			}))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dir, "dir", "", "data directory to use and keep (default: a temporary one, removed on exit)")
	fl.IntVar(&f.clientPort, "client-port", 8001, "first client port (members use it and the next two); 0 picks free ports")
	fl.IntVar(&f.peerPort, "peer-port", 7001, "first peer port; 0 picks free ports")
	fl.IntVar(&f.etcdPort, "etcd-port", 2379, "first etcd v3 API port (members use it, +100 and +200, as etcd's 2379, 2479, 2579); 0 picks free ports, -1 serves none")
	fl.DurationVar(&f.heartbeat, "heartbeat-interval", 100*time.Millisecond, "heartbeat interval")
	fl.DurationVar(&f.election, "election-timeout", time.Second, "election timeout")
	fl.StringVar(&f.logLevel, "log-level", "warn", "slog level")
	return cmd
}

func portAddr(base, i int) string {
	if base == 0 {
		return "127.0.0.1:0"
	}
	return fmt.Sprintf("127.0.0.1:%d", base+i)
}

func runDev(cmd *cobra.Command, f *devFlags, tmpl server.Config) error {
	dir, keep := f.dir, f.dir != ""
	if !keep {
		var err error
		if dir, err = os.MkdirTemp("", "raftkv-dev-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	const n = 3
	var peers, clients []net.Listener
	closeAll := func() {
		for _, l := range append(peers, clients...) {
			l.Close()
		}
	}
	listenAll := func(peerBase, clientBase int) error {
		for i := 0; i < n; i++ {
			pl, err := net.Listen("tcp", portAddr(peerBase, i))
			if err != nil {
				return err
			}
			peers = append(peers, pl)
			cl, err := net.Listen("tcp", portAddr(clientBase, i))
			if err != nil {
				return err
			}
			clients = append(clients, cl)
		}
		return nil
	}
	if err := listenAll(f.peerPort, f.clientPort); err != nil {
		closeAll()
		peers, clients = nil, nil
		if cmd.Flags().Changed("peer-port") || cmd.Flags().Changed("client-port") {
			return err
		}
		// The default ports are taken (another dev cluster?): any free ones do.
		if err := listenAll(0, 0); err != nil {
			closeAll()
			return err
		}
	}
	var boot []node.Member
	for i, pl := range peers {
		boot = append(boot, node.Member{ID: pb.NodeID(i + 1), PeerAddr: pl.Addr().String()})
	}
	var members []*server.Server
	// stopAll stops the members one at a time, the leader first, so that
	// each hand-over goes to a member still running and takes
	// milliseconds. Stopped together, a leader would hand over to a member
	// that is stopping too and wait out the transfer timeout.
	stopAll := func() {
		left := slices.Clone(members)
		for len(left) > 0 {
			k := 0
			for i, s := range left {
				if _, _, role := s.Node().Leader(); role == raft.Leader {
					k = i
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			left[k].Shutdown(ctx)
			cancel()
			left = slices.Delete(left, k, k+1)
		}
	}
	for i := 0; i < n; i++ {
		cfg := tmpl
		cfg.ID, cfg.DataDir = uint64(i+1), filepath.Join(dir, fmt.Sprint(i+1))
		cfg.PeerListener, cfg.ClientListener, cfg.Cluster = peers[i], clients[i], boot
		s, err := server.Start(cfg)
		if err != nil {
			for _, l := range append(peers[i+1:], clients[i+1:]...) {
				l.Close()
			}
			stopAll()
			return err
		}
		members = append(members, s)
	}
	defer stopAll()
	etcdAddrs, err := startDevEtcd(cmd, f, members, tmpl)
	if err != nil {
		return err
	}
	waitForLeader(members, 10*time.Second)

	var eps []string
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "raftkv dev: three members, data in %s\n", dir)
	for i, s := range members {
		eps = append(eps, s.ClientAddr())
		fmt.Fprintf(out, "  member %d  client http://%s  peer %s", i+1, s.ClientAddr(), boot[i].PeerAddr)
		if len(etcdAddrs) > 0 {
			fmt.Fprintf(out, "  etcd %s", etcdAddrs[i])
		}
		fmt.Fprintln(out)
	}
	joined := strings.Join(eps, ",")
	fmt.Fprintf(out, "Try:\n  export RAFTKV_ENDPOINTS=%s\n  raftkv put hello world && raftkv get hello && raftkv status\n", joined)
	if len(etcdAddrs) > 0 {
		fmt.Fprintf(out, "  etcdctl --endpoints=%s put hello world\n", strings.Join(etcdAddrs, ","))
	}
	fmt.Fprintf(out, "  curl -L -X PUT --data-binary world http://%s/v1/kv/hello\n", eps[0])
	fmt.Fprintf(out, "  live view http://%s%s/  Raft playground http://%s%s/", eps[0], server.PathUI, eps[0], server.PathPlayground)
	if !playground.HasModule() {
		fmt.Fprint(out, " (built without its WebAssembly module: make build)")
	}
	fmt.Fprintln(out, "\nCtrl-C stops the cluster.")

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	<-sigs
	fmt.Fprintln(out, "raftkv dev: stopping")
	return nil
}

// waitForLeader waits until some member leads and has published its
// client address, so the printed sample command works at once.
func waitForLeader(ms []*server.Server, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, s := range ms {
			st := s.Node().Status()
			for _, m := range st.Members {
				if m.ID == st.Lead && m.ClientAddr != "" {
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startDevEtcd serves etcd's v3 API for each member, on --etcd-port and
// the ports 100 and 200 above it (free ones if those are taken and the
// flag was not given). The servers stop with the members' deferred stop.
func startDevEtcd(cmd *cobra.Command, f *devFlags, members []*server.Server, tmpl server.Config) ([]string, error) {
	if f.etcdPort < 0 {
		return nil, nil
	}
	listen := func(base int) ([]net.Listener, error) {
		var ls []net.Listener
		for i := range members {
			addr := "127.0.0.1:0"
			if base != 0 {
				addr = fmt.Sprintf("127.0.0.1:%d", base+100*i)
			}
			l, err := net.Listen("tcp", addr)
			if err != nil {
				for _, l := range ls {
					l.Close()
				}
				return nil, err
			}
			ls = append(ls, l)
		}
		return ls, nil
	}
	ls, err := listen(f.etcdPort)
	if err != nil && !cmd.Flags().Changed("etcd-port") {
		ls, err = listen(0)
	}
	if err != nil {
		return nil, fmt.Errorf("etcd listeners: %w", err)
	}
	var addrs []string
	for i, s := range members {
		cfg := tmpl
		cfg.ID = uint64(i + 1)
		e, err := startEtcd(s, cfg, ls[i], "")
		if err != nil {
			return nil, err
		}
		go func() {
			<-s.Done()
			e.Stop()
		}()
		addrs = append(addrs, e.Addr())
	}
	return addrs, nil
}
