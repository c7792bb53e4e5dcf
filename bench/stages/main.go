// Command stages accounts for a single client's put stage by stage: where
// the time between the request and the answer goes on a 3-member cluster
// and on a 1-member one, what the disk costs with one, two and three
// members syncing at once, and what a loopback round trip between two
// processes costs when both are busy and when both have gone idle. It
// builds raftkv with the build tag stagetrace (internal/stagetrace), whose
// members then timestamp each stage of every write into files, runs one
// independent client's puts against the leader, and joins the members'
// marks by log index. From the bench module:
//
//	cd bench && go run ./stages -duration 10s
//
// Every member runs on this machine, so their wall clocks agree and a
// stage that crosses processes (an AppendEntries on the wire) is measured
// as the difference of two processes' timestamps.
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
	"syscall"
	"time"

	"github.com/raftkv/raftkv/bench/cluster"
	"github.com/raftkv/raftkv/bench/extload"
	"github.com/raftkv/raftkv/bench/loadgen"
)

type options struct {
	duration    time.Duration
	warmup      time.Duration
	diskWriters int
	diskSyncs   int
	diskPause   time.Duration
	loopTrips   int
	tool        string
	benchDir    string
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each cluster's run (0: no clusters, only the disk and loopback tables)")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured run before each measurement")
	flag.IntVar(&o.diskWriters, "disk-writers", 3, "measure fdatasync with 1 up to this many concurrent writers (0: skip)")
	flag.IntVar(&o.diskSyncs, "disk-syncs", 300, "fdatasyncs per writer")
	flag.DurationVar(&o.diskPause, "disk-pause", 300*time.Microsecond, "pause between one writer's syncs, as a single client's members leave")
	flag.IntVar(&o.loopTrips, "loopback-trips", 5000, "measure loopback TCP round trips between two processes, this many back to back and as many with -disk-pause between (0: skip)")
	flag.StringVar(&o.tool, "tool", "loadgen", "the one client: loadgen (bench/loadgen, 10,000 keys) or wrk (distinct keys, bench/compare's script)")
	flag.Parse()
	if addr := os.Getenv(echoAddrEnv); addr != "" {
		if err := runEcho(addr); err != nil {
			fmt.Fprintln(os.Stderr, "stages:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "stages:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	benchDir, err := cluster.ModuleDir()
	if err != nil {
		return err
	}
	o.benchDir = benchDir
	switch o.tool {
	case "loadgen":
	case "wrk":
		if _, err := exec.LookPath("wrk"); err != nil {
			return errors.New("wrk is not installed (Debian: apt-get install -y wrk)")
		}
	default:
		return fmt.Errorf("-tool %q: want loadgen or wrk", o.tool)
	}
	dir, err := os.MkdirTemp("", "raftkv-stages-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Printf("# One client's put, stage by stage (%s, the client %s, load average %s)\n\n", time.Now().UTC().Format(time.RFC3339), o.tool, cluster.LoadAverage())
	if o.duration > 0 {
		if err := measureClusters(ctx, benchDir, dir, o); err != nil {
			return err
		}
	}
	if o.diskWriters > 0 {
		if err := measureDisk(ctx, filepath.Join(dir, "disk"), o); err != nil {
			return err
		}
	}
	if o.loopTrips > 0 {
		return measureLoopback(ctx, o)
	}
	return nil
}

// measureClusters builds raftkv with stage marks and accounts for one
// client's put on a 3-member and on a 1-member cluster.
func measureClusters(ctx context.Context, benchDir, dir string, o options) error {
	bin := filepath.Join(dir, "raftkv-stagetrace")
	fmt.Fprintln(os.Stderr, "building raftkv with -tags stagetrace")
	build := exec.CommandContext(ctx, "go", "build", "-tags", "stagetrace", "-o", bin, "./cmd/raftkv")
	build.Dir = filepath.Dir(benchDir)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building raftkv: %w", err)
	}
	for _, members := range []int{cluster.Members, 1} {
		r, err := measure(ctx, bin, filepath.Join(dir, fmt.Sprintf("c%d", members)), members, o)
		if err != nil {
			return fmt.Errorf("%d-member cluster: %w", members, err)
		}
		r.print(members)
	}
	return nil
}

// oneClient returns a function that runs one client's puts against addr
// for a while, bench/loadgen's or wrk's with the distinct keys of
// bench/compare's script (-tool wrk), and one that closes the client.
func oneClient(ctx context.Context, addr string, o options) (load func(time.Duration) (loadgen.Result, error), closeClient func() error) {
	if o.tool == "wrk" {
		script := filepath.Join(o.benchDir, "compare", "lua", "raftkv-put.lua")
		return func(d time.Duration) (loadgen.Result, error) {
			secs := fmt.Sprintf("%ds", max(1, int(d.Seconds())))
			out, err := exec.CommandContext(ctx, "wrk", "-t", "1", "-c", "1", "-d", secs, "--latency", "-s", script, "http://"+addr).CombinedOutput()
			if err != nil {
				return loadgen.Result{}, fmt.Errorf("wrk: %w\n%s", err, out)
			}
			r, err := extload.ParseWrk(string(out))
			if err != nil {
				return loadgen.Result{}, fmt.Errorf("%w\n%s", err, out)
			}
			// wrk reports a rate: the puts counted are that rate times d,
			// which the puts followed through the marks may pass slightly.
			return loadgen.Result{Ops: int64(r.OpsPerSec * d.Seconds()), P50: r.P50, P99: r.P99}, nil
		}, func() error { return nil }
	}
	s := loadgen.NewRaftkvPlain(addr, "linearizable")
	return func(d time.Duration) (loadgen.Result, error) {
		return loadgen.Run(ctx, s, loadgen.Config{Op: loadgen.OpPut, Clients: 1, Duration: d})
	}, s.Close
}

// measure runs one client's puts against the leader of a fresh cluster
// of the stagetrace build and joins its members' marks.
func measure(ctx context.Context, bin, dir string, members int, o options) (_ *account, err error) {
	marks := filepath.Join(dir, "marks")
	if err := os.MkdirAll(marks, 0o755); err != nil {
		return nil, err
	}
	// The members inherit the environment; the marks name their process.
	os.Setenv(stagetraceDirEnv, marks)
	defer os.Unsetenv(stagetraceDirEnv)
	fmt.Fprintf(os.Stderr, "starting %d raftkv members\n", members)
	c, err := cluster.StartRaftkv(ctx, bin, dir, members, cluster.RaftkvOptions{})
	defer cluster.StopAfter(c, &err)
	if err != nil {
		return nil, err
	}
	li, err := c.Leader(ctx)
	if err != nil {
		return nil, err
	}
	load, closeClient := oneClient(ctx, c.ClientAddrs[li], o)
	defer closeClient()
	if _, err := load(o.warmup); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	from := time.Now()
	res, err := load(o.duration)
	if err != nil {
		return nil, err
	}
	to := time.Now()
	if res.Ops == 0 {
		return nil, errors.New("no put succeeded")
	}
	time.Sleep(200 * time.Millisecond) // the members write their marks every 50 ms
	pids := c.PIDs()
	byMember := make([]*markSet, len(pids))
	for i, pid := range pids {
		if byMember[i], err = readMarks(filepath.Join(marks, fmt.Sprintf("stages-%d.txt", pid))); err != nil {
			return nil, err
		}
	}
	a := join(byMember, li, from.UnixNano(), to.UnixNano())
	a.clientP50, a.clientP99 = res.P50, res.P99
	a.ops = res.Ops
	if len(a.samples) == 0 {
		return nil, fmt.Errorf("no put could be followed through every stage (%d puts)", res.Ops)
	}
	return a, nil
}
