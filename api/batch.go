package api

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ContentTypeBatch is the binary form of a batch, for a request body and,
// when the request used it, the answer. JSON (application/json) is the
// default; the binary form spares both sides a JSON encoder and decoder,
// which otherwise cost more CPU than the writes themselves.
//
// A binary request is the magic "RKB1", then the count of ops, then per
// op: op byte (1 put, 2 append, 3 delete, 4 get), key, value, if_match,
// if_none_match byte (0 or 1), idempotency key. A binary answer is "RKR1",
// the count, then per result: status, code, error, index, rev, value.
// Integers are uvarints; strings and byte strings are a uvarint length
// followed by the bytes.
const ContentTypeBatch = "application/x-raftkv-batch"

const (
	batchRequestMagic  = "RKB1"
	batchResponseMagic = "RKR1"
)

var batchOpCodes = []string{1: BatchPut, 2: BatchAppend, 3: BatchDelete, 4: BatchGet}

// ErrBadBatch is wrapped by the decoders' errors, and ErrTooManyOps by
// DecodeBatchRequest's when the count is over its maximum.
var (
	ErrBadBatch   = errors.New("api: malformed binary batch")
	ErrTooManyOps = errors.New("api: too many ops in a batch")
)

// AppendBatchRequest appends req in the binary form to b. An op whose Op
// is not one of the four is encoded as 0, which the decoder refuses.
func AppendBatchRequest(b []byte, req *BatchRequest) []byte {
	b = append(b, batchRequestMagic...)
	b = binary.AppendUvarint(b, uint64(len(req.Ops)))
	for i := range req.Ops {
		op := &req.Ops[i]
		code := byte(0)
		for c, name := range batchOpCodes {
			if name != "" && name == op.Op {
				code = byte(c)
			}
		}
		b = append(b, code)
		b = appendBytes(b, op.Key)
		b = appendBytes(b, op.Value)
		b = binary.AppendUvarint(b, op.IfMatch)
		b = append(b, boolByte(op.IfNoneMatch))
		b = appendBytes(b, op.IdempotencyKey)
	}
	return b
}

// DecodeBatchRequest decodes the binary form. Values alias data. At most
// maxOps ops are accepted.
func DecodeBatchRequest(data []byte, maxOps int) (BatchRequest, error) {
	d := batchDecoder{b: data}
	d.magic(batchRequestMagic)
	n := d.count(maxOps, 4) // an op takes at least 4 bytes
	req := BatchRequest{Ops: make([]BatchOp, 0, n)}
	for i := 0; i < n && d.err == nil; i++ {
		var op BatchOp
		code := d.byte1()
		if int(code) >= len(batchOpCodes) || batchOpCodes[code] == "" {
			d.fail(fmt.Sprintf("op %d has unknown code %d", i, code))
			break
		}
		op.Op = batchOpCodes[code]
		op.Key = string(d.bytes())
		op.Value = d.bytes()
		op.IfMatch = d.uvarint()
		op.IfNoneMatch = d.bool()
		op.IdempotencyKey = string(d.bytes())
		req.Ops = append(req.Ops, op)
	}
	return req, d.finish()
}

// AppendBatchResponse appends resp in the binary form to b.
func AppendBatchResponse(b []byte, resp *BatchResponse) []byte {
	b = append(b, batchResponseMagic...)
	b = binary.AppendUvarint(b, uint64(len(resp.Results)))
	for i := range resp.Results {
		r := &resp.Results[i]
		b = binary.AppendUvarint(b, uint64(r.Status))
		b = appendBytes(b, r.Code)
		b = appendBytes(b, r.Error)
		b = binary.AppendUvarint(b, r.Index)
		b = binary.AppendUvarint(b, r.Rev)
		b = appendBytes(b, r.Value)
	}
	return b
}

// DecodeBatchResponse decodes the binary form. Values alias data.
func DecodeBatchResponse(data []byte) (BatchResponse, error) {
	d := batchDecoder{b: data}
	d.magic(batchResponseMagic)
	n := d.count(1<<20, 6) // a result takes at least 6 bytes
	resp := BatchResponse{Results: make([]BatchResult, 0, n)}
	for i := 0; i < n && d.err == nil; i++ {
		var r BatchResult
		r.Status = int(d.uvarint())
		r.Code = string(d.bytes())
		r.Error = string(d.bytes())
		r.Index = d.uvarint()
		r.Rev = d.uvarint()
		r.Value = d.bytes()
		if d.err == nil && (r.Status < 100 || r.Status > 599) {
			d.fail(fmt.Sprintf("result %d has status %d", i, r.Status))
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, d.finish()
}

func appendBytes[T string | []byte](b []byte, s T) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// batchDecoder reads the binary form; the first failure sticks.
type batchDecoder struct {
	b   []byte
	off int
	err error
}

func (d *batchDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s (at byte %d)", ErrBadBatch, what, d.off)
	}
}

func (d *batchDecoder) magic(m string) {
	if len(d.b) < len(m) || string(d.b[:len(m)]) != m {
		d.fail("missing magic " + m)
		return
	}
	d.off = len(m)
}

// count reads a count of items of at least minBytes each, refusing one
// the remaining bytes cannot hold (so a corrupt count allocates nothing).
func (d *batchDecoder) count(max, minBytes int) int {
	n := d.uvarint()
	switch {
	case d.err != nil:
		return 0
	case n > uint64(max):
		d.err = fmt.Errorf("%w: %d, over %d", ErrTooManyOps, n, max)
		return 0
	case n > uint64((len(d.b)-d.off)/minBytes):
		d.fail(fmt.Sprintf("%d items cannot fit in %d bytes", n, len(d.b)-d.off))
		return 0
	}
	return int(n)
}

func (d *batchDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, k := binary.Uvarint(d.b[d.off:])
	if k <= 0 {
		d.fail("bad integer")
		return 0
	}
	d.off += k
	return v
}

func (d *batchDecoder) byte1() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail("truncated")
		return 0
	}
	d.off++
	return d.b[d.off-1]
}

func (d *batchDecoder) bool() bool {
	switch v := d.byte1(); v {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail(fmt.Sprintf("flag byte %d", v))
		return false
	}
}

// bytes returns the next byte string, aliasing the input; nil when empty.
func (d *batchDecoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail(fmt.Sprintf("a %d-byte string runs past the end", n))
		return nil
	}
	if n == 0 {
		return nil
	}
	s := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return s
}

func (d *batchDecoder) finish() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail(fmt.Sprintf("%d bytes of trailing data", len(d.b)-d.off))
	}
	return d.err
}
