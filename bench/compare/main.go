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
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

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
	rows           []workload // the workloads of modes
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
	flag.BoolVar(&o.tools, "tools", false, "after the loadgen rows, also run wrk (and h2load against raftkv) on each cluster's leader")
	flag.Parse()
	var err error
	if o.rows, err = selectWorkloads(o.modes); err != nil {
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
	benchDir, err := benchModuleDir()
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
	bins, err := build(ctx, benchDir, tmp, o.only)
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
	fmt.Printf("- load average at the end: %s\n\n", loadAverage())
	printTable(os.Stdout, res, o.rows)
	printTools(os.Stdout)
	return nil
}

// benchModuleDir finds bench/ from the go.mod of the current directory.
func benchModuleDir() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	data, err := os.ReadFile(gomod)
	if err != nil || !strings.Contains(string(data), "module github.com/raftkv/raftkv/bench\n") {
		return "", fmt.Errorf("run this from raftkv's bench directory (go.mod here: %q)", gomod)
	}
	return filepath.Dir(gomod), nil
}

// build compiles raftkv from the parent module and etcd from the module
// proxy into dir (or only the one store named), and returns the binaries
// by store name.
func build(ctx context.Context, benchDir, dir, only string) (map[string]string, error) {
	bins := map[string]string{"raftkv": filepath.Join(dir, "bin", "raftkv"), "etcd": filepath.Join(dir, "bin", "etcd")}
	steps := []struct{ what, moduleDir, pkg string }{
		{"raftkv", filepath.Dir(benchDir), "./cmd/raftkv"},
		{"etcd", benchDir, "go.etcd.io/etcd/server/v3"},
	}
	for _, s := range steps {
		if only != "" && only != s.what {
			continue
		}
		fmt.Fprintf(os.Stderr, "building %s (%s)\n", s.what, s.pkg)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bins[s.what], s.pkg)
		cmd.Dir = s.moduleDir
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("building %s: %w", s.what, err)
		}
	}
	return bins, nil
}

// environment describes the machine and settings, to print with the table.
func environment(o options) string {
	goVersion, _ := exec.Command("go", "env", "GOVERSION").Output()
	host, _ := os.Hostname()
	return fmt.Sprintf("# raftkv vs etcd, %s on %s\n- %s, %d cores, 3 members each on 127.0.0.1, fsync on\n"+
		"- %d-byte values, %d keys, %v warm-up + %v measured per workload, load generator in the same machine\n"+
		"- load average at the start: %s\n",
		time.Now().UTC().Format(time.RFC3339), host, strings.TrimSpace(string(goVersion)), numCPU(),
		o.valueSize, o.keys, o.warmup, o.duration, loadAverage())
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// stopCluster stops c and, if the run failed, shows the members' logs.
func stopCluster(c *cluster, runErr *error) {
	if c == nil {
		return
	}
	fmt.Fprintf(os.Stderr, "stopping %s\n", c.name)
	if err := c.stop(); err != nil && *runErr == nil {
		fmt.Fprintln(os.Stderr, "warning:", err)
	}
	if *runErr != nil && !errors.Is(*runErr, context.Canceled) {
		c.printLogTails()
	}
}

func config(o options, w workload) loadgen.Config {
	return loadgen.Config{Op: w.op, Clients: w.clients, Warmup: o.warmup, Duration: o.duration,
		ValueSize: o.valueSize, Keys: o.keys}
}
