package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/api"
)

func batchJSON(t *testing.T, ops ...api.BatchOp) []byte {
	t.Helper()
	b, err := json.Marshal(api.BatchRequest{Ops: ops})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// postBatch sends ops in the binary form and decodes the binary answer.
func postBatch(t *testing.T, c *tcluster, s *Server, query string, ops ...api.BatchOp) api.BatchResponse {
	t.Helper()
	body := api.AppendBatchRequest(nil, &api.BatchRequest{Ops: ops})
	resp := c.do(http.MethodPost, url(s, api.PathBatch+query), body, "Content-Type", api.ContentTypeBatch)
	b := expect(t, resp, 200, "")
	if ct := resp.Header.Get("Content-Type"); ct != api.ContentTypeBatch {
		t.Fatalf("answer Content-Type %q, want %q", ct, api.ContentTypeBatch)
	}
	out, err := api.DecodeBatchResponse(b)
	if err != nil || len(out.Results) != len(ops) {
		t.Fatalf("answer %q: %v, %d results for %d ops", b, err, len(out.Results), len(ops))
	}
	return out
}

func wantResult(t *testing.T, r api.BatchResult, i, status int, code string) {
	t.Helper()
	if r.Status != status || r.Code != code || (code != "" && r.Error == "") {
		t.Fatalf("result %d = %+v, want status %d code %q", i, r, status, code)
	}
}

// TestBatchOpsAnsweredEachOnItsOwn sends writes and reads in one batch and
// checks each result against what the same request alone would get,
// including the failures, which do not affect the other ops.
func TestBatchOpsAnsweredEachOnItsOwn(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	w := decode[api.WriteResponse](t, expect(t, put(c, lead, "cas", "1"), 200, ""))

	out := postBatch(t, c, lead, "",
		api.BatchOp{Op: api.BatchPut, Key: "a", Value: []byte("A")},
		api.BatchOp{Op: api.BatchAppend, Key: "log", Value: []byte("x")},
		api.BatchOp{Op: api.BatchPut, Key: "cas", Value: []byte("2"), IfMatch: w.Rev + 100},
		api.BatchOp{Op: api.BatchPut, Key: "cas", Value: []byte("3"), IfMatch: w.Rev},
		api.BatchOp{Op: api.BatchPut, Key: "", Value: []byte("v")},
		api.BatchOp{Op: api.BatchPut, Key: "big", Value: []byte(strings.Repeat("x", testValueLimit+1))},
		api.BatchOp{Op: api.BatchGet, Key: "a"},
		api.BatchOp{Op: api.BatchDelete, Key: "never-was"},
		api.BatchOp{Op: api.BatchPut, Key: "new", Value: []byte("n"), IfNoneMatch: true},
		api.BatchOp{Op: api.BatchPut, Key: "cas", Value: []byte("4"), IfMatch: 1, IfNoneMatch: true},
	)
	r := out.Results
	wantResult(t, r[0], 0, 200, "")
	wantResult(t, r[1], 1, 200, "")
	wantResult(t, r[2], 2, 412, api.CodePreconditionFailed)
	wantResult(t, r[3], 3, 200, "")
	wantResult(t, r[4], 4, 400, api.CodeBadKey)
	wantResult(t, r[5], 5, 413, api.CodeTooLarge)
	// The ops of a batch are concurrent: the get may read before the put.
	if g := r[6]; !(g.Status == 200 && string(g.Value) == "A") && g.Code != api.CodeNotFound {
		t.Fatalf("get of a key put in the same batch = %+v", g)
	}
	wantResult(t, r[7], 7, 404, api.CodeNotFound)
	wantResult(t, r[8], 8, 200, "")
	wantResult(t, r[9], 9, 400, api.CodeBadRequest)
	if r[0].Index == 0 || r[0].Index == r[1].Index || r[2].Rev != w.Rev {
		t.Fatalf("indexes %d, %d (want distinct log positions); failed CAS rev %d, want %d", r[0].Index, r[1].Index, r[2].Rev, w.Rev)
	}
	if b := expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"cas"), nil), 200, ""); string(b) != "3" {
		t.Fatalf("cas = %q after the batch, want 3", b)
	}

	// Gets read what the writes left, at the request's consistency level.
	for _, level := range []string{"", "?consistency=lease", "?consistency=stale"} {
		out = postBatch(t, c, lead, level,
			api.BatchOp{Op: api.BatchGet, Key: "a"},
			api.BatchOp{Op: api.BatchGet, Key: "missing"},
			api.BatchOp{Op: api.BatchGet, Key: "log"})
		wantResult(t, out.Results[1], 1, 404, api.CodeNotFound)
		if a, l := out.Results[0], out.Results[2]; string(a.Value) != "A" || a.Rev != r[0].Rev || string(l.Value) != "x" || l.Rev != r[1].Rev {
			t.Fatalf("gets%s = %+v, %+v", level, a, l)
		}
	}
}

// TestBatchIdempotencyKeys: a write repeated with its Idempotency-Key, in
// the same batch or a later one, gets the first answer and applies once.
func TestBatchIdempotencyKeys(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	op := api.BatchOp{Op: api.BatchAppend, Key: "log", Value: []byte("x"), IdempotencyKey: "tok-1"}
	out := postBatch(t, c, lead, "", op, op)
	again := postBatch(t, c, lead, "", op)
	if out.Results[0].Index == 0 || out.Results[1].Index != out.Results[0].Index || again.Results[0].Index != out.Results[0].Index {
		t.Fatalf("indexes %d, %d, %d: want the first one thrice", out.Results[0].Index, out.Results[1].Index, again.Results[0].Index)
	}
	if b := expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"log"), nil), 200, ""); string(b) != "x" {
		t.Fatalf("log = %q, want the append applied once", b)
	}
}

// TestBatchJSONForm: the JSON form works alike (values base64 in JSON).
func TestBatchJSONForm(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	b := expect(t, c.do(http.MethodPost, url(lead, api.PathBatch),
		batchJSON(t, api.BatchOp{Op: api.BatchPut, Key: "k", Value: []byte{0, 1, 2}}, api.BatchOp{Op: api.BatchGet, Key: "nope"},
			api.BatchOp{Op: "frobnicate", Key: "k"})), 200, "")
	out := decode[api.BatchResponse](t, b)
	if len(out.Results) != 3 || out.Results[0].Status != 200 || out.Results[0].Index == 0 || out.Results[1].Code != api.CodeNotFound ||
		out.Results[2].Code != api.CodeBadRequest {
		t.Fatalf("JSON answer %s", b)
	}
	b = expect(t, c.do(http.MethodPost, url(lead, api.PathBatch), []byte(`{"ops":[{"op":"get","key":"k"}]}`)), 200, "")
	if got := decode[api.BatchResponse](t, b).Results[0]; string(got.Value) != "\x00\x01\x02" || got.Rev != out.Results[0].Rev {
		t.Fatalf("JSON get answer %s", b)
	}
}

// TestBatchBadRequests: malformed or oversized batches are refused whole,
// with their code, and change nothing.
func TestBatchBadRequests(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.Limits.MaxBatchBytes = 256 << 10 })
	lead := c.leader()
	u := url(lead, api.PathBatch)
	bin := []string{"Content-Type", api.ContentTypeBatch}
	expect(t, c.do(http.MethodGet, u, nil), 405, "")
	expect(t, c.do(http.MethodPost, u, []byte(`{"ops":[`)), 400, api.CodeBadJSON)
	expect(t, c.do(http.MethodPost, u, []byte(`{"ops":[]}`)), 400, api.CodeBadRequest)
	expect(t, c.do(http.MethodPost, u, []byte("RKB1\x01\x09"), bin...), 400, api.CodeBadRequest)
	expect(t, c.do(http.MethodPost, u, []byte("garbage"), bin...), 400, api.CodeBadRequest)
	many := make([]api.BatchOp, MaxBatchOps+1)
	for i := range many {
		many[i] = api.BatchOp{Op: api.BatchPut, Key: "k", Value: []byte("v")}
	}
	expect(t, c.do(http.MethodPost, u, batchJSON(t, many...)), 413, api.CodeTooLarge)
	expect(t, c.do(http.MethodPost, u, api.AppendBatchRequest(nil, &api.BatchRequest{Ops: many}), bin...), 413, api.CodeTooLarge)
	huge := api.BatchOp{Op: api.BatchPut, Key: "k", Value: []byte(strings.Repeat("x", 300<<10))}
	expect(t, c.do(http.MethodPost, u, api.AppendBatchRequest(nil, &api.BatchRequest{Ops: []api.BatchOp{huge}}), bin...), 413, api.CodeTooLarge)
	expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"k"), nil), 404, api.CodeNotFound)
}

// TestBatchOnFollower: a follower redirects a batch with writes or
// leader-level reads to the leader, and serves stale reads itself.
func TestBatchOnFollower(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead, f := c.leader(), c.follower()
	expect(t, put(c, lead, "k", "v"), 200, "")
	body := api.AppendBatchRequest(nil, &api.BatchRequest{Ops: []api.BatchOp{{Op: api.BatchPut, Key: "k2", Value: []byte("v")}}})
	for _, query := range []string{"", "?consistency=linearizable"} {
		resp := c.do(http.MethodPost, url(f, api.PathBatch+query), body, "Content-Type", api.ContentTypeBatch)
		expect(t, resp, 307, "")
		if loc := resp.Header.Get("Location"); loc != url(lead, api.PathBatch+query) {
			t.Fatalf("Location %q, want %q", loc, url(lead, api.PathBatch+query))
		}
	}
	get := api.BatchOp{Op: api.BatchGet, Key: "k"}
	expect(t, c.do(http.MethodPost, url(f, api.PathBatch), api.AppendBatchRequest(nil, &api.BatchRequest{Ops: []api.BatchOp{get}}),
		"Content-Type", api.ContentTypeBatch), 307, "")
	waitApplied(t, f, lead)
	if out := postBatch(t, c, f, "?consistency=stale", get); string(out.Results[0].Value) != "v" {
		t.Fatalf("stale batch get on a follower = %+v", out.Results[0])
	}
}

// waitApplied waits until f has applied everything lead has committed.
func waitApplied(t *testing.T, f, lead *Server) {
	t.Helper()
	want := lead.node.Status().Commit
	deadline := time.Now().Add(10 * time.Second)
	for f.node.Status().Applied < want {
		if time.Now().After(deadline) {
			t.Fatalf("member %d did not apply up to %d", f.cfg.ID, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
