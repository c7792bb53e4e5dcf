package transport

import (
	"bytes"
	"encoding/binary"
	"io"
	"reflect"
	"testing"

	"github.com/raftkv/raftkv/raftpb"
)

// fuzzMaxFrame keeps the fuzzer's frames small so that it explores
// structure rather than allocation.
const fuzzMaxFrame = 1 << 16

// FuzzFrameReader feeds arbitrary bytes to the handshake decoder, the frame
// reader and message decoder (as a messages stream would), and the snapshot
// chunk reader: none may panic or allocate beyond what the input justifies,
// and whatever decodes must survive a re-encoding unchanged.
func FuzzFrameReader(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		if hs, err := readHandshake(r); err == nil {
			if again := appendHandshake(nil, hs); !bytes.Equal(again, data[:len(again)]) {
				t.Fatalf("handshake %+v re-encodes to %x, read from %x", hs, again, data[:len(again)])
			}
		}
		fr := frameReader{r: r, max: fuzzMaxFrame}
		for {
			payload, err := fr.next()
			if err != nil {
				break
			}
			if cap(payload) > max(readStepBytes, 2*len(data)) {
				t.Fatalf("%d-byte buffer from %d bytes of input", cap(payload), len(data))
			}
			checkMessageRoundTrip(t, payload)
		}
		sr := &snapshotReader{fr: &frameReader{r: bytes.NewReader(data), max: fuzzMaxFrame}}
		n, err := io.Copy(io.Discard, sr)
		if err == nil && uint64(n) != sr.total {
			t.Fatalf("snapshot stream ended cleanly after %d bytes, counted %d", n, sr.total)
		}
	})
}

func checkMessageRoundTrip(t *testing.T, payload []byte) {
	m, err := decodeMessageFrame(payload)
	if err != nil {
		return
	}
	again, err := raftpb.DecodeMessage(raftpb.AppendMessage(nil, &m))
	if err != nil || !reflect.DeepEqual(m, again) {
		t.Fatalf("message %v does not survive re-encoding: %v, %v", m, again, err)
	}
}

func fuzzSeeds() [][]byte {
	hs := appendHandshake(nil, handshake{Version: protocolVersion, Kind: streamMessages, ClusterID: 1, From: 2, To: 3})
	msgs := append([]byte(nil), hs...)
	msgs = appendMessageFrame(msgs, &raftpb.Message{Type: raftpb.MsgAppendEntries, From: 2, To: 3, Term: 5,
		Entries: []raftpb.Entry{{Term: 5, Index: 9, Data: []byte("hello")}}, Context: []byte{1}})
	msgs = appendMessageFrame(msgs, &raftpb.Message{Type: raftpb.MsgInstallSnapshot, From: 2, To: 3,
		Snapshot: &raftpb.SnapshotMeta{Index: 4, Term: 1, Conf: raftpb.ConfState{Voters: []raftpb.NodeID{1, 2}}}})
	msgs = appendMessageFrame(msgs, &raftpb.Message{Type: raftpb.MsgRemoved, From: 2, To: 3, Term: 5, Index: 7, LogTerm: 4})
	var snap []byte
	snap = append(snap, goodFrame(append([]byte{chunkData}, "abcdef"...))...)
	snap = append(snap, goodFrame(binary.BigEndian.AppendUint64([]byte{chunkEnd}, 6))...)
	return [][]byte{
		nil,
		hs,
		msgs,
		msgs[:len(msgs)-3],
		snap,
		append(append([]byte(nil), hs...), rawFrame(0xFFFFFFFF, 0, nil)...),
		rawFrame(fuzzMaxFrame, 0, []byte("short")),
	}
}
