package api

import (
	"encoding/base64"
	"fmt"
	"unicode/utf8"
)

// Paths of the coordination API: ranges, transactions, compaction, watch
// and leases (docs/api.md).
const (
	PathRange   = "/v1/range"
	PathTxn     = "/v1/txn"
	PathCompact = "/v1/compact"
	PathWatch   = "/v1/watch"
	PathLease   = "/v1/lease/" // + grant, revoke, keepalive, or an id
	PathLeases  = "/v1/leases"
)

// Header is the part of every coordination answer that says where in the
// history it was served.
type Header struct {
	// Revision is the store revision the answer was served at (for a
	// write, the revision after it).
	Revision int64 `json:"revision"`
	// Index is a write's log index; 0 for reads.
	Index uint64 `json:"index,omitempty"`
	// MemberID is the member that answered.
	MemberID uint64 `json:"member_id,string"`
}

// KeyValue is one version of a key. Key and Value are text when both are
// valid UTF-8; otherwise Encoding is "base64" and both are base64.
type KeyValue struct {
	Key            string `json:"key"`
	Value          string `json:"value,omitempty"`
	Encoding       string `json:"encoding,omitempty"`
	CreateRevision int64  `json:"create_revision"`
	ModRevision    int64  `json:"mod_revision"`
	Version        int64  `json:"version"`
	Lease          int64  `json:"lease,omitempty"`
}

// EncodeKV renders a key and value as a KeyValue's text fields.
func EncodeKV(key string, value []byte) (k, v, encoding string) {
	if utf8.ValidString(key) && utf8.Valid(value) {
		return key, string(value), ""
	}
	return base64.StdEncoding.EncodeToString([]byte(key)), base64.StdEncoding.EncodeToString(value), EncodingBase64
}

// Decode returns the raw key and value.
func (kv *KeyValue) Decode() (key string, value []byte, err error) {
	return DecodeText(kv.Key, kv.Value, kv.Encoding)
}

// DecodeText decodes a key and value given as text or, with encoding
// "base64", as base64.
func DecodeText(key, value, encoding string) (string, []byte, error) {
	switch encoding {
	case "":
		return key, []byte(value), nil
	case EncodingBase64:
		k, err := base64.StdEncoding.DecodeString(key)
		if err != nil {
			return "", nil, fmt.Errorf("key is not base64: %w", err)
		}
		v, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			return "", nil, fmt.Errorf("value is not base64: %w", err)
		}
		return string(k), v, nil
	}
	return "", nil, fmt.Errorf("encoding %q: want base64 or none", encoding)
}

// RangeResponse answers GET /v1/range and a transaction's range operation.
type RangeResponse struct {
	Header *Header     `json:"header,omitempty"`
	KVs    []*KeyValue `json:"kvs"`
	// Count is the number of keys in the range, More whether the limit
	// left some out.
	Count int64 `json:"count"`
	More  bool  `json:"more,omitempty"`
}

// Compare is one condition of a transaction. Target is value, version,
// create, mod or lease; Op is =, !=, < or >; Value is for the value target,
// Number for the others. RangeEnd (or Prefix) makes it hold for every key
// of the range.
type Compare struct {
	Key      string `json:"key"`
	RangeEnd string `json:"range_end,omitempty"`
	Prefix   bool   `json:"prefix,omitempty"`
	Target   string `json:"target"`
	Op       string `json:"op"`
	Value    string `json:"value,omitempty"`
	Number   int64  `json:"number,omitempty"`
}

// TxnOp is one operation of a transaction: Op is put, delete or range.
type TxnOp struct {
	Op       string `json:"op"`
	Key      string `json:"key"`
	RangeEnd string `json:"range_end,omitempty"`
	// Prefix makes the range every key that starts with Key.
	Prefix      bool   `json:"prefix,omitempty"`
	Value       string `json:"value,omitempty"`
	Lease       int64  `json:"lease,omitempty"`
	PrevKV      bool   `json:"prev_kv,omitempty"`
	IgnoreValue bool   `json:"ignore_value,omitempty"`
	IgnoreLease bool   `json:"ignore_lease,omitempty"`
	// Range options.
	Revision          int64  `json:"revision,omitempty"`
	Limit             int64  `json:"limit,omitempty"`
	CountOnly         bool   `json:"count_only,omitempty"`
	KeysOnly          bool   `json:"keys_only,omitempty"`
	SortBy            string `json:"sort_by,omitempty"`    // key, version, create, mod, value
	SortOrder         string `json:"sort_order,omitempty"` // none, ascend, descend
	MinModRevision    int64  `json:"min_mod_revision,omitempty"`
	MaxModRevision    int64  `json:"max_mod_revision,omitempty"`
	MinCreateRevision int64  `json:"min_create_revision,omitempty"`
	MaxCreateRevision int64  `json:"max_create_revision,omitempty"`
}

// TxnRequest is POST /v1/txn. With Encoding "base64" every key, range end
// and value in it is base64.
type TxnRequest struct {
	Compare  []Compare `json:"compare,omitempty"`
	Success  []TxnOp   `json:"success,omitempty"`
	Failure  []TxnOp   `json:"failure,omitempty"`
	Encoding string    `json:"encoding,omitempty"`
}

// OpResponse is one transaction operation's answer.
type OpResponse struct {
	Op      string         `json:"op"`
	Range   *RangeResponse `json:"range,omitempty"`
	PrevKV  *KeyValue      `json:"prev_kv,omitempty"`
	Deleted int64          `json:"deleted,omitempty"`
	PrevKVs []*KeyValue    `json:"prev_kvs,omitempty"`
}

// TxnResponse answers POST /v1/txn.
type TxnResponse struct {
	Header    Header       `json:"header"`
	Succeeded bool         `json:"succeeded"`
	Results   []OpResponse `json:"results"`
}

// DeleteRangeResponse answers DELETE /v1/range.
type DeleteRangeResponse struct {
	Header  Header      `json:"header"`
	Deleted int64       `json:"deleted"`
	PrevKVs []*KeyValue `json:"prev_kvs,omitempty"`
}

// CompactRequest is POST /v1/compact.
type CompactRequest struct {
	Revision int64 `json:"revision"`
}

// CompactedBody is the error answer of a read or watch at a compacted
// revision: an ErrorBody plus the oldest revision still readable.
type CompactedBody struct {
	Error           string `json:"error"`
	Code            string `json:"code"`
	CompactRevision int64  `json:"compact_revision"`
}

// LeaseGrantRequest is POST /v1/lease/grant: TTL in seconds, ID 0 to let
// the store choose.
type LeaseGrantRequest struct {
	ID  int64 `json:"id,omitempty"`
	TTL int64 `json:"ttl"`
}

// LeaseRequest is POST /v1/lease/revoke and /v1/lease/keepalive.
type LeaseRequest struct {
	ID int64 `json:"id"`
}

// LeaseResponse answers grant, keep-alive and time-to-live: TTL is the
// remaining time to live in seconds (-1: no such lease), GrantedTTL the
// TTL it was granted with, Keys (time-to-live with ?keys=true) its keys.
type LeaseResponse struct {
	Header     Header   `json:"header"`
	ID         int64    `json:"id"`
	TTL        int64    `json:"ttl"`
	GrantedTTL int64    `json:"granted_ttl,omitempty"`
	Keys       []string `json:"keys,omitempty"`
}

// LeasesResponse answers GET /v1/leases.
type LeasesResponse struct {
	Header Header  `json:"header"`
	Leases []int64 `json:"leases"`
}

// WatchMessage is one line of a watch stream (newline-delimited JSON).
// Exactly one of Events (with Revision), Progress, Canceled is set, or
// Created on the first line.
type WatchMessage struct {
	// Created is the first line: the watch is registered, and Revision is
	// the revision the member was at.
	Created bool `json:"created,omitempty"`
	// Revision: every change up to it has been sent.
	Revision int64        `json:"revision,omitempty"`
	Events   []WatchEvent `json:"events,omitempty"`
	// Progress is a progress notification: nothing changed in the range
	// up to this revision since the last line.
	Progress bool `json:"progress,omitempty"`
	// Canceled ends the stream: Reason says why; CompactRevision is set
	// when the start revision is compacted.
	Canceled        bool   `json:"canceled,omitempty"`
	Reason          string `json:"reason,omitempty"`
	CompactRevision int64  `json:"compact_revision,omitempty"`
}

// WatchEvent is one change: Type put or delete, the key-value after it
// (for a delete, the key and the delete's mod revision), and with prev_kv
// the version before.
type WatchEvent struct {
	Type   string    `json:"type"`
	KV     KeyValue  `json:"kv"`
	PrevKV *KeyValue `json:"prev_kv,omitempty"`
}
