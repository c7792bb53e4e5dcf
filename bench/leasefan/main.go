// Command leasefan measures lease keep-alives per second with many
// leases: it starts a 3-member raftkv cluster (serving etcd's v3 gRPC API
// too) and a 3-member etcd cluster on this machine, one after the other,
// grants -leases leases on each, keeps all of them alive for -duration
// through etcd's gRPC LeaseKeepAlive streams (the same code for both
// stores), and for raftkv also through its own HTTP keep-alive, and prints
// keep-alives per second, latency percentiles and the members' CPU. After
// each row it asks every lease's time to live, to show none expired and
// every renewal took effect. Run it from the bench module:
//
//	cd bench && go run ./leasefan
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/bench/cluster"
)

// options are the command's flags.
type options struct {
	leases      int
	ttl         int64
	duration    time.Duration
	warmup      time.Duration
	conns       int // gRPC connections
	streams     int // keep-alive streams per connection
	window      int // keep-alives in flight per stream
	httpClients int // concurrent callers of raftkv's HTTP keep-alive
	only        string
	targets     []string // gRPC rows: "leader", "all"
	profileDir  string
}

func main() {
	var o options
	var targets string
	flag.IntVar(&o.leases, "leases", 10_000, "leases granted and kept alive")
	flag.Int64Var(&o.ttl, "ttl", 60, "TTL of each lease, seconds")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each row")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured run before each row")
	flag.IntVar(&o.conns, "conns", 6, "gRPC connections (spread over the members: connection i to member leader+i mod 3)")
	flag.IntVar(&o.streams, "streams", 4, "LeaseKeepAlive streams per gRPC connection; the leases are spread over all streams")
	flag.IntVar(&o.window, "window", 8, "keep-alives in flight on each stream (each next one is sent when an answer comes back)")
	flag.IntVar(&o.httpClients, "http-clients", 64, "concurrent callers of raftkv's HTTP keep-alive (0: no HTTP row)")
	flag.StringVar(&o.only, "only", "", "run one store only: raftkv or etcd")
	flag.StringVar(&targets, "targets", "leader,all", "gRPC rows: leader (every connection to the leader), all (connections spread over the members; followers relay to the leader)")
	flag.StringVar(&o.profileDir, "profile", "", "save CPU profiles of the raftkv members for each row in this directory")
	flag.Parse()
	for _, t := range strings.Split(targets, ",") {
		if t != targetLeader && t != targetAll {
			fail(fmt.Errorf("-targets: %q: want %s and/or %s", t, targetLeader, targetAll))
		}
		o.targets = append(o.targets, t)
	}
	if o.only != "" && o.only != "raftkv" && o.only != "etcd" {
		fail(fmt.Errorf("-only %q: want raftkv or etcd", o.only))
	}
	if o.leases <= 0 || o.ttl <= 0 || o.conns <= 0 || o.streams <= 0 || o.window <= 0 || o.httpClients < 0 {
		fail(errors.New("-leases, -ttl, -conns, -streams and -window must be positive"))
	}
	if o.leases < o.conns*o.streams*o.window {
		fail(fmt.Errorf("%d leases cannot fill %d streams × %d in flight", o.leases, o.conns*o.streams, o.window))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "leasefan:", err)
	os.Exit(1)
}

func run(ctx context.Context, o options) error {
	benchDir, err := cluster.ModuleDir()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "raftkv-leasefan-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
	}
	bins, err := cluster.Build(ctx, benchDir, tmp, o.only)
	if err != nil {
		return err
	}
	start := time.Now().UTC()
	loadBefore := cluster.LoadAverage()
	fmt.Fprintf(os.Stderr, "load average at the start: %s\n", loadBefore)
	var rows []row
	for _, store := range []string{"raftkv", "etcd"} {
		if o.only != "" && o.only != store {
			continue
		}
		r, err := runStore(ctx, store, bins[store], filepath.Join(tmp, store), o)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	printReport(os.Stdout, o, start, loadBefore, cluster.LoadAverage(), rows)
	for _, r := range rows {
		if r.check.late > 0 {
			fmt.Fprintf(os.Stderr, "warning: %s %s: %d leases were last renewed too long before the check to tell whether they lived their TTL; use a longer -ttl\n", r.store, r.path, r.check.late)
		}
		if r.failures() > 0 {
			return fmt.Errorf("%s %s: %d errors, %d leases not renewed or expired", r.store, r.path, r.errors, r.check.bad)
		}
	}
	return nil
}

// runStore starts one store's cluster, grants the leases and measures
// every row on it.
func runStore(ctx context.Context, store, bin, dir string, o options) (_ []row, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "starting 3 %s members\n", store)
	var c *cluster.Cluster
	if store == "raftkv" {
		c, err = cluster.StartRaftkv(ctx, bin, dir, cluster.Members, cluster.RaftkvOptions{EtcdAPI: true, Pprof: o.profileDir != ""})
	} else {
		c, err = cluster.StartEtcd(ctx, bin, dir)
	}
	defer cluster.StopAfter(c, &err)
	if err != nil {
		return nil, err
	}
	leader, err := c.Leader(ctx)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	ids, err := grant(ctx, c.EtcdAddrs[leader], o.leases, o.ttl)
	if err != nil {
		return nil, fmt.Errorf("%s: granting: %w", store, err)
	}
	fmt.Fprintf(os.Stderr, "%s: %d leases of %d s granted in %v\n", store, len(ids), o.ttl, time.Since(t0).Round(time.Millisecond))
	var out []row
	for _, t := range o.targets {
		addrs := []string{c.EtcdAddrs[leader]}
		if t == targetAll {
			// Leader first, so that connection i goes to member
			// leader+i (mod 3) and each store gets the same share of
			// its streams on its leader whichever member leads.
			addrs = append(c.EtcdAddrs[leader:len(c.EtcdAddrs):len(c.EtcdAddrs)], c.EtcdAddrs[:leader]...)
		}
		r, err := measure(ctx, c, o, ids, fmt.Sprintf("gRPC, %s", targetLabel[t]), func(ctx context.Context, a *acks, win window) (func() *result, error) {
			return keepAliveGRPC(ctx, addrs, ids, o, a, win)
		})
		if err != nil {
			return nil, fmt.Errorf("%s gRPC %s: %w", store, t, err)
		}
		out = append(out, r)
	}
	if store == "raftkv" && o.httpClients > 0 {
		r, err := measure(ctx, c, o, ids, "HTTP (raftkv's Go client)", func(ctx context.Context, a *acks, win window) (func() *result, error) {
			return keepAliveHTTP(ctx, c.ClientAddrs, ids, o, a, win)
		})
		if err != nil {
			return nil, fmt.Errorf("%s HTTP: %w", store, err)
		}
		out = append(out, r)
	}
	return out, nil
}
