package api

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"
)

func sampleBatch() BatchRequest {
	return BatchRequest{Ops: []BatchOp{
		{Op: BatchPut, Key: "k", Value: []byte("v"), IdempotencyKey: "tok"},
		{Op: BatchAppend, Key: "log", Value: []byte{0, 0xff}, IfMatch: 1 << 40},
		{Op: BatchDelete, Key: "gone", IfNoneMatch: true},
		{Op: BatchGet, Key: "a/b"},
	}}
}

func TestBatchRequestRoundTrip(t *testing.T) {
	req := sampleBatch()
	got, err := DecodeBatchRequest(AppendBatchRequest(nil, &req), 10)
	if err != nil || !reflect.DeepEqual(got, req) {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, req)
	}
	if _, err := DecodeBatchRequest(AppendBatchRequest(nil, &req), 3); !errors.Is(err, ErrTooManyOps) {
		t.Fatalf("4 ops with a maximum of 3: err %v, want ErrTooManyOps", err)
	}
}

func TestBatchResponseRoundTrip(t *testing.T) {
	resp := BatchResponse{Results: []BatchResult{
		{Status: 200, Index: 7, Rev: 7},
		{Status: 412, Code: CodePreconditionFailed, Error: "revision 3, not 2", Rev: 3},
		{Status: 200, Rev: 9, Value: []byte("value")},
	}}
	got, err := DecodeBatchResponse(AppendBatchResponse(nil, &resp))
	if err != nil || !reflect.DeepEqual(got, resp) {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, resp)
	}
}

// TestBatchDecodeRejects: every truncation of a valid encoding, and each
// kind of damage, is an ErrBadBatch, never a panic or a partial success.
func TestBatchDecodeRejects(t *testing.T) {
	req := sampleBatch()
	enc := AppendBatchRequest(nil, &req)
	for n := 0; n < len(enc); n++ {
		if _, err := DecodeBatchRequest(enc[:n], 10); !errors.Is(err, ErrBadBatch) {
			t.Fatalf("request cut to %d of %d bytes: err %v", n, len(enc), err)
		}
	}
	resp := BatchResponse{Results: []BatchResult{{Status: 200, Value: []byte("v")}}}
	renc := AppendBatchResponse(nil, &resp)
	for n := 0; n < len(renc); n++ {
		if _, err := DecodeBatchResponse(renc[:n]); !errors.Is(err, ErrBadBatch) {
			t.Fatalf("response cut to %d of %d bytes: err %v", n, len(renc), err)
		}
	}
	bad := map[string][]byte{
		"trailing data": append(bytes.Clone(enc), 0),
		"unknown op":    AppendBatchRequest(nil, &BatchRequest{Ops: []BatchOp{{Op: "frob", Key: "k"}}}),
		"bad flag":      []byte("RKB1\x01\x01\x01k\x00\x00\x02\x00"),
		"huge count":    []byte("RKB1\xff\xff\xff\xff\x0f"),
		"wrong magic":   []byte("RKR1\x00"),
	}
	for name, b := range bad {
		if _, err := DecodeBatchRequest(b, math.MaxInt); !errors.Is(err, ErrBadBatch) {
			t.Errorf("%s: err %v, want ErrBadBatch", name, err)
		}
	}
	if _, err := DecodeBatchResponse([]byte("RKR1\x01\x09\x00\x00\x00\x00\x00")); !errors.Is(err, ErrBadBatch) {
		t.Errorf("status 9: err %v, want ErrBadBatch", err)
	}
}

// FuzzDecodeBatchRequest: no input panics or allocates beyond its size,
// and whatever decodes encodes back to the same bytes.
func FuzzDecodeBatchRequest(f *testing.F) {
	req := sampleBatch()
	f.Add(AppendBatchRequest(nil, &req))
	f.Add([]byte("RKB1\x00"))
	f.Add([]byte("RKB1\x01\x04\x01k\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeBatchRequest(b, fuzzMaxOps)
		if err != nil {
			if !errors.Is(err, ErrBadBatch) && !errors.Is(err, ErrTooManyOps) {
				t.Fatalf("error %v wraps neither sentinel", err)
			}
			return
		}
		if again := AppendBatchRequest(nil, &got); !bytes.Equal(again, b) {
			// Uvarints have one canonical form per value only when
			// minimal; a non-minimal one decodes but re-encodes shorter.
			if d, err := DecodeBatchRequest(again, fuzzMaxOps); err != nil || !reflect.DeepEqual(d, got) {
				t.Fatalf("re-encoding %x of %x decodes to %+v, %v", again, b, d, err)
			}
		}
	})
}

// fuzzMaxOps bounds the ops the fuzz target accepts.
const fuzzMaxOps = 1024
