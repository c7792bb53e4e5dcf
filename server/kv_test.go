package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/api"
)

// TestKVTable walks docs/api.md's key-value rows on the leader: put, get with
// ETag, append, conditional writes, delete, and delete of an absent key.
func TestKVTable(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()

	w := decode[api.WriteResponse](t, expect(t, put(c, lead, "k", "v1"), 200, ""))
	resp := c.do(http.MethodGet, url(lead, api.PathKV+"k"), nil)
	if got := resp.Header.Get("ETag"); got != etag(w.Rev) {
		t.Fatalf("ETag %s after put at revision %d", got, w.Rev)
	}
	if b := expect(t, resp, 200, ""); string(b) != "v1" {
		t.Fatalf("get k = %q", b)
	}

	// Append creates and extends; POST without op=append is malformed.
	expect(t, c.do(http.MethodPost, url(lead, api.PathKV+"log?op=append"), []byte("a")), 200, "")
	expect(t, c.do(http.MethodPost, url(lead, api.PathKV+"log?op=append"), []byte("b")), 200, "")
	if b := expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"log"), nil), 200, ""); string(b) != "ab" {
		t.Fatalf("after two appends log = %q", b)
	}
	expect(t, c.do(http.MethodPost, url(lead, api.PathKV+"log"), []byte("c")), 400, api.CodeBadRequest)

	// If-None-Match: * creates only; If-Match compares revisions.
	w = decode[api.WriteResponse](t, expect(t, put(c, lead, "cas", "1", "If-None-Match", "*"), 200, ""))
	expect(t, put(c, lead, "cas", "2", "If-None-Match", "*"), 412, api.CodePreconditionFailed)
	expect(t, put(c, lead, "cas", "2", "If-Match", etag(w.Rev+100)), 412, api.CodePreconditionFailed)
	w2 := decode[api.WriteResponse](t, expect(t, put(c, lead, "cas", "2", "If-Match", etag(w.Rev)), 200, ""))
	expect(t, put(c, lead, "cas", "3", "If-Match", etag(w.Rev)), 412, api.CodePreconditionFailed)
	expect(t, put(c, lead, "cas", "3", "If-Match", "7"), 400, api.CodeBadRequest)
	expect(t, put(c, lead, "absent", "3", "If-Match", etag(1)), 412, api.CodePreconditionFailed)
	expect(t, c.do(http.MethodDelete, url(lead, api.PathKV+"cas"), nil, "If-Match", etag(w.Rev)), 412, api.CodePreconditionFailed)
	expect(t, c.do(http.MethodDelete, url(lead, api.PathKV+"cas"), nil, "If-Match", etag(w2.Rev)), 200, "")

	// Delete, then the key is gone; deleting it again is 404.
	expect(t, c.do(http.MethodDelete, url(lead, api.PathKV+"k"), nil), 200, "")
	expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"k"), nil), 404, api.CodeNotFound)
	expect(t, c.do(http.MethodDelete, url(lead, api.PathKV+"k"), nil), 404, api.CodeNotFound)
}

// TestBadInputs shows each malformed request refused with its code.
func TestBadInputs(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	long := strings.Repeat("k", 4097)
	expect(t, put(c, lead, "", "v"), 400, api.CodeBadKey)
	expect(t, put(c, lead, long, "v"), 400, api.CodeBadKey)
	expect(t, c.do(http.MethodGet, url(lead, api.PathKV+long), nil), 400, api.CodeBadKey)
	expect(t, put(c, lead, strings.Repeat("k", 4096), "v"), 200, "")
	expect(t, put(c, lead, "big", strings.Repeat("x", testValueLimit+1)), 413, api.CodeTooLarge)
	expect(t, put(c, lead, "big", strings.Repeat("x", testValueLimit)), 200, "")
	expect(t, c.do(http.MethodPost, url(lead, api.PathKV+"big?op=append"), []byte("x")), 413, api.CodeTooLarge)
	expect(t, put(c, lead, "k", "v", "If-Match", `"1"`, "If-None-Match", "*"), 400, api.CodeBadRequest)
	expect(t, put(c, lead, "k", "v", "If-None-Match", `"3"`), 400, api.CodeBadRequest)
	expect(t, put(c, lead, "k", "v", api.HeaderIdempotencyKey, strings.Repeat("i", 129)), 400, api.CodeBadRequest)
	expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"k?consistency=eventual"), nil), 400, api.CodeBadRequest)
	expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"?limit=-1"), nil), 400, api.CodeBadRequest)
	expect(t, c.do(http.MethodPatch, url(lead, api.PathKV+"k"), nil), 405, api.CodeBadRequest)
	expect(t, c.do(http.MethodGet, url(lead, "/v1/no-such-endpoint"), nil), 404, api.CodeNotFound)
	expect(t, c.do(http.MethodPost, url(lead, api.PathMembers), []byte("{")), 400, api.CodeBadJSON)
	expect(t, c.do(http.MethodPost, url(lead, api.PathMembers), []byte(`{"id":"x"}`)), 400, api.CodeBadJSON)
	expect(t, c.do(http.MethodPost, url(lead, api.PathMembers), []byte(`{"id":0,"peer_addr":"a:1"}`)), 400, api.CodeBadRequest)
	expect(t, c.do(http.MethodPut, url(lead, api.PathVoters), []byte(`{"voters":[]}`)), 400, api.CodeBadRequest)
	expect(t, c.do(http.MethodPut, url(lead, api.PathVoters), []byte(`{"voters":[1,2,9]}`)), 404, api.CodeNotFound)
	expect(t, c.do(http.MethodDelete, url(lead, api.PathMembers+"/9"), nil), 404, api.CodeNotFound)
	expect(t, c.do(http.MethodPost, url(lead, api.PathMembers+"/9/promote"), nil), 404, api.CodeNotFound)
	expect(t, c.do(http.MethodDelete, url(lead, api.PathMembers+"/x"), nil), 400, api.CodeBadRequest)
	expect(t, c.do(http.MethodPost, url(lead, api.PathTransfer), []byte(`{"id":9}`)), 404, api.CodeNotFound)
}

// TestKeysWithSlashes shows keys keep "//", ".." and escaped bytes as sent.
func TestKeysWithSlashes(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	for _, key := range []string{"a/b", "a//b", "a/../b", "/lead", "sp%20ace"} {
		expect(t, put(c, lead, key, "v:"+key), 200, "")
	}
	if b := expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"a//b"), nil), 200, ""); string(b) != "v:a//b" {
		t.Fatalf("a//b = %q", b)
	}
	if b := expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"sp%20ace"), nil), 200, ""); string(b) != "v:sp%20ace" {
		t.Fatalf("escaped key = %q", b)
	}
	l := decode[api.ListResponse](t, expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"?prefix=a/"), nil), 200, ""))
	var keys []string
	for _, it := range l.Items {
		keys = append(keys, it.Key)
	}
	if strings.Join(keys, ",") != "a/../b,a//b,a/b" {
		t.Fatalf("listing a/: %v", keys)
	}
}

// TestList shows ordered prefix listings with limit and more, and binary
// values carried as base64.
func TestList(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	for _, k := range []string{"p/3", "p/1", "p/2", "q/1"} {
		expect(t, put(c, lead, k, k), 200, "")
	}
	expect(t, put(c, lead, "p/4", "\xff\x00"), 200, "")
	l := decode[api.ListResponse](t, expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"?prefix=p/&limit=2"), nil), 200, ""))
	if len(l.Items) != 2 || !l.More || l.Items[0].Key != "p/1" || l.Items[1].Value != "p/2" || l.Items[0].Rev == 0 {
		t.Fatalf("limit 2: %+v", l)
	}
	l = decode[api.ListResponse](t, expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"?prefix=p/"), nil), 200, ""))
	if len(l.Items) != 4 || l.More {
		t.Fatalf("all of p/: %+v", l)
	}
	k, v, err := l.Items[3].Decode()
	if err != nil || k != "p/4" || string(v) != "\xff\x00" || l.Items[3].Encoding != api.EncodingBase64 {
		t.Fatalf("binary item %+v decodes to %q %q %v", l.Items[3], k, v, err)
	}
	l = decode[api.ListResponse](t, expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"?prefix=zz"), nil), 200, ""))
	if len(l.Items) != 0 || l.Items == nil {
		t.Fatalf("empty listing: %+v", l)
	}
}

// TestIdempotentRetry shows a retried write with the same Idempotency-Key
// answered with the first attempt's index and applied once.
func TestIdempotentRetry(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	first := decode[api.WriteResponse](t, expect(t, c.do(http.MethodPost, url(lead, api.PathKV+"ctr?op=append"), []byte("x"), api.HeaderIdempotencyKey, "tok-1"), 200, ""))
	again := decode[api.WriteResponse](t, expect(t, c.do(http.MethodPost, url(lead, api.PathKV+"ctr?op=append"), []byte("x"), api.HeaderIdempotencyKey, "tok-1"), 200, ""))
	if first.Index != again.Index {
		t.Fatalf("retry answered index %d, first %d", again.Index, first.Index)
	}
	expect(t, c.do(http.MethodPost, url(lead, api.PathKV+"ctr?op=append"), []byte("y"), api.HeaderIdempotencyKey, "tok-2"), 200, "")
	if b := expect(t, c.do(http.MethodGet, url(lead, api.PathKV+"ctr"), nil), 200, ""); string(b) != "xy" {
		t.Fatalf("ctr = %q, want xy (the retry applied once)", b)
	}
}
