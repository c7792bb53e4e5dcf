package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/raftkv/raftkv/bench/cluster"
	"github.com/raftkv/raftkv/bench/extload"
)

// Load generators nobody here wrote, run against each cluster's leader
// after the loadgen rows (-tools): wrk (HTTP/1.1, a connection per
// client) and h2load (HTTP/2; raftkv serves it in cleartext, h2c).
// raftkv is sent plain PUT and GET requests; etcd has no plain HTTP
// key-value API, so wrk reaches its gRPC gateway (POST /v3/kv/put and
// /v3/kv/range with base64 JSON), which costs etcd a JSON translation a
// gRPC client would not pay: those rows favour raftkv and are labelled.

// The wrk scripts are in lua/ (relative to this directory), named
// <store>-<op>.lua.
const luaDir = "compare/lua"

// toolRow is one run of an external load generator.
type toolRow struct {
	store, what, command string
	extload.Result
	serverCPUPerOp time.Duration
	err            error
}

var toolRows []toolRow

// runTools runs the external load generators against leader ("host:port")
// of cluster c.
func runTools(ctx context.Context, c *cluster.Cluster, leader string, o options) {
	dur := fmt.Sprintf("%ds", max(1, int(o.duration.Seconds())))
	url := "http://" + leader
	type run struct {
		what string
		args []string
		wrk  bool
	}
	var runs []run
	var h2dir string // h2load's input files, named DIR in the printed commands
	putScript, getScript := luaDir+"/"+c.Name+"-put.lua", luaDir+"/"+c.Name+"-get.lua"
	for _, n := range []int{1, 64, 256} {
		runs = append(runs, run{fmt.Sprintf("put, %d connections", n),
			[]string{"-t", fmt.Sprint(min(2, n)), "-c", fmt.Sprint(n), "-d", dur, "--latency", "-s", putScript, url}, true})
	}
	runs = append(runs, run{"get linearizable, 64 connections",
		[]string{"-t", "2", "-c", "64", "-d", dur, "--latency", "-s", getScript, url}, true})
	if c.Name == "raftkv" {
		// h2load takes its URIs from a file and cycles through them: puts
		// to distinct keys, gets of the filled keys.
		dir, err := os.MkdirTemp("", "raftkv-h2load-")
		if err != nil {
			toolRows = append(toolRows, toolRow{store: c.Name, what: "h2load", err: err})
			return
		}
		defer os.RemoveAll(dir)
		h2dir = dir
		in, err := extload.WriteH2loadInputs(dir, leader, o.valueSize, o.keys)
		if err != nil {
			toolRows = append(toolRows, toolRow{store: c.Name, what: "h2load", err: err})
			return
		}
		common := []string{"-D", dur, "--warm-up-time", "1s"}
		put := append([]string{"-d", in.Value, "-H", ":method: PUT", "-i", in.PutURIs}, common...)
		get := append([]string{"-i", in.GetURIs}, common...)
		runs = append(runs,
			run{"put (h2load), 64 connections × 1 stream", append([]string{"-c", "64", "-m", "1"}, put...), false},
			run{"put (h2load), 4 connections × 16 streams", append([]string{"-c", "4", "-m", "16"}, put...), false},
			run{"get linearizable (h2load), 64 connections × 1 stream", append([]string{"-c", "64", "-m", "1"}, get...), false},
			run{"get linearizable (h2load), 4 connections × 16 streams", append([]string{"-c", "4", "-m", "16"}, get...), false},
		)
	}
	for _, r := range runs {
		tool := "h2load"
		if r.wrk {
			tool = "wrk"
		}
		if _, err := exec.LookPath(tool); err != nil {
			toolRows = append(toolRows, toolRow{store: c.Name, what: r.what, err: fmt.Errorf("%s not installed", tool)})
			continue
		}
		if err := waitQuiet(ctx, c, o.quietWait); err != nil {
			return
		}
		before := c.CPUTime()
		cmd := exec.CommandContext(ctx, tool, r.args...)
		cmd.Dir = o.benchDir
		out, err := cmd.CombinedOutput()
		cpu := c.CPUTime() - before
		quoted := make([]string, len(r.args))
		for i, a := range r.args {
			quoted[i] = a
			if strings.Contains(a, " ") {
				quoted[i] = "'" + a + "'"
			}
		}
		command := tool + " " + strings.ReplaceAll(strings.Join(quoted, " "), leader, "LEADER")
		if h2dir != "" {
			command = strings.ReplaceAll(command, h2dir, "DIR")
		}
		row := toolRow{store: c.Name, what: r.what, command: command, err: err}
		if err == nil {
			if r.wrk {
				row.Result, row.err = extload.ParseWrk(string(out))
			} else {
				row.Result, row.err = extload.ParseH2load(string(out))
			}
		}
		if row.err != nil {
			row.err = fmt.Errorf("%w\n%s", row.err, out)
		}
		if row.err == nil && row.OpsPerSec == 0 {
			row.err = fmt.Errorf("%s: no request succeeded\n%s", tool, out)
		}
		if row.OpsPerSec > 0 {
			// The tools' own warm-up is short; CPU over the whole command.
			secs := o.duration.Seconds()
			if !r.wrk {
				secs += 1
			}
			row.serverCPUPerOp = time.Duration(float64(cpu) / (row.OpsPerSec * secs))
		}
		fmt.Fprintf(os.Stderr, "%-6s %-55s %8.0f ops/s  p50 %v p99 %v mean %v failed %d  CPU/op members %v\n",
			c.Name, r.what, row.OpsPerSec, row.P50, row.P99, row.Mean, row.Failed, row.serverCPUPerOp)
		toolRows = append(toolRows, row)
	}
}

// printTools writes the external load generators' rows and commands.
func printTools(w io.Writer) {
	if len(toolRows) == 0 {
		return
	}
	fmt.Fprintln(w, "\nExternal load generators against the leader (etcd: its gRPC gateway, JSON over HTTP/1.1):")
	fmt.Fprintln(w, "\n| store | workload | ops/s | p50 | p99 | mean | failed | members' CPU/op |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	opt := func(d time.Duration) string {
		if d == 0 {
			return "–"
		}
		return ms(d)
	}
	for _, r := range toolRows {
		if r.err != nil {
			fmt.Fprintf(w, "| %s | %s | error: %s | | | | | |\n", r.store, r.what, firstLine(r.err.Error()))
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %d | %d µs |\n", r.store, r.what, thousands(r.OpsPerSec),
			opt(r.P50), opt(r.P99), opt(r.Mean), r.Failed, r.serverCPUPerOp.Microseconds())
	}
	fmt.Fprintln(w, "\nCommands, run in bench/ (LEADER is the leader's client address host:port; h2load's DIR/value")
	fmt.Fprintln(w, "holds one value, DIR/put-uris lists http://LEADER/v1/kv/h2load/N and DIR/get-uris")
	fmt.Fprintln(w, "http://LEADER/v1/kv/bench/%08d?consistency=linearizable for N up to 100,000):")
	for _, r := range toolRows {
		if r.command != "" {
			fmt.Fprintf(w, "\n    %s\n", r.command)
		}
	}
}

func firstLine(s string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	if sc.Scan() {
		return sc.Text()
	}
	return s
}
