package kv

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"

	"github.com/google/btree"

	"github.com/raftkv/raftkv/raftpb"
)

// Restore replaces the whole state with the snapshot read from r. The new
// state is built aside and swapped in only once the stream has been read to
// its end and its checksum verified; on any error the previous state is
// untouched. Errors about the stream's content wrap ErrCorrupt; read errors
// from r are wrapped as they are. The stream is held to this store's Config
// (key and value sizes, MaxSessions), which every replica shares.
//
// A format 1 stream (from before the store had revisions) is refused with
// an error wrapping ErrOldSnapshotFormat as soon as its header is read:
// converting it assigns revisions from the snapshot's index, so a member
// converting on its own would diverge from the others. ConvertSnapshot
// converts one backup for every member alike.
func (s *Store) Restore(r io.Reader) error {
	v, err := readSnapshot(r, s.cfg, false)
	if err != nil {
		return fmt.Errorf("kv: restore: %w", err)
	}
	derived := derive(v)
	if err := derived.err; err != nil {
		return fmt.Errorf("kv: restore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied, s.rev, s.compacted = v.applied, v.rev, v.compacted
	s.records, s.leases, s.sessions = v.records, v.leases, v.sessions
	s.byKey, s.leaseKeys, s.changes, s.keys = derived.byKey, derived.leaseKeys, derived.changes, derived.keys
	s.keyBytes = countKeyBytes(v)
	// The watchers were following the replaced state; they resume from
	// the restored history like any other watch.
	s.hub.cancelAll(fmt.Sprintf("the member's state was replaced by a snapshot at revision %d; resume from history", v.rev))
	return nil
}

// derivedState is what Restore rebuilds from the records.
type derivedState struct {
	// byKey's records are of generation 0, older than any store's: the
	// first change to each copies it, as if a snapshot shared it.
	byKey     map[string]*record
	leaseKeys *btree.BTreeG[leaseKey]
	changes   changeLog
	keys      int
	err       error
}

func derive(v *snapshotView) derivedState {
	d := derivedState{byKey: make(map[string]*record, v.records.Len()), leaseKeys: newLeaseKeyTree()}
	var events []histEvent
	v.records.Ascend(func(rec *record) bool {
		d.byKey[rec.key] = rec
		for _, ver := range rec.vers {
			if ver.mod >= v.compacted {
				events = append(events, histEvent{key: rec.key, rev: ver.mod, sub: ver.sub})
			}
		}
		cur := rec.current()
		if cur == nil {
			return true
		}
		d.keys++
		if cur.lease != 0 {
			if _, ok := v.leases.Get(lease{id: cur.lease}); !ok {
				d.err = fmt.Errorf("%w: snapshot key %q is attached to lease %d, which it does not hold", ErrCorrupt, rec.key, cur.lease)
				return false
			}
			d.leaseKeys.ReplaceOrInsert(leaseKey{lease: cur.lease, key: rec.key})
		}
		return true
	})
	slices.SortFunc(events, func(a, b histEvent) int {
		if c := cmp.Compare(a.rev, b.rev); c != 0 {
			return c
		}
		return cmp.Compare(int64(a.sub), int64(b.sub))
	})
	for i := 1; i < len(events) && d.err == nil; i++ {
		if events[i].rev == events[i-1].rev && events[i].sub == events[i-1].sub {
			d.err = fmt.Errorf("%w: snapshot keys %q and %q both changed at revision %d.%d", ErrCorrupt, events[i-1].key, events[i].key, events[i].rev, events[i].sub)
		}
	}
	d.changes = newChangeLog(events)
	return d
}

// ErrOldSnapshotFormat is wrapped by Restore's error for a format 1
// snapshot, written before the store had revisions. Such a snapshot is
// converted only by ConvertSnapshot, never by Restore: see Restore.
var ErrOldSnapshotFormat = errors.New("kv: snapshot format 1, written before the store had revisions")

// ConvertSnapshot reads the snapshot stream src and writes it to dst in
// the current format. A format 1 stream is converted (see readEntriesV1):
// every member seeded from the one converted stream starts with the same
// revisions. A current stream is copied as it is, unchecked, as it would be
// without conversion (Restore checks it). It returns the format src was in.
func ConvertSnapshot(dst io.Writer, src io.Reader, cfg Config) (format byte, err error) {
	br := bufio.NewReaderSize(src, snapshotBufferBytes)
	head, err := br.Peek(len(snapshotMagic) + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("kv: convert snapshot: %w", err)
	}
	if len(head) == len(snapshotMagic)+1 && string(head[:len(snapshotMagic)]) == snapshotMagic {
		format = head[len(snapshotMagic)]
	}
	if format != 1 {
		if _, err := io.Copy(dst, br); err != nil {
			return format, fmt.Errorf("kv: convert snapshot: %w", err)
		}
		return format, nil
	}
	v, err := readSnapshot(br, cfg, true)
	if err != nil {
		return format, fmt.Errorf("kv: convert snapshot: %w", err)
	}
	if err := derive(v).err; err != nil {
		return format, fmt.Errorf("kv: convert snapshot: %w", err)
	}
	if _, err := v.WriteTo(dst); err != nil {
		return format, fmt.Errorf("kv: convert snapshot: %w", err)
	}
	return format, nil
}

// readSnapshot reads a whole stream; a format 1 stream only if convertV1.
func readSnapshot(r io.Reader, cfg Config, convertV1 bool) (*snapshotView, error) {
	sr := &snapReader{br: bufio.NewReaderSize(r, snapshotBufferBytes)}
	v := &snapshotView{records: newRecordTree(), leases: newLeaseTree(), sessions: newSessionTable()}
	format, err := sr.header(v)
	if err != nil {
		return nil, err
	}
	if format == 1 && !convertV1 {
		return nil, fmt.Errorf("%w: snapshot at applied index %d", ErrOldSnapshotFormat, v.applied)
	}
	if format == 1 {
		err = sr.readEntriesV1(v, cfg)
	} else {
		err = sr.readRecords(v, cfg)
		if err == nil {
			err = sr.readLeases(v)
		}
	}
	if err != nil {
		return nil, err
	}
	sr.format = format
	if err := sr.readSessions(v, cfg); err != nil {
		return nil, err
	}
	want := sr.crc
	var trailer [4]byte
	if _, err := io.ReadFull(sr.br, trailer[:]); err != nil {
		return nil, sr.wrap("trailer", err)
	}
	if got := binary.LittleEndian.Uint32(trailer[:]); got != want {
		return nil, fmt.Errorf("%w: snapshot checksum %#08x, computed %#08x", ErrCorrupt, got, want)
	}
	if _, err := sr.br.ReadByte(); err != io.EOF {
		if err != nil {
			return nil, fmt.Errorf("kv: read after snapshot trailer: %w", err)
		}
		return nil, fmt.Errorf("%w: bytes after the snapshot trailer", ErrCorrupt)
	}
	return v, nil
}

// snapReader checksums exactly the bytes it consumes (not the bufio
// read-ahead, which may include the trailer).
type snapReader struct {
	br  *bufio.Reader
	crc uint32
	one [1]byte
	// readErr is the last error from br, kept to tell a failing reader
	// from an overlong varint, which binary.ReadUvarint reports alike.
	readErr error
	// format is the snapshot version being read.
	format byte
}

func (r *snapReader) ReadByte() (byte, error) {
	c, err := r.br.ReadByte()
	if err != nil {
		r.readErr = err
		return 0, err
	}
	r.one[0] = c
	r.crc = crc32.Update(r.crc, castagnoli, r.one[:])
	return c, nil
}

func (r *snapReader) full(p []byte) error {
	n, err := io.ReadFull(r.br, p)
	r.crc = crc32.Update(r.crc, castagnoli, p[:n])
	return err
}

// wrap turns a short stream into corruption and keeps other read errors.
func (r *snapReader) wrap(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: snapshot truncated in %s", ErrCorrupt, what)
	}
	return fmt.Errorf("kv: read snapshot %s: %w", what, err)
}

func (r *snapReader) uvarint(what string) (uint64, error) {
	v, err := binary.ReadUvarint(r)
	switch {
	case err == nil:
		return v, nil
	case r.readErr != nil:
		return 0, r.wrap(what, r.readErr)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return 0, r.wrap(what, err)
	}
	// The only error ReadUvarint makes itself: more than 64 bits.
	return 0, fmt.Errorf("%w: snapshot %s: %v", ErrCorrupt, what, err)
}

// bytes reads a length-prefixed field of at most limit bytes. A large field
// is read in chunks so that a corrupt length on a short stream costs no more
// memory than the stream holds.
func (r *snapReader) bytes(what string, limit int) ([]byte, error) {
	n, err := r.uvarint(what + " length")
	if err != nil {
		return nil, err
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("%w: snapshot %s is %d bytes, over %d", ErrCorrupt, what, n, limit)
	}
	const chunk = 64 << 10
	out := make([]byte, 0, min(int(n), chunk))
	for len(out) < int(n) {
		m := min(int(n)-len(out), chunk)
		out = append(out, make([]byte, m)...)
		if err := r.full(out[len(out)-m:]); err != nil {
			return nil, r.wrap(what, err)
		}
	}
	return out[:n:n], nil
}

func (r *snapReader) header(v *snapshotView) (format byte, err error) {
	var head [len(snapshotMagic) + 1]byte
	if err := r.full(head[:]); err != nil {
		return 0, r.wrap("header", err)
	}
	if string(head[:len(snapshotMagic)]) != snapshotMagic {
		return 0, fmt.Errorf("%w: not a kv snapshot (magic %q)", ErrCorrupt, head[:len(snapshotMagic)])
	}
	format = head[len(snapshotMagic)]
	if format != 1 && format != SnapshotVersion {
		return 0, fmt.Errorf("%w: snapshot version %d; this build reads versions 1 and %d", ErrCorrupt, format, SnapshotVersion)
	}
	applied, err := r.uvarint("applied index")
	v.applied = raftpb.Index(applied)
	if err != nil || format == 1 {
		return format, err
	}
	var nums [2]uint64
	for i, what := range [...]string{"revision", "compacted revision"} {
		if nums[i], err = r.uvarint(what); err != nil {
			return 0, err
		}
	}
	v.rev, v.compacted = int64(nums[0]), int64(nums[1])
	if v.rev < firstRevision || v.compacted > v.rev || v.rev > math.MaxInt64/2 {
		return 0, fmt.Errorf("%w: snapshot revision %d, compacted %d", ErrCorrupt, v.rev, v.compacted)
	}
	return format, nil
}

// readEntriesV1 reads the keys of a version 1 snapshot, made before the
// store had revisions: each key's revision was the log index of its last
// write. They become the keys' create and mod revisions (version 1), the
// store revision becomes the applied index, and the history starts there,
// so every ETag handed out before stays valid. Every member has to convert
// at the same index, or their revisions differ: hence only ConvertSnapshot
// reads this format, for a backup that seeds every member alike.
func (r *snapReader) readEntriesV1(v *snapshotView, cfg Config) error {
	v.rev = max(int64(v.applied), firstRevision)
	v.compacted = v.rev
	count, err := r.uvarint("key count")
	if err != nil {
		return err
	}
	var prev string
	for i := uint64(0); i < count; i++ {
		key, err := r.bytes("key", cfg.maxKeyBytes())
		if err != nil {
			return err
		}
		value, err := r.bytes("value", cfg.maxValueBytes())
		if err != nil {
			return err
		}
		rev, err := r.uvarint("revision")
		if err != nil {
			return err
		}
		switch {
		case len(key) == 0 || (i > 0 && string(key) <= prev):
			return fmt.Errorf("%w: snapshot key %d is empty or out of order", ErrCorrupt, i)
		case rev == 0 || rev > uint64(v.applied):
			return fmt.Errorf("%w: snapshot key %d has revision %d, applied index %d", ErrCorrupt, i, rev, v.applied)
		}
		if len(value) == 0 {
			value = nil
		}
		m := int64(rev)
		v.records.ReplaceOrInsert(&record{key: string(key), vers: []version{{value: value, mod: m, create: m, ver: 1}}})
		prev = string(key)
	}
	return nil
}

func (r *snapReader) readRecords(v *snapshotView, cfg Config) error {
	count, err := r.uvarint("record count")
	if err != nil {
		return err
	}
	var prev string
	for i := uint64(0); i < count; i++ {
		key, err := r.bytes("key", cfg.maxKeyBytes())
		if err != nil {
			return err
		}
		if len(key) == 0 || (i > 0 && string(key) <= prev) {
			return fmt.Errorf("%w: snapshot key %d is empty or out of order", ErrCorrupt, i)
		}
		rec := &record{key: string(key)}
		if rec.vers, err = r.readVersions(v, rec.key, cfg); err != nil {
			return err
		}
		v.records.ReplaceOrInsert(rec)
		prev = rec.key
	}
	return nil
}

// readVersions reads one key's versions. Checked even though the checksum
// will be: a stream with a valid checksum but a broken invariant (a bug,
// or a crafted file) must not become a state later Applies treat as sound.
func (r *snapReader) readVersions(v *snapshotView, key string, cfg Config) ([]version, error) {
	n, err := r.uvarint("version count")
	if err != nil {
		return nil, err
	}
	if n == 0 || n > uint64(v.rev) {
		return nil, fmt.Errorf("%w: snapshot key %q has %d versions", ErrCorrupt, key, n)
	}
	var vers []version
	for j := uint64(0); j < n; j++ {
		var nums [5]uint64
		for k, what := range [...]string{"mod revision", "create revision", "version", "lease", "sub-revision"} {
			if nums[k], err = r.uvarint(what); err != nil {
				return nil, err
			}
		}
		ver := version{mod: int64(nums[0]), create: int64(nums[1]), ver: int64(nums[2]), lease: int64(nums[3]), sub: uint32(nums[4])}
		if !ver.tombstone() {
			if ver.value, err = r.bytes("value", cfg.maxValueBytes()); err != nil {
				return nil, err
			}
			if len(ver.value) == 0 {
				ver.value = nil
			}
		}
		bad := ver.mod <= 0 || ver.mod > v.rev || nums[4] > math.MaxUint32 || nums[3] > math.MaxInt64 || nums[2] > uint64(v.rev) ||
			(len(vers) > 0 && ver.mod <= vers[len(vers)-1].mod) ||
			(!ver.tombstone() && (ver.create <= 0 || ver.create > ver.mod)) ||
			(ver.tombstone() && (ver.create != 0 || ver.lease != 0))
		if bad {
			return nil, fmt.Errorf("%w: snapshot key %q version %d: mod %d create %d version %d lease %d sub %d (revision %d)",
				ErrCorrupt, key, j, nums[0], nums[1], nums[2], nums[3], nums[4], v.rev)
		}
		vers = append(vers, ver)
	}
	if vers[0].tombstone() && vers[0].mod < v.compacted {
		return nil, fmt.Errorf("%w: snapshot key %q keeps a delete older than the compacted revision", ErrCorrupt, key)
	}
	return vers, nil
}

func (r *snapReader) readLeases(v *snapshotView) error {
	count, err := r.uvarint("lease count")
	if err != nil {
		return err
	}
	var prev int64
	for i := uint64(0); i < count; i++ {
		var nums [3]uint64
		for k, what := range [...]string{"lease id", "lease ttl", "lease remaining"} {
			if nums[k], err = r.uvarint(what); err != nil {
				return err
			}
		}
		l := lease{id: int64(nums[0]), ttl: int64(nums[1]), remaining: int64(nums[2])}
		if nums[0] > math.MaxInt64 || l.id <= prev || nums[1] < 1 || nums[1] > MaxLeaseTTL || nums[2] > nums[1] {
			return fmt.Errorf("%w: snapshot lease %d: id %d ttl %d remaining %d", ErrCorrupt, i, nums[0], nums[1], nums[2])
		}
		v.leases.ReplaceOrInsert(l)
		prev = l.id
	}
	return nil
}

func (r *snapReader) readSessions(v *snapshotView, cfg Config) error {
	count, err := r.uvarint("session count")
	if err != nil {
		return err
	}
	if count > uint64(cfg.maxSessions()) {
		return fmt.Errorf("%w: snapshot holds %d sessions, over %d", ErrCorrupt, count, cfg.maxSessions())
	}
	var prev raftpb.Index
	for i := uint64(0); i < count; i++ {
		s, err := r.session()
		if err != nil {
			return err
		}
		switch {
		case s.token == "" || s.index <= prev || s.index > v.applied:
			return fmt.Errorf("%w: snapshot session %d (index %d) is empty, out of order or past applied index %d", ErrCorrupt, i, s.index, v.applied)
		case v.sessions.has(s.token):
			return fmt.Errorf("%w: snapshot session %d repeats a token", ErrCorrupt, i)
		}
		v.sessions.insert(s)
		prev = s.index
	}
	return nil
}

func (r *snapReader) session() (*session, error) {
	token, err := r.bytes("session token", MaxIdempotencyKeyBytes)
	if err != nil {
		return nil, err
	}
	var nums [4]uint64
	for i, what := range [...]string{"session index", "result index", "result revision", "result previous revision"} {
		if nums[i], err = r.uvarint(what); err != nil {
			return nil, err
		}
	}
	code, err := r.ReadByte()
	if err != nil {
		return nil, r.wrap("result code", err)
	}
	if int(code) >= len(codes) || (r.format == 1 && int(code) >= codesV1) {
		return nil, fmt.Errorf("%w: snapshot result code %d", ErrCorrupt, code)
	}
	msg, err := r.bytes("result message", MaxMessageBytes)
	if err != nil {
		return nil, err
	}
	s := &session{token: string(token), index: raftpb.Index(nums[0]), result: Result{
		Index: raftpb.Index(nums[1]), Rev: int64(nums[2]), Prev: int64(nums[3]),
		Code: codes[code], Message: string(msg),
	}}
	if r.format >= 2 {
		if err := r.resultV2(&s.result); err != nil {
			return nil, err
		}
	}
	if s.result.Index != s.index {
		return nil, fmt.Errorf("%w: snapshot session at index %d holds a result of index %d", ErrCorrupt, s.index, s.result.Index)
	}
	return s, nil
}

// codesV1 is how many result codes version 1 snapshots knew.
const codesV1 = 7

// resultV2 reads the result fields version 2 added.
func (r *snapReader) resultV2(res *Result) error {
	var nums [3]uint64
	var err error
	for i, what := range [...]string{"result store revision", "result lease", "result ttl"} {
		if nums[i], err = r.uvarint(what); err != nil {
			return err
		}
	}
	res.Revision, res.Lease, res.TTL = int64(nums[0]), int64(nums[1]), int64(nums[2])
	hasTxn, err := r.ReadByte()
	if err != nil {
		return r.wrap("result", err)
	}
	switch hasTxn {
	case 0:
		return nil
	case 1:
	default:
		return fmt.Errorf("%w: snapshot result txn marker %d", ErrCorrupt, hasTxn)
	}
	succeeded, err := r.ReadByte()
	if err != nil {
		return r.wrap("result", err)
	}
	n, err := r.uvarint("result op count")
	if err != nil {
		return err
	}
	if succeeded > 1 || n > MaxTxnOps {
		return fmt.Errorf("%w: snapshot txn result succeeded=%d with %d ops", ErrCorrupt, succeeded, n)
	}
	t := &TxnResult{Succeeded: succeeded == 1, Results: make([]OpResult, n)}
	for i := range t.Results {
		kind, err := r.ReadByte()
		if err != nil {
			return r.wrap("result op", err)
		}
		var f [3]uint64
		for k, what := range [...]string{"op deleted", "op revision", "op sub-revision"} {
			if f[k], err = r.uvarint(what); err != nil {
				return err
			}
		}
		if kind > byte(OpKindDelete) || f[2] > math.MaxUint32 {
			return fmt.Errorf("%w: snapshot txn result op kind %d sub %d", ErrCorrupt, kind, f[2])
		}
		t.Results[i] = OpResult{Kind: OpKind(kind), Deleted: int64(f[0]), at: view{rev: int64(f[1]), sub: uint32(f[2])}}
	}
	res.Txn = t
	return nil
}
