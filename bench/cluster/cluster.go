// Package cluster starts 3-member raftkv and etcd clusters on loopback
// ports for the benchmark programs, builds their binaries, and accounts
// for the CPU time their processes use.
package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Members is the cluster size of both stores.
const Members = 3

// Bounds on waiting for a cluster.
const (
	readyTimeout = 60 * time.Second
	stopTimeout  = 15 * time.Second
	logTailLines = 15
)

// Cluster is the server processes on 127.0.0.1, each with its own data
// directory and log file under dir.
type Cluster struct {
	Name  string // "raftkv" or "etcd"
	Dir   string
	procs []*exec.Cmd
	logs  []string
	// ClientAddrs is host:port of each member's client API, member i+1's
	// at index i.
	ClientAddrs []string
	// EtcdAddrs is host:port of each member's etcd v3 gRPC API (etcd's
	// client address, or raftkv's --listen-etcd when asked for).
	EtcdAddrs []string
}

// freePorts reserves n loopback ports by listening on them all at once,
// then frees them for the servers to take.
func freePorts(n int) ([]string, error) {
	var addrs []string
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("reserving a loopback port: %w", err)
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// MemberProcs, when above 0, is every member's GOMAXPROCS, raftkv's and
// etcd's alike: members sharing one machine each run as if they had
// their share of its cores, as in a container with a CPU limit. 0 leaves
// each member Go's default (every core).
var MemberProcs int

// RaftkvOptions are the optional parts of a raftkv member's command line.
type RaftkvOptions struct {
	Pprof   bool // serve /debug/pprof/ on the client address
	EtcdAPI bool // serve etcd's v3 gRPC API (--listen-etcd) too
}

// StartRaftkv starts n `raftkv server` members (fsync is always on).
func StartRaftkv(ctx context.Context, bin, dir string, n int, opt RaftkvOptions) (*Cluster, error) {
	addrs, err := freePorts(3 * n)
	if err != nil {
		return nil, err
	}
	peers, clients, etcds := addrs[:n], addrs[n:2*n], addrs[2*n:]
	var spec []string
	for i, p := range peers {
		spec = append(spec, fmt.Sprintf("%d=%s", i+1, p))
	}
	c := &Cluster{Name: "raftkv", Dir: dir, ClientAddrs: clients}
	for i := range n {
		args := []string{"server", "--id", fmt.Sprint(i + 1),
			"--data-dir", filepath.Join(dir, fmt.Sprintf("data%d", i+1)),
			"--listen-peer", peers[i], "--listen-client", clients[i],
			"--cluster", strings.Join(spec, ","), "--log-level", "warn"}
		if opt.Pprof {
			args = append(args, "--enable-pprof")
		}
		if opt.EtcdAPI {
			args = append(args, "--listen-etcd", etcds[i])
			c.EtcdAddrs = append(c.EtcdAddrs, etcds[i])
		}
		if err := c.start(bin, args); err != nil {
			return c, err
		}
	}
	return c, c.waitReady(ctx, "/readyz")
}

// StartEtcd starts three etcd members with etcd's defaults (fsync on,
// 100 ms heartbeat, 1 s election timeout, as raftkv's).
func StartEtcd(ctx context.Context, bin, dir string) (*Cluster, error) {
	addrs, err := freePorts(2 * Members)
	if err != nil {
		return nil, err
	}
	peers, clients := addrs[:Members], addrs[Members:]
	var spec []string
	for i, p := range peers {
		spec = append(spec, fmt.Sprintf("m%d=http://%s", i+1, p))
	}
	c := &Cluster{Name: "etcd", Dir: dir, ClientAddrs: clients, EtcdAddrs: clients}
	for i := range Members {
		args := []string{"--name", fmt.Sprintf("m%d", i+1),
			"--data-dir", filepath.Join(dir, fmt.Sprintf("data%d", i+1)),
			"--listen-peer-urls", "http://" + peers[i], "--initial-advertise-peer-urls", "http://" + peers[i],
			"--listen-client-urls", "http://" + clients[i], "--advertise-client-urls", "http://" + clients[i],
			"--initial-cluster", strings.Join(spec, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "raftkv-bench", "--log-level", "warn"}
		if err := c.start(bin, args); err != nil {
			return c, err
		}
	}
	return c, c.waitReady(ctx, "/health")
}

// start runs one member with its output in a log file. The member gets
// its own process group, so a Ctrl-C reaches only the driver, which then
// stops the members in order; it is killed if the driver dies first.
func (c *Cluster) start(bin string, args []string) error {
	logPath := filepath.Join(c.Dir, fmt.Sprintf("member%d.log", len(c.procs)+1))
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer f.Close() // the child keeps its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if MemberProcs > 0 {
		cmd.Env = append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", MemberProcs))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s member %d: %w", c.Name, len(c.procs)+1, err)
	}
	c.procs = append(c.procs, cmd)
	c.logs = append(c.logs, logPath)
	return nil
}

// waitReady polls path on every member until each answers 200.
func (c *Cluster) waitReady(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	for _, addr := range c.ClientAddrs {
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
			resp, err := hc.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s member at %s not ready after %v (last error %v)", c.Name, addr, readyTimeout, err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// Stop sends SIGTERM to every member, waits, and kills those still
// running after stopTimeout. It reports members that did not exit cleanly.
func (c *Cluster) Stop() error {
	var errs []error
	for _, p := range c.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.Now().Add(stopTimeout)
	for i, p := range c.procs {
		done := make(chan error, 1)
		go func() { done <- p.Wait() }()
		select {
		case err := <-done:
			if err != nil && !killedBy(err, syscall.SIGTERM) {
				errs = append(errs, fmt.Errorf("%s member %d: %w", c.Name, i+1, err))
			}
		case <-time.After(time.Until(deadline)):
			_ = p.Process.Kill()
			<-done
			errs = append(errs, fmt.Errorf("%s member %d: killed after %v", c.Name, i+1, stopTimeout))
		}
	}
	c.procs = nil
	return errors.Join(errs...)
}

// killedBy reports whether err is an exit by sig. etcd re-raises SIGTERM
// after its clean shutdown, so that is how it ends.
func killedBy(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// PrintLogTails shows the end of every member's log, for a failed run.
func (c *Cluster) PrintLogTails() {
	for i, path := range c.logs {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		var lines []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		f.Close()
		fmt.Fprintf(os.Stderr, "--- %s member %d log (last %d lines)\n", c.Name, i+1, logTailLines)
		for _, l := range lines[max(0, len(lines)-logTailLines):] {
			fmt.Fprintln(os.Stderr, l)
		}
	}
}

// clockTicksPerSecond is USER_HZ, the unit of /proc/<pid>/stat's times:
// 100 on every Linux this runs on.
const clockTicksPerSecond = 100

// CPUTime is the user plus system CPU time the members have used so far.
func (c *Cluster) CPUTime() time.Duration {
	var total time.Duration
	for _, d := range c.MemberCPUTimes() {
		total += d
	}
	return total
}

// MemberCPUTimes is each member's CPU time so far, member i+1's at index i.
func (c *Cluster) MemberCPUTimes() []time.Duration {
	out := make([]time.Duration, len(c.procs))
	for i, p := range c.procs {
		out[i] = ProcCPU(p.Process.Pid)
	}
	return out
}

// StopAfter stops c, for a deferred call at the end of a run that ended
// with *runErr: a failure to stop is a warning, and the members' log tails
// are printed when the run failed (not when it was interrupted). A nil c
// (a cluster that did not start) is nothing to stop.
func StopAfter(c *Cluster, runErr *error) {
	if c == nil {
		return
	}
	fmt.Fprintf(os.Stderr, "stopping %s\n", c.Name)
	if err := c.Stop(); err != nil && *runErr == nil {
		fmt.Fprintln(os.Stderr, "warning:", err)
	}
	if *runErr != nil && !errors.Is(*runErr, context.Canceled) {
		c.PrintLogTails()
	}
}

// PIDs is each member's process id, member i+1's at index i.
func (c *Cluster) PIDs() []int {
	out := make([]int, len(c.procs))
	for i, p := range c.procs {
		out[i] = p.Process.Pid
	}
	return out
}

// IOCounts are read and write system calls (syscr and syscw of
// /proc/<pid>/io).
type IOCounts struct{ Reads, Writes int64 }

// IOCounts sums the members' system calls so far.
func (c *Cluster) IOCounts() IOCounts {
	var total IOCounts
	for _, p := range c.procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", p.Process.Pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(line, ": ")
			var n int64
			fmt.Sscan(v, &n)
			switch k {
			case "syscr":
				total.Reads += n
			case "syscw":
				total.Writes += n
			}
		}
	}
	return total
}

// ProcCPU reads utime and stime of pid from /proc; 0 if it cannot.
func ProcCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields after it are
	// split from its closing parenthesis. utime and stime are fields 14, 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return time.Duration(utime+stime) * time.Second / clockTicksPerSecond
}

// SelfCPU is the CPU time of this process: the load generator.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// SystemBusy is the CPU time all processes on the machine have used
// (user, nice, system, irq, softirq and steal of /proc/stat's cpu line).
func SystemBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // skip idle (4) and iowait (5)
		var v int64
		fmt.Sscan(f[i], &v)
		busy += v
	}
	return time.Duration(busy) * time.Second / clockTicksPerSecond
}
