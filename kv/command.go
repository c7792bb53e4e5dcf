package kv

import (
	"encoding/binary"
	"fmt"
)

// Op is what a command does to its key.
type Op uint8

const (
	// OpPut sets the key's value.
	OpPut Op = 1 + iota
	// OpAppend appends Value to the key's value, creating the key if absent.
	OpAppend
	// OpDelete removes the key.
	OpDelete
	// OpTxn runs Command.Txn.
	OpTxn
	// OpCompact discards the history before revision Command.Rev.
	OpCompact
	// OpLeaseGrant creates lease Command.Lease (0: the store picks the id)
	// with Command.TTL seconds.
	OpLeaseGrant
	// OpLeaseRevoke deletes lease Command.Lease and its keys.
	OpLeaseRevoke
	// OpLeaseCheckpoint records the remaining TTLs Command.Checkpoints.
	OpLeaseCheckpoint
	opLast = OpLeaseCheckpoint
)

var opNames = [...]string{"", "put", "append", "delete", "txn", "compact", "lease-grant", "lease-revoke", "lease-checkpoint"}

func (o Op) String() string {
	if o > 0 && o <= opLast {
		return opNames[o]
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Cond is the precondition a command carries.
type Cond uint8

const (
	// CondNone: no precondition.
	CondNone Cond = iota
	// CondRevMatch (If-Match): the key exists and its revision is Command.Rev.
	CondRevMatch
	// CondAbsent (If-None-Match: *): the key does not exist.
	CondAbsent
)

func (c Cond) String() string {
	switch c {
	case CondNone:
		return "none"
	case CondRevMatch:
		return "rev-match"
	case CondAbsent:
		return "absent"
	}
	return fmt.Sprintf("Cond(%d)", uint8(c))
}

// CommandVersion is the first byte of every encoded command. A replica that
// meets a version it does not know answers bad_request, like every other
// replica of the same build.
const CommandVersion = 1

// MaxIdempotencyKeyBytes bounds Command.IdempotencyKey; it is part of the
// format, not a configuration, so that every replica accepts the same tokens.
const MaxIdempotencyKeyBytes = 128

// Command is one write, as proposed to the log. Key, Value and Cond belong
// to the single-key ops (put, append, delete); Rev to CondRevMatch and
// OpCompact; the other fields to the op that names them.
type Command struct {
	Op    Op
	Key   string
	Value []byte // for OpPut and OpAppend; not encoded for OpDelete
	Cond  Cond
	Rev   int64 // the mod revision CondRevMatch expects; OpCompact's revision
	Txn   *Txn
	Lease int64
	TTL   int64
	// Checkpoints are OpLeaseCheckpoint's.
	Checkpoints []LeaseCheckpoint
	// IdempotencyKey, when not empty, makes the command exactly-once within
	// the session window: a later command with the same key gets the first
	// one's Result and changes nothing.
	IdempotencyKey string
}

// Validate reports, as a *Error, whether c is a command Apply would accept
// under cfg; nil means it would be executed. The server calls it before
// proposing so that a request that can only be refused does not take a
// round through the log; Apply runs the same checks.
func (cfg Config) Validate(c *Command) error {
	if code, msg := cfg.check(c); code != CodeOK {
		return &Error{Code: code, Message: msg}
	}
	return nil
}

func (cfg Config) check(c *Command) (code, message string) {
	switch {
	case c.Op < OpPut || c.Op > opLast:
		return CodeBadRequest, fmt.Sprintf("unknown op %d", uint8(c.Op))
	case len(c.IdempotencyKey) > MaxIdempotencyKeyBytes:
		return CodeBadRequest, fmt.Sprintf("idempotency key is %d bytes, over %d", len(c.IdempotencyKey), MaxIdempotencyKeyBytes)
	case c.Op == OpTxn:
		return cfg.checkTxn(c.Txn)
	case c.Op == OpCompact:
		if c.Rev <= 0 {
			return CodeBadRequest, fmt.Sprintf("compaction revision %d: want a positive revision", c.Rev)
		}
		return CodeOK, ""
	case c.Op > OpTxn:
		return cfg.checkLease(c)
	case c.Cond > CondAbsent:
		return CodeBadRequest, fmt.Sprintf("unknown precondition %d", uint8(c.Cond))
	case c.Op == OpDelete && c.Cond == CondAbsent:
		return CodeBadRequest, "delete cannot require the key to be absent"
	case c.Op == OpDelete && len(c.Value) != 0:
		return CodeBadRequest, "delete carries no value"
	case len(c.Key) == 0:
		return CodeBadKey, "empty key"
	case len(c.Key) > cfg.maxKeyBytes():
		return CodeBadKey, fmt.Sprintf("key is %d bytes, over %d", len(c.Key), cfg.maxKeyBytes())
	case len(c.Value) > cfg.maxValueBytes():
		return CodeTooLarge, fmt.Sprintf("value is %d bytes, over %d", len(c.Value), cfg.maxValueBytes())
	}
	return CodeOK, ""
}

// Encoding (all integers unsigned varints, byte strings length-prefixed):
//
//	version(1) op(1) cond(1) [rev if cond=rev-match] key [value if put/append] idempotency-key
//
// The fields that depend on op and cond are left out rather than zeroed so
// that a delete costs a few bytes in every replica's log.

// EncodeCommand returns the encoding of c. It does not check limits: see
// Config.Validate.
func EncodeCommand(c Command) []byte {
	return AppendCommand(make([]byte, 0, 16+len(c.Key)+len(c.Value)+len(c.IdempotencyKey)), c)
}

// AppendCommand appends the encoding of c to b and returns the result.
func AppendCommand(b []byte, c Command) []byte {
	if c.Op > OpDelete {
		b = append(b, CommandVersion, byte(c.Op))
		b = appendBody(b, &c)
		return appendString(b, c.IdempotencyKey)
	}
	b = append(b, CommandVersion, byte(c.Op), byte(c.Cond))
	if c.Cond == CondRevMatch {
		b = binary.AppendUvarint(b, uint64(c.Rev))
	}
	b = appendString(b, c.Key)
	if c.Op != OpDelete {
		b = binary.AppendUvarint(b, uint64(len(c.Value)))
		b = append(b, c.Value...)
	}
	return appendString(b, c.IdempotencyKey)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// DecodeCommand decodes a command made by EncodeCommand. The whole input
// must be consumed; any deviation returns an error wrapping ErrCorrupt.
// The result shares no memory with b.
func DecodeCommand(b []byte) (Command, error) { return decodeCommand(b, nil) }

// decodeCommand is DecodeCommand, except that a single-key command whose
// key has a record in keys takes the record's key string instead of a
// copy of its own: the store's puts to existing keys allocate no key.
func decodeCommand(b []byte, keys map[string]*record) (Command, error) {
	d := cmdDecoder{b: b}
	var c Command
	if v := d.byte1("version"); d.err == nil && v != CommandVersion {
		d.fail(fmt.Sprintf("command version %d, want %d", v, CommandVersion))
	}
	c.Op = Op(d.byte1("op"))
	if d.err == nil && (c.Op < OpPut || c.Op > opLast) {
		d.fail(fmt.Sprintf("unknown op %d", uint8(c.Op)))
	}
	if c.Op > OpDelete {
		d.body(&c)
		return d.finish(c)
	}
	c.Cond = Cond(d.byte1("precondition"))
	if d.err == nil && c.Cond > CondAbsent {
		d.fail(fmt.Sprintf("unknown precondition %d", uint8(c.Cond)))
	}
	if c.Cond == CondRevMatch {
		c.Rev = int64(d.uvarint("rev"))
	}
	key := d.bytes("key", len(b))
	if rec := keys[string(key)]; rec != nil {
		c.Key = rec.key
	} else {
		c.Key = string(key)
	}
	if c.Op != OpDelete {
		// Values are copied with their capacity clipped, so that no later
		// append through a shared slice can write into stored memory.
		if v := d.bytes("value", len(b)); len(v) > 0 {
			c.Value = append([]byte(nil), v...)[:len(v):len(v)]
		}
	}
	return d.finish(c)
}

func (d *cmdDecoder) finish(c Command) (Command, error) {
	c.IdempotencyKey = string(d.bytes("idempotency key", MaxIdempotencyKeyBytes))
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.b)))
	}
	if d.err != nil {
		return Command{}, d.err
	}
	return c, nil
}

// cmdDecoder reads fields in order and remembers the first failure, so the
// decoding reads as a list of fields rather than a ladder of checks.
type cmdDecoder struct {
	b   []byte
	err error
}

func (d *cmdDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: command: %s", ErrCorrupt, what)
	}
}

func (d *cmdDecoder) byte1(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("missing " + what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *cmdDecoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad " + what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes returns the next length-prefixed field, aliasing the input.
func (d *cmdDecoder) bytes(what string, limit int) []byte {
	if d.err != nil {
		return nil
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.fail("bad " + what + " length")
		return nil
	}
	d.b = d.b[k:]
	if n > uint64(len(d.b)) || n > uint64(max(limit, 0)) {
		d.fail(fmt.Sprintf("%s length %d with %d bytes left (limit %d)", what, n, len(d.b), limit))
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}
