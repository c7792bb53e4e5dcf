// Package extload reads the output of load generators nobody here wrote,
// wrk (HTTP/1.1) and nghttp2's h2load (HTTP/2), and writes h2load's input
// files, for the commands that drive a store with them (bench/compare's
// -tools, bench/pairs -tool).
package extload

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Result is what one run of a tool reports.
type Result struct {
	OpsPerSec      float64
	P50, P99, Mean time.Duration // zero when the tool does not report it
	// Failed counts requests that failed or were answered with a status
	// other than 2xx.
	Failed int64
}

var (
	wrkRate   = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkPct    = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	wrkErrors = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	h2Rate    = regexp.MustCompile(`finished in [0-9.]+\w+, ([0-9.]+) req/s`)
	// h2load's "failed" counts every request that did not succeed: the
	// errored, the timed out and those answered with a failure status.
	h2Failed = regexp.MustCompile(`requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed`)
	h2Time   = regexp.MustCompile(`time for request:\s+\S+\s+\S+\s+([0-9.]+)(us|ms|s)`)
)

func duration(v, unit string) time.Duration {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "us":
		return time.Duration(f * float64(time.Microsecond))
	case "ms":
		return time.Duration(f * float64(time.Millisecond))
	}
	return time.Duration(f * float64(time.Second))
}

// addCounts adds every number re captures in out to *n.
func addCounts(re *regexp.Regexp, out string, n *int64) {
	if m := re.FindStringSubmatch(out); m != nil {
		for _, v := range m[1:] {
			k, _ := strconv.ParseInt(v, 10, 64)
			*n += k
		}
	}
}

// ParseWrk reads wrk's output (run with --latency for the percentiles).
func ParseWrk(out string) (Result, error) {
	var r Result
	m := wrkRate.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk: no Requests/sec in its output")
	}
	r.OpsPerSec, _ = strconv.ParseFloat(m[1], 64)
	for _, p := range wrkPct.FindAllStringSubmatch(out, -1) {
		if p[1] == "50" {
			r.P50 = duration(p[2], p[3])
		} else {
			r.P99 = duration(p[2], p[3])
		}
	}
	addCounts(wrkNon2xx, out, &r.Failed)
	addCounts(wrkErrors, out, &r.Failed)
	return r, nil
}

// ParseH2load reads h2load's output.
func ParseH2load(out string) (Result, error) {
	var r Result
	m := h2Rate.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("h2load: no req/s in its output")
	}
	r.OpsPerSec, _ = strconv.ParseFloat(m[1], 64)
	addCounts(h2Failed, out, &r.Failed)
	if m := h2Time.FindStringSubmatch(out); m != nil {
		r.Mean = duration(m[1], m[2])
	}
	return r, nil
}

// H2loadURIs is how many distinct URIs h2load cycles through.
const H2loadURIs = 100_000

// H2loadInputs are h2load's input files for one raftkv member.
type H2loadInputs struct {
	Value   string // one value, the body of every put
	PutURIs string // http://ADDR/v1/kv/h2load/N: puts to distinct keys
	GetURIs string // linearizable gets of bench/%08d, the keys a fill wrote
}

// WriteH2loadInputs writes h2load's input files into dir for the member
// at addr ("host:port"): a value of valueSize bytes, and H2loadURIs put
// and get URIs, the gets cycling through keys keys.
func WriteH2loadInputs(dir, addr string, valueSize, keys int) (H2loadInputs, error) {
	in := H2loadInputs{
		Value:   filepath.Join(dir, "value"),
		PutURIs: filepath.Join(dir, "put-uris"),
		GetURIs: filepath.Join(dir, "get-uris"),
	}
	var pu, gu strings.Builder
	for i := range H2loadURIs {
		fmt.Fprintf(&pu, "http://%s/v1/kv/h2load/%d\n", addr, i)
		fmt.Fprintf(&gu, "http://%s/v1/kv/bench/%08d?consistency=linearizable\n", addr, i%keys)
	}
	for _, f := range []struct{ path, body string }{
		{in.Value, strings.Repeat("v", valueSize)}, {in.PutURIs, pu.String()}, {in.GetURIs, gu.String()},
	} {
		if err := os.WriteFile(f.path, []byte(f.body), 0o644); err != nil {
			return in, fmt.Errorf("h2load inputs: %w", err)
		}
	}
	return in, nil
}
