package etcdapi

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// What the external tests need of the forwarding stream.

const (
	ForwardMethod  = forwardMethod
	ClusterIDKey   = clusterIDKey
	MemberIDKey    = memberIDKey
	ForwardedKey   = forwardedKey
	ForwardPutKind = byte(fwdPut)
)

var ForwardCodec encoding.CodecV2 = fwdCodec{}

// ForwardStats is what a follower's streams carried: writes and frames
// sent, and writes whose stream broke before their answer.
func ForwardStats(s *Server) (writes, frames, unknown uint64) {
	return s.fwdStats.writes.Load(), s.fwdStats.frames.Load(), s.fwdStats.unknown.Load()
}

// BreakForwardStream cancels the follower's current stream, as a broken
// connection would end it.
func BreakForwardStream(s *Server) bool {
	s.fwdMu.Lock()
	defer s.fwdMu.Unlock()
	if s.fwd == nil {
		return false
	}
	s.fwd.cancel()
	return true
}

// ForwardFrame wraps b as a stream message; FrameBytes reads one received.
func ForwardFrame(b []byte) any { return &fwdFrame{buf: mem.SliceBuffer(b)} }
func NewForwardFrame() any      { return &fwdFrame{} }
func FrameBytes(f any) []byte   { return f.(*fwdFrame).buf.ReadOnlyData() }

// AppendForwardWrite appends a write item to a frame.
func AppendForwardWrite(buf []byte, id uint64, kind byte, key string, req proto.Message) []byte {
	return appendWrite(buf, &fwdCall{id: id, kind: fwdKind(kind), key: key, req: req, size: proto.Size(req)})
}

type ForwardAnswer struct {
	ID      uint64
	Code    codes.Code
	Message string
	Index   uint64
	Body    []byte
}

// ParseForwardAnswers reads an answer frame.
func ParseForwardAnswers(b []byte) ([]ForwardAnswer, error) {
	r := frameReader{b: b}
	if v := r.byte(); v != frameVersion {
		return nil, errShortFrame
	}
	var out []ForwardAnswer
	for len(r.b) > 0 && r.err == nil {
		a := ForwardAnswer{ID: r.uvarint(), Code: codes.Code(r.uvarint())}
		if a.Code == codes.OK {
			a.Index = r.uvarint()
			a.Body = r.bytes()
		} else {
			a.Message = string(r.bytes())
		}
		out = append(out, a)
	}
	return out, r.err
}
