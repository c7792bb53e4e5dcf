package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/raftkv/raftkv/raftpb"
)

// Wire format. All integers are big-endian.
//
//	handshake (sender → receiver, 35 to 290 bytes):
//	  magic "RKVT" | version u8 | kind u8 | cluster u64 | from u64 | to u64 |
//	  addr length u8 | sender's advertised peer address | crc32c u32
//	ack (receiver → sender, 6 bytes):
//	  magic "RKVT" | version u8 | status u8
//	frame (after an OK ack):
//	  length u32 | crc32c(payload) u32 | payload
//
// A messages stream carries one raftpb-encoded Message per frame. A snapshot
// stream carries one message frame (the MsgInstallSnapshot), then chunk
// frames (tag u8 | data), then an end frame (tag u8 | total bytes u64); the
// receiver answers with one result frame (status u8).

const (
	handshakeMagic = "RKVT"
	// protocolVersion changes whenever the wire format does; a receiver
	// refuses versions it does not speak, and says so in the ack.
	protocolVersion = 1
	// handshakeLen is the fixed part of a handshake, through the address
	// length; the address and the checksum follow.
	handshakeLen = 4 + 1 + 1 + 8 + 8 + 8 + 1
	// maxAdvertiseAddr bounds the advertised address in a handshake.
	maxAdvertiseAddr = 255
	ackLen           = 4 + 1 + 1
	frameHeaderLen   = 8
	// maxFrameLimit is the largest MaxFrameBytes accepted by New: far below
	// what a u32 length can say, so a length is never trusted to size memory
	// on its own.
	maxFrameLimit = 1 << 30
	// readStepBytes is how much a frame buffer grows at a time while its
	// payload arrives: memory follows the bytes received, not the length a
	// peer claims.
	readStepBytes = 64 << 10
)

// streamKind says what a connection carries.
type streamKind uint8

const (
	streamMessages streamKind = 1
	streamSnapshot streamKind = 2
)

func (k streamKind) String() string {
	switch k {
	case streamMessages:
		return "messages"
	case streamSnapshot:
		return "snapshot"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ackStatus is the receiver's verdict on a handshake.
type ackStatus uint8

const (
	ackOK ackStatus = iota
	ackBadVersion
	ackBadKind
	ackClusterMismatch
	ackWrongReceiver
	ackUnknownSender
)

var ackNames = [...]string{
	ackOK:              "ok",
	ackBadVersion:      "unsupported protocol version",
	ackBadKind:         "unknown stream kind",
	ackClusterMismatch: "cluster id mismatch",
	ackWrongReceiver:   "wrong receiver id",
	ackUnknownSender:   "unknown sender id",
}

func (s ackStatus) String() string {
	if int(s) < len(ackNames) {
		return ackNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Snapshot stream tags and results.
const (
	chunkData byte = 1
	chunkEnd  byte = 2

	snapshotAccepted byte = 0
	snapshotRejected byte = 1
)

var (
	// ErrStopped is returned by methods called after Stop.
	ErrStopped = errors.New("transport: stopped")
	// ErrUnknownPeer is returned for a peer id that was never added.
	ErrUnknownPeer = errors.New("transport: unknown peer")
	// ErrRefused is wrapped when a peer refuses our handshake.
	ErrRefused = errors.New("transport: refused by peer")
	// ErrFrameTooLarge is wrapped when a frame's length exceeds MaxFrameBytes.
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrCorruptFrame is wrapped for bad magic, checksum or framing.
	ErrCorruptFrame = errors.New("transport: corrupt frame")
	// errTruncated is a frame cut short by the end of the stream.
	errTruncated = fmt.Errorf("%w: truncated", ErrCorruptFrame)
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// handshake opens every connection.
type handshake struct {
	Version   uint8
	Kind      streamKind
	ClusterID uint64
	From      raftpb.NodeID
	To        raftpb.NodeID
	// Addr is the sender's advertised peer address, so that a member that
	// is joining (and knows nobody yet) can answer.
	Addr string
}

func appendHandshake(b []byte, h handshake) []byte {
	start := len(b)
	b = append(b, handshakeMagic...)
	b = append(b, h.Version, byte(h.Kind))
	b = binary.BigEndian.AppendUint64(b, h.ClusterID)
	b = binary.BigEndian.AppendUint64(b, uint64(h.From))
	b = binary.BigEndian.AppendUint64(b, uint64(h.To))
	addr := h.Addr
	if len(addr) > maxAdvertiseAddr {
		addr = "" // New refuses such addresses; never truncate into a wrong one
	}
	b = append(b, byte(len(addr)))
	b = append(b, addr...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], crcTable))
}

// readHandshake reads and checks the framing of a handshake. Whether its
// fields are acceptable is the caller's business (see Transport.verify).
func readHandshake(r io.Reader) (handshake, error) {
	var b [handshakeLen + maxAdvertiseAddr + 4]byte
	if _, err := io.ReadFull(r, b[:handshakeLen]); err != nil {
		return handshake{}, fmt.Errorf("transport: read handshake: %w", err)
	}
	if string(b[:4]) != handshakeMagic {
		return handshake{}, fmt.Errorf("%w: bad handshake magic %q", ErrCorruptFrame, b[:4])
	}
	n := handshakeLen + int(b[handshakeLen-1])
	if _, err := io.ReadFull(r, b[handshakeLen:n+4]); err != nil {
		return handshake{}, fmt.Errorf("transport: read handshake: %w", err)
	}
	sum := binary.BigEndian.Uint32(b[n:])
	if crc32.Checksum(b[:n], crcTable) != sum {
		return handshake{}, fmt.Errorf("%w: handshake checksum", ErrCorruptFrame)
	}
	return handshake{
		Version:   b[4],
		Kind:      streamKind(b[5]),
		ClusterID: binary.BigEndian.Uint64(b[6:]),
		From:      raftpb.NodeID(binary.BigEndian.Uint64(b[14:])),
		To:        raftpb.NodeID(binary.BigEndian.Uint64(b[22:])),
		Addr:      string(b[handshakeLen:n]),
	}, nil
}

func appendAck(b []byte, s ackStatus) []byte {
	b = append(b, handshakeMagic...)
	return append(b, protocolVersion, byte(s))
}

func readAck(r io.Reader) (ackStatus, error) {
	var b [ackLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, fmt.Errorf("transport: read handshake ack: %w", err)
	}
	if string(b[:4]) != handshakeMagic {
		return 0, fmt.Errorf("%w: bad ack magic %q", ErrCorruptFrame, b[:4])
	}
	return ackStatus(b[5]), nil
}

// beginFrame reserves a frame header at the end of b; finishFrame fills it
// once the payload has been appended after it.
func beginFrame(b []byte) []byte { return append(b, make([]byte, frameHeaderLen)...) }

func finishFrame(b []byte, start int) {
	payload := b[start+frameHeaderLen:]
	binary.BigEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(payload, crcTable))
}

// writeFrame writes one frame around payload without copying it.
func writeFrame(w io.Writer, payload []byte) error {
	var h [frameHeaderLen]byte
	binary.BigEndian.PutUint32(h[:], uint32(len(payload)))
	binary.BigEndian.PutUint32(h[4:], crc32.Checksum(payload, crcTable))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// appendMessageFrame appends m as one frame to b.
func appendMessageFrame(b []byte, m *raftpb.Message) []byte {
	start := len(b)
	b = beginFrame(b)
	b = raftpb.AppendMessage(b, m)
	finishFrame(b, start)
	return b
}

// frameReader reads frames, refusing any longer than max before a byte of
// payload is allocated.
type frameReader struct {
	r   io.Reader
	max int
	hdr [frameHeaderLen]byte
}

// next returns the next payload in a fresh buffer, which the caller owns
// (decoded messages alias it).
func (fr *frameReader) next() ([]byte, error) { return fr.nextInto(nil) }

// nextInto returns the next payload, reusing buf's storage when it is large
// enough. io.EOF means the stream ended cleanly at a frame boundary.
func (fr *frameReader) nextInto(buf []byte) ([]byte, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w frame header", errTruncated)
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(fr.hdr[:])
	if uint64(n) > uint64(fr.max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, fr.max)
	}
	payload, err := readPayload(fr.r, buf, int(n))
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w frame: %d of %d bytes", errTruncated, len(payload), n)
		}
		return nil, err
	}
	if crc32.Checksum(payload, crcTable) != binary.BigEndian.Uint32(fr.hdr[4:]) {
		return nil, fmt.Errorf("%w: checksum mismatch on %d-byte frame", ErrCorruptFrame, n)
	}
	return payload, nil
}

// readPayload reads n bytes into buf (reused if it has the capacity),
// growing a fresh buffer by at most readStepBytes or doubling at a time, so
// that a peer claiming a large frame and sending little costs little.
func readPayload(r io.Reader, buf []byte, n int) ([]byte, error) {
	if cap(buf) >= n {
		buf = buf[:n]
		k, err := io.ReadFull(r, buf)
		return buf[:k], err
	}
	buf = make([]byte, 0, min(n, readStepBytes))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(n, 2*cap(buf)))
			copy(grown, buf)
			buf = grown
		}
		k, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// decodeMessageFrame decodes one message payload.
func decodeMessageFrame(payload []byte) (raftpb.Message, error) {
	m, err := raftpb.DecodeMessage(payload)
	if err != nil {
		return m, fmt.Errorf("transport: decode message: %w", err)
	}
	return m, nil
}
