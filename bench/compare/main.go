// Command compare runs the same load against a 3-member raftkv cluster
// and a 3-member etcd cluster on this machine, one after the other, and
// prints both with their ratios. Run it from the bench module:
//
//	cd bench && go run ./compare
//
// It builds raftkv from the parent module and etcd's server from the Go
// module proxy (the version pinned in bench/go.mod), starts each cluster
// on loopback ports with data in a temporary directory, runs every
// workload with loadgen, stops the cluster, and removes everything it
// made, also on failure or Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/bench/cluster"
	"github.com/raftkv/raftkv/bench/loadgen"
)

// options are the command's flags.
type options struct {
	duration   time.Duration
	warmup     time.Duration
	keys       int
	valueSize  int
	only       string // "", "raftkv" or "etcd"
	profileDir string
	retries    int           // extra attempts at a workload disturbed by other load
	quietWait  time.Duration // bound on waiting for other load to pass
	// raftkvBatchOps is the raftkv client's MaxBatchOps (1: no batching).
	raftkvBatchOps int
	modes          string
	rowIDs         string     // -rows: ids of the rows to run, or all
	rows           []workload // the workloads of modes (and -rows)
	tools          bool       // also run wrk and h2load
	benchDir       string     // the bench module's directory
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each workload")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured run before each workload")
	flag.IntVar(&o.keys, "keys", 10_000, "distinct keys, chosen uniformly")
	flag.IntVar(&o.valueSize, "value-size", 256, "value bytes")
	flag.StringVar(&o.only, "only", "", "run one store only: raftkv or etcd")
	flag.DurationVar(&o.quietWait, "quiet-wait", 5*time.Minute, "before each workload, wait up to this long for other processes to leave the CPU")
	flag.IntVar(&o.retries, "retries", 2, "measure a workload again, up to this many times, when other processes competed for the CPU")
	flag.StringVar(&o.profileDir, "profile", "", "save a CPU profile of the raftkv leader for each workload in this directory")
	flag.IntVar(&o.raftkvBatchOps, "raftkv-batch-ops", 0, "raftkv client's MaxBatchOps: 0 the default, 1 no batching (every call its own HTTP request)")
	flag.StringVar(&o.modes, "modes", modeBatched+","+modeIndependent, "client modes to run: batched (one shared Go client, coalescing into /v1/batch), independent (a connection per client, plain requests), or both")
	flag.StringVar(&o.rowIDs, "rows", "", "run only these rows of the selected modes, by id (comma-separated; a row's id is its profile name, like ind-put-64); all if empty")
	flag.BoolVar(&o.tools, "tools", false, "after the loadgen rows, also run wrk (and h2load against raftkv) on each cluster's leader")
	flag.IntVar(&cluster.MemberProcs, "member-procs", 0, "GOMAXPROCS of every member of both stores (0: Go's default, every core)")
	flag.Parse()
	var err error
	if o.rows, err = selectWorkloads(o.modes, o.rowIDs); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(2)
	}
	if o.only != "" && o.only != "raftkv" && o.only != "etcd" {
		fmt.Fprintf(os.Stderr, "compare: -only %q: want raftkv or etcd\n", o.only)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	benchDir, err := cluster.ModuleDir()
	if err != nil {
		return err
	}
	o.benchDir = benchDir
	tmp, err := os.MkdirTemp("", "raftkv-compare-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
	}
	env := environment(o)
	fmt.Fprint(os.Stderr, env)
	bins, err := cluster.Build(ctx, benchDir, tmp, o.only)
	if err != nil {
		return err
	}
	res := results{}
	if o.only != "etcd" {
		if res["raftkv"], err = runRaftkv(ctx, bins["raftkv"], filepath.Join(tmp, "raftkv"), o); err != nil {
			return err
		}
	}
	if o.only != "raftkv" {
		if res["etcd"], err = runEtcd(ctx, bins["etcd"], filepath.Join(tmp, "etcd"), o); err != nil {
			return err
		}
	}
	fmt.Print(env)
	fmt.Printf("- load average at the end: %s\n\n", cluster.LoadAverage())
	printTable(os.Stdout, res, o.rows)
	printTools(os.Stdout)
	return nil
}

// environment describes the machine and settings, to print with the table.
func environment(o options) string {
	goVersion, _ := exec.Command("go", "env", "GOVERSION").Output()
	host, _ := os.Hostname()
	procs := "every member Go's default GOMAXPROCS"
	if cluster.MemberProcs > 0 {
		procs = fmt.Sprintf("every member GOMAXPROCS=%d", cluster.MemberProcs)
	}
	return fmt.Sprintf("# raftkv vs etcd, %s on %s\n- %s, %d cores, 3 members each on 127.0.0.1, %s, fsync on\n"+
		"- %d-byte values, %d keys, %v warm-up + %v measured per workload, load generator in the same machine\n"+
		"- load average at the start: %s\n",
		time.Now().UTC().Format(time.RFC3339), host, strings.TrimSpace(string(goVersion)), numCPU(), procs,
		o.valueSize, o.keys, o.warmup, o.duration, cluster.LoadAverage())
}

func config(o options, w workload) loadgen.Config {
	return loadgen.Config{Op: w.op, Clients: w.clients, Warmup: o.warmup, Duration: o.duration,
		ValueSize: o.valueSize, Keys: o.keys}
}
