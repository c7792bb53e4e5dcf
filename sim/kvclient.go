package sim

import (
	"strconv"

	"github.com/raftkv/raftkv/kv"
)

// FSM chooses a run's state machine.
type FSM uint8

const (
	// FSMAuto runs the kv state machine on half the seeds (drawn from the
	// seed) and the hash-only one on the others.
	FSMAuto FSM = iota
	// FSMHash is the hash-only state machine: it records what it applied.
	FSMHash
	// FSMKV adds the real kv.Store, fed kv commands by the clients.
	FSMKV
)

func (f FSM) String() string {
	switch f {
	case FSMHash:
		return "hash"
	case FSMKV:
		return "kv"
	}
	return "auto"
}

// ParseFSM reads a -fsm flag value.
func ParseFSM(s string) (FSM, bool) {
	for _, f := range []FSM{FSMAuto, FSMHash, FSMKV} {
		if f.String() == s {
			return f, true
		}
	}
	return 0, false
}

func (f FSM) withKV(seed uint64) bool {
	switch f {
	case FSMHash:
		return false
	case FSMKV:
		return true
	}
	return mix64(seed^0xf5f5)&1 == 1
}

// kvKeys is the size of the clients' key space: small, so that commands
// meet each other's keys and their preconditions pass and fail.
const kvKeys = 8

// clientCommand encodes client command id carrying pad bytes of payload.
// With the kv state machine it is a kv command whose idempotency key is
// the id (the clients never retry, so every key is new); otherwise the id
// and padding.
func (s *Sim) clientCommand(id uint64, pad int) []byte {
	if !s.withKV {
		return command(id, pad)
	}
	if s.rng.IntN(3) == 0 {
		return s.coordCommand(id, pad)
	}
	c := kv.Command{
		Op:             kv.OpPut,
		Key:            "k" + strconv.Itoa(s.rng.IntN(kvKeys)),
		IdempotencyKey: strconv.FormatUint(id, 10),
	}
	switch x := s.rng.IntN(10); {
	case x < 3:
		c.Op = kv.OpAppend
	case x < 5:
		c.Op = kv.OpDelete
	}
	if c.Op != kv.OpDelete {
		c.Value = make([]byte, pad)
		for i := range c.Value {
			c.Value[i] = byte(id) + byte(i)
		}
	}
	switch x := s.rng.IntN(10); {
	case x < 2 && c.Op != kv.OpDelete:
		c.Cond = kv.CondAbsent
	case x < 4:
		// A revision near the newest committed index: some match.
		c.Cond = kv.CondRevMatch
		c.Rev = int64(max(0, len(s.check.committed.ents)-1-s.rng.IntN(8)))
	}
	return kv.EncodeCommand(c)
}

// entryCommandID returns the client command id an applied entry's data
// carries, if it is a client command.
func (s *Sim) entryCommandID(data []byte) (uint64, bool) {
	if !s.withKV {
		return commandID(data)
	}
	if len(data) == 0 {
		return 0, false
	}
	c, err := kv.DecodeCommand(data)
	if err != nil {
		return 0, false
	}
	id, err := strconv.ParseUint(c.IdempotencyKey, 10, 64)
	return id, err == nil
}
