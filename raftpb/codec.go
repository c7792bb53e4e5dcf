package raftpb

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The binary codec is hand-written: it is small, allocation-aware and has no
// reflection. Every top-level encoding starts with a version byte so that a
// later format can be told apart; decoders check every length against the
// bytes actually present, so garbage yields an error, never a panic or a huge
// allocation.

// CodecVersion is the version byte written before each top-level encoding.
const CodecVersion = 1

// ErrCorrupt is wrapped by every decoding error.
var ErrCorrupt = errors.New("raftpb: corrupt encoding")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, what)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte1(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail(what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// bytes returns a slice that aliases the input when alias is true.
func (d *decoder) bytes(what string, alias bool) []byte {
	n := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(what + " length")
		return nil
	}
	if n == 0 {
		return nil
	}
	out := d.b[:n:n]
	if !alias {
		out = append([]byte(nil), out...)
	}
	d.b = d.b[n:]
	return out
}

func (d *decoder) ids(what string) []NodeID {
	n := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) { // each id takes at least one byte
		d.fail(what + " count")
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]NodeID, n)
	for i := range out {
		out[i] = NodeID(d.uvarint(what))
	}
	return out
}

func putUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

func putBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func putIDs(b []byte, ids []NodeID) []byte {
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = binary.AppendUvarint(b, uint64(id))
	}
	return b
}

// AppendEntry appends the encoding of e (without a version byte) to b.
func AppendEntry(b []byte, e *Entry) []byte {
	b = putUvarint(b, uint64(e.Term))
	b = putUvarint(b, uint64(e.Index))
	b = append(b, byte(e.Type))
	return putBytes(b, e.Data)
}

func (d *decoder) entry(alias bool) Entry {
	var e Entry
	e.Term = Term(d.uvarint("entry term"))
	e.Index = Index(d.uvarint("entry index"))
	t := d.byte1("entry type")
	if d.err == nil && t > byte(EntryConfChange) {
		d.fail(fmt.Sprintf("entry type %d", t))
	}
	e.Type = EntryType(t)
	e.Data = d.bytes("entry data", alias)
	return e
}

// DecodeEntry decodes one entry encoded by AppendEntry; the whole of b must
// be consumed. Data aliases b.
func DecodeEntry(b []byte) (Entry, error) {
	d := decoder{b: b}
	e := d.entry(true)
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes after entry")
	}
	return e, d.err
}

// AppendHardState appends the encoding of h to b.
func AppendHardState(b []byte, h HardState) []byte {
	b = append(b, CodecVersion)
	b = putUvarint(b, uint64(h.Term))
	b = putUvarint(b, uint64(h.Vote))
	return putUvarint(b, uint64(h.Commit))
}

// DecodeHardState decodes what AppendHardState wrote.
func DecodeHardState(b []byte) (HardState, error) {
	d := decoder{b: b}
	d.version()
	var h HardState
	h.Term = Term(d.uvarint("term"))
	h.Vote = NodeID(d.uvarint("vote"))
	h.Commit = Index(d.uvarint("commit"))
	d.end()
	return h, d.err
}

func (d *decoder) version() {
	v := d.byte1("version")
	if d.err == nil && v != CodecVersion {
		d.fail(fmt.Sprintf("unknown version %d", v))
	}
}

func (d *decoder) end() {
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.b)))
	}
}

func appendConf(b []byte, c ConfState) []byte {
	b = putIDs(b, c.Voters)
	b = putIDs(b, c.VotersOutgoing)
	b = putIDs(b, c.Learners)
	return putBytes(b, c.Context)
}

func (d *decoder) conf() ConfState {
	var c ConfState
	c.Voters = d.ids("voters")
	c.VotersOutgoing = d.ids("outgoing voters")
	c.Learners = d.ids("learners")
	c.Context = d.bytes("conf context", false)
	return c
}

// AppendConfState appends the encoding of c to b. It is the Data of an
// EntryConfChange entry.
func AppendConfState(b []byte, c ConfState) []byte {
	b = append(b, CodecVersion)
	return appendConf(b, c)
}

// DecodeConfState decodes what AppendConfState wrote.
func DecodeConfState(b []byte) (ConfState, error) {
	d := decoder{b: b}
	d.version()
	c := d.conf()
	d.end()
	return c, d.err
}

// AppendSnapshotMeta appends the encoding of s to b.
func AppendSnapshotMeta(b []byte, s SnapshotMeta) []byte {
	b = append(b, CodecVersion)
	return appendSnap(b, s)
}

func appendSnap(b []byte, s SnapshotMeta) []byte {
	b = putUvarint(b, uint64(s.Index))
	b = putUvarint(b, uint64(s.Term))
	return appendConf(b, s.Conf)
}

func (d *decoder) snap() SnapshotMeta {
	var s SnapshotMeta
	s.Index = Index(d.uvarint("snapshot index"))
	s.Term = Term(d.uvarint("snapshot term"))
	s.Conf = d.conf()
	return s
}

// DecodeSnapshotMeta decodes what AppendSnapshotMeta wrote.
func DecodeSnapshotMeta(b []byte) (SnapshotMeta, error) {
	d := decoder{b: b}
	d.version()
	s := d.snap()
	d.end()
	return s, d.err
}

// AppendMessage appends the encoding of m to b.
func AppendMessage(b []byte, m *Message) []byte {
	b = append(b, CodecVersion, byte(m.Type))
	b = putUvarint(b, uint64(m.From))
	b = putUvarint(b, uint64(m.To))
	b = putUvarint(b, uint64(m.Term))
	b = putUvarint(b, uint64(m.LogTerm))
	b = putUvarint(b, uint64(m.Index))
	b = putUvarint(b, uint64(m.Commit))
	var flags byte
	if m.Reject {
		flags |= 1
	}
	if m.Snapshot != nil {
		flags |= 2
	}
	b = append(b, flags)
	b = putUvarint(b, uint64(m.Hint))
	b = putUvarint(b, uint64(m.HintTerm))
	b = putUvarint(b, uint64(len(m.Entries)))
	for i := range m.Entries {
		b = AppendEntry(b, &m.Entries[i])
	}
	if m.Snapshot != nil {
		b = appendSnap(b, *m.Snapshot)
	}
	return putBytes(b, m.Context)
}

// MessageSize is a cheap upper estimate of the encoded size of m.
func MessageSize(m *Message) int {
	n := 2 + 7*binary.MaxVarintLen64 + 1 + binary.MaxVarintLen64 + len(m.Context)
	for i := range m.Entries {
		n += 3*binary.MaxVarintLen64 + 1 + len(m.Entries[i].Data)
	}
	if m.Snapshot != nil {
		n += 6*binary.MaxVarintLen64 + len(m.Snapshot.Conf.Context) + binary.MaxVarintLen64*(len(m.Snapshot.Conf.Voters)+
			len(m.Snapshot.Conf.VotersOutgoing)+len(m.Snapshot.Conf.Learners))
	}
	return n
}

// DecodeMessage decodes what AppendMessage wrote. Entry data and Context
// alias b, so b must not be reused while the message lives.
func DecodeMessage(b []byte) (Message, error) {
	d := decoder{b: b}
	d.version()
	var m Message
	t := MessageType(d.byte1("message type"))
	if d.err == nil && (!t.Valid() || t.IsLocal()) {
		d.fail(fmt.Sprintf("message type %d", uint8(t)))
	}
	m.Type = t
	m.From = NodeID(d.uvarint("from"))
	m.To = NodeID(d.uvarint("to"))
	m.Term = Term(d.uvarint("term"))
	m.LogTerm = Term(d.uvarint("log term"))
	m.Index = Index(d.uvarint("index"))
	m.Commit = Index(d.uvarint("commit"))
	flags := d.byte1("flags")
	if d.err == nil && flags&^3 != 0 {
		d.fail(fmt.Sprintf("flags %#x", flags))
	}
	m.Reject = flags&1 != 0
	m.Hint = Index(d.uvarint("hint"))
	m.HintTerm = Term(d.uvarint("hint term"))
	n := d.uvarint("entry count")
	if d.err == nil && n > uint64(len(d.b))/4 { // an entry takes at least 4 bytes
		d.fail("entry count")
	}
	if d.err == nil && n > 0 {
		m.Entries = make([]Entry, n)
		for i := range m.Entries {
			m.Entries[i] = d.entry(true)
		}
	}
	if flags&2 != 0 {
		s := d.snap()
		m.Snapshot = &s
	}
	m.Context = d.bytes("context", true)
	d.end()
	if d.err != nil {
		return Message{}, d.err
	}
	return m, nil
}
