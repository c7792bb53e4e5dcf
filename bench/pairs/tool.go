package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/raftkv/raftkv/bench/extload"
	"github.com/raftkv/raftkv/bench/loadgen"
)

// The value size and key count of loadgen's defaults, which Fill wrote
// and the gets read.
const (
	toolValueSize = 256
	toolKeys      = 10_000
)

// toolLoad drives the leader with wrk or h2load: the puts and gets of
// bench/compare's -tools rows, from o.clients connections.
type toolLoad struct {
	o    options
	args func(d time.Duration) []string
	mean time.Duration // h2load's mean latency in the last run
}

// store is the cluster's name (raftkv or etcd), which picks the wrk script.
func newToolLoad(dir, store, addr string, o options) (*toolLoad, error) {
	t := &toolLoad{o: o}
	conns := fmt.Sprint(o.clients)
	secs := func(d time.Duration) string { return fmt.Sprintf("%ds", max(1, int(d.Seconds()))) }
	switch o.tool {
	case "wrk":
		script := filepath.Join(o.benchDir, "compare", "lua", store+"-"+o.op+".lua")
		t.args = func(d time.Duration) []string {
			return []string{"-t", fmt.Sprint(min(2, o.clients)), "-c", conns, "-d", secs(d), "--latency", "-s", script, "http://" + addr}
		}
	case "h2load":
		in, err := extload.WriteH2loadInputs(dir, addr, toolValueSize, toolKeys)
		if err != nil {
			return nil, err
		}
		uris := []string{"-i", in.GetURIs}
		if o.op == "put" {
			uris = []string{"-d", in.Value, "-H", ":method: PUT", "-i", in.PutURIs}
		}
		t.args = func(d time.Duration) []string {
			return append([]string{"-c", conns, "-m", fmt.Sprint(o.streams), "-D", secs(d)}, uris...)
		}
	default:
		return nil, fmt.Errorf("unknown tool %q", o.tool)
	}
	return t, nil
}

// run runs the tool for d. Ops is the tool's rate times d: the tools
// report a rate, and the members' CPU is divided by it.
func (t *toolLoad) run(ctx context.Context, d time.Duration) (loadgen.Result, error) {
	cmd := exec.CommandContext(ctx, t.o.tool, t.args(d)...)
	cmd.Dir = t.o.benchDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return loadgen.Result{}, fmt.Errorf("%s: %w\n%s", t.o.tool, err, out)
	}
	parse := extload.ParseH2load
	if t.o.tool == "wrk" {
		parse = extload.ParseWrk
	}
	r, err := parse(string(out))
	if err != nil {
		return loadgen.Result{}, fmt.Errorf("%w\n%s", err, out)
	}
	t.mean = r.Mean
	return loadgen.Result{
		Ops: int64(r.OpsPerSec * d.Seconds()), Errors: r.Failed, Elapsed: d,
		OpsPerSec: r.OpsPerSec, P50: r.P50, P99: r.P99,
	}, nil
}
