package extload

import (
	"os"
	"strings"
	"testing"
	"time"
)

// wrkOut is wrk's output (4.0.2, --latency) for puts to a raftkv leader.
const wrkOut = `Running 1s test @ http://127.0.0.1:8002
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.56ms    1.60ms  12.55ms   92.97%
    Req/Sec     3.12k   169.08     3.39k    60.00%
  Latency Distribution
     50%    1.12ms
     75%    1.40ms
     90%    2.09ms
     99%    9.56ms
  3101 requests in 1.00s, 595.31KB read
Requests/sec:   3094.99
Transfer/sec:    594.15KB
`

// h2loadOut is h2load's output (nghttp2 1.64) for gets of keys that do
// not exist: every answer a 404.
const h2loadOut = `starting benchmark...
spawning thread #0: 2 total client(s). 200 total requests
Application protocol: h2c
progress: 100% done

finished in 25.45ms, 7858.85 req/s, 523.64KB/s
requests: 200 total, 200 started, 200 done, 0 succeeded, 200 failed, 0 errored, 0 timeout
status codes: 0 2xx, 0 3xx, 200 4xx, 0 5xx
traffic: 13.33KB (13646) total, 1.29KB (1324) headers (space savings 94.14%), 8.40KB (8600) data
                     min         max         mean         sd        +/- sd
time for request:      188us      1.47ms       446us       203us    87.50%
time for connect:      374us       652us       513us       196us   100.00%
time to 1st byte:     2.03ms      2.04ms      2.04ms         3us   100.00%
req/s           :    4081.17     4119.95     4100.56       27.42   100.00%
`

func TestParseWrk(t *testing.T) {
	r, err := ParseWrk(wrkOut)
	if err != nil {
		t.Fatal(err)
	}
	want := Result{OpsPerSec: 3094.99, P50: 1120 * time.Microsecond, P99: 9560 * time.Microsecond}
	if r != want {
		t.Fatalf("got %+v, want %+v", r, want)
	}
	// Failures: statuses other than 2xx and 3xx, and socket errors.
	bad := strings.Replace(wrkOut, "Requests/sec:", "  Socket errors: connect 0, read 1, write 0, timeout 2\n  Non-2xx or 3xx responses: 7\nRequests/sec:", 1)
	if r, err := ParseWrk(bad); err != nil || r.Failed != 10 {
		t.Fatalf("failed %d, %v; want 10", r.Failed, err)
	}
	if _, err := ParseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Fatal("output without a rate parsed")
	}
}

// TestParseH2load: the failed requests counted once, though h2load
// reports them again among the status codes.
func TestParseH2load(t *testing.T) {
	r, err := ParseH2load(h2loadOut)
	if err != nil {
		t.Fatal(err)
	}
	want := Result{OpsPerSec: 7858.85, Mean: 446 * time.Microsecond, Failed: 200}
	if r != want {
		t.Fatalf("got %+v, want %+v", r, want)
	}
	if _, err := ParseH2load("starting benchmark...\n"); err == nil {
		t.Fatal("output without a rate parsed")
	}
}

func TestWriteH2loadInputs(t *testing.T) {
	in, err := WriteH2loadInputs(t.TempDir(), "127.0.0.1:8001", 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if v := read(in.Value); v != "vvvvv" {
		t.Fatalf("value %q", v)
	}
	puts := strings.Split(strings.TrimSuffix(read(in.PutURIs), "\n"), "\n")
	gets := strings.Split(strings.TrimSuffix(read(in.GetURIs), "\n"), "\n")
	if len(puts) != H2loadURIs || len(gets) != H2loadURIs {
		t.Fatalf("%d put and %d get URIs, want %d each", len(puts), len(gets), H2loadURIs)
	}
	if puts[7] != "http://127.0.0.1:8001/v1/kv/h2load/7" || gets[4] != "http://127.0.0.1:8001/v1/kv/bench/00000001?consistency=linearizable" {
		t.Fatalf("URIs %q, %q", puts[7], gets[4])
	}
}
