package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	pb "github.com/raftkv/raftkv/raftpb"
)

// A record is
//
//	crc     uint32 LE   CRC32C of (length, type, payload), started from
//	                    a value derived from the record's position
//	length  uint32 LE   payload bytes
//	type    uint8       recordType
//	payload [length]byte
//
// The checksum comes first so that it covers one contiguous range.
// The position is the record's place, segment seq << 32 | offset in
// segment. Folding it into the checksum makes a record valid only where it was
// written: bytes copied from elsewhere (a misdirected write, an entry whose
// data happens to hold a record) never pass for a record here.
const recordHeaderBytes = 9

// recordMaxBytes bounds a payload, so that a corrupt length can never make
// the reader allocate more than this.
const recordMaxBytes = 64 << 20

type recordType uint8

const (
	recSegmentHeader recordType = iota + 1 // first record of every segment
	recEntry                               // one raftpb.Entry
	recHardState                           // raftpb.HardState
	recSnapshot                            // installed snapshot: the log restarts after it
	recCompact                             // snapshot marker: entries up to it are gone
	recSeal                                // this segment is complete; the next one exists
	recTypeEnd
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func recordPos(seq uint32, off int64) uint64 { return uint64(seq)<<32 | uint64(uint32(off)) }

// beginRecord reserves room for a header; finishRecord fills it in once the
// payload has been appended after it. Encoding in place avoids a copy.
func beginRecord(b []byte) ([]byte, int) {
	start := len(b)
	return append(b, 0, 0, 0, 0, 0, 0, 0, 0, 0), start
}

func finishRecord(b []byte, start int, typ recordType, pos uint64) []byte {
	binary.LittleEndian.PutUint32(b[start+4:], uint32(len(b)-start-recordHeaderBytes))
	b[start+8] = byte(typ)
	binary.LittleEndian.PutUint32(b[start:], recordCRC(pos, b[start+4:]))
	return b
}

// recordCRC starts the CRC from a value derived from pos instead of
// hashing pos's bytes: the same effect (a CRC register is updated by an
// invertible map, so different starts give different sums for the same
// bytes) without a buffer that would escape to the heap per record.
func recordCRC(pos uint64, covered []byte) uint32 {
	seed := uint32(pos) ^ uint32(pos>>32)*0x9e3779b1
	return crc32.Update(seed, crcTable, covered)
}

// appendRecord appends a record whose payload is already encoded.
func appendRecord(b []byte, typ recordType, pos uint64, payload []byte) []byte {
	b, start := beginRecord(b)
	b = append(b, payload...)
	return finishRecord(b, start, typ, pos)
}

// errShortRecord means the bytes end inside a record: what a torn write
// leaves. Every other decoding failure is a recordError.
var errShortRecord = errors.New("record runs past the end of the data")

type recordError struct{ reason string }

func (e *recordError) Error() string { return e.reason }

// decodeRecord decodes the record at the start of b, written at pos. n is
// the record's full length. payload aliases b.
func decodeRecord(b []byte, pos uint64) (typ recordType, payload []byte, n int, err error) {
	if len(b) < recordHeaderBytes {
		return 0, nil, 0, errShortRecord
	}
	length := binary.LittleEndian.Uint32(b[4:8])
	typ = recordType(b[8])
	switch {
	case length == 0 && typ == 0:
		return 0, nil, 0, &recordError{"zeroed record header"}
	case typ == 0 || typ >= recTypeEnd:
		return 0, nil, 0, &recordError{fmt.Sprintf("unknown record type %d", typ)}
	case length > recordMaxBytes:
		return 0, nil, 0, &recordError{fmt.Sprintf("record length %d over the limit %d", length, recordMaxBytes)}
	case uint64(len(b)) < recordHeaderBytes+uint64(length):
		return 0, nil, 0, errShortRecord
	}
	n = recordHeaderBytes + int(length)
	payload = b[recordHeaderBytes:n]
	want := binary.LittleEndian.Uint32(b[0:4])
	if got := recordCRC(pos, b[4:n]); got != want {
		return 0, nil, 0, &recordError{fmt.Sprintf("checksum mismatch (stored %08x, computed %08x)", want, got)}
	}
	return typ, payload, n, nil
}

// uvarintLen is the encoded length of v as a uvarint.
func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// entryRecordBytes is the exact size of the record that holds e, computed
// without encoding it.
func entryRecordBytes(term pb.Term, index pb.Index, dataLen int) int {
	return recordHeaderBytes + uvarintLen(uint64(term)) + uvarintLen(uint64(index)) + 1 +
		uvarintLen(uint64(dataLen)) + dataLen
}

// The segment header payload:
//
//	magic "rkvwal" | version u8 | seq u32 LE | first u64 LE |
//	hard state (raftpb.AppendHardState) length-prefixed |
//	snapshot meta (raftpb.AppendSnapshotMeta)
//
// It carries the hard state and snapshot marker in force when the segment
// was started, so deleting older segments never loses them.
const (
	segmentMagic   = "rkvwal"
	segmentVersion = 1
)

type segmentHeader struct {
	seq   uint32
	first pb.Index // index of the first entry the segment may hold
	hard  pb.HardState
	snap  pb.SnapshotMeta
}

func appendSegmentHeader(b []byte, h segmentHeader) []byte {
	b = append(b, segmentMagic...)
	b = append(b, segmentVersion)
	b = binary.LittleEndian.AppendUint32(b, h.seq)
	b = binary.LittleEndian.AppendUint64(b, uint64(h.first))
	hs := pb.AppendHardState(nil, h.hard)
	b = binary.AppendUvarint(b, uint64(len(hs)))
	b = append(b, hs...)
	return pb.AppendSnapshotMeta(b, h.snap)
}

func decodeSegmentHeader(p []byte) (segmentHeader, error) {
	var h segmentHeader
	fixed := len(segmentMagic) + 1 + 4 + 8
	if len(p) < fixed || string(p[:len(segmentMagic)]) != segmentMagic {
		return h, errors.New("bad segment magic")
	}
	if v := p[len(segmentMagic)]; v != segmentVersion {
		return h, fmt.Errorf("unknown segment version %d", v)
	}
	h.seq = binary.LittleEndian.Uint32(p[len(segmentMagic)+1:])
	h.first = pb.Index(binary.LittleEndian.Uint64(p[len(segmentMagic)+5:]))
	rest := p[fixed:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > uint64(len(rest)-k) {
		return h, errors.New("bad hard state length in segment header")
	}
	var err error
	if h.hard, err = pb.DecodeHardState(rest[k : k+int(n)]); err != nil {
		return h, err
	}
	h.snap, err = pb.DecodeSnapshotMeta(rest[k+int(n):])
	return h, err
}

// appendSeal encodes the payload of a seal record: the seq of the segment
// that follows.
func appendSeal(b []byte, next uint32) []byte { return binary.LittleEndian.AppendUint32(b, next) }

func decodeSeal(p []byte) (uint32, error) {
	if len(p) != 4 {
		return 0, fmt.Errorf("seal record of %d bytes", len(p))
	}
	return binary.LittleEndian.Uint32(p), nil
}
