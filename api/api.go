package api

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Paths.
const (
	PathKV       = "/v1/kv/"
	PathBatch    = "/v1/batch"
	PathCluster  = "/v1/cluster"
	PathMembers  = "/v1/cluster/members"
	PathVoters   = "/v1/cluster/voters"
	PathTransfer = "/v1/cluster/transfer-leadership"
	PathSnapshot = "/v1/cluster/snapshot"
	PathAlarms   = "/v1/cluster/alarms"
	PathHealthz  = "/healthz"
	PathReadyz   = "/readyz"
)

// Headers.
const (
	HeaderTerm           = "X-Raft-Term"
	HeaderLeader         = "X-Raft-Leader"
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderRetryAfter     = "Retry-After"
)

// Consistency levels of a read (?consistency=).
const (
	Linearizable = "linearizable"
	Lease        = "lease"
	Stale        = "stale"
)

// Error codes (docs/api.md, "Errors").
const (
	CodeBadRequest         = "bad_request"
	CodeBadKey             = "bad_key"
	CodeBadJSON            = "bad_json"
	CodeNotFound           = "not_found"
	CodeChangeInProgress   = "change_in_progress"
	CodePreconditionFailed = "precondition_failed"
	CodeTooLarge           = "too_large"
	CodeBusy               = "busy"
	CodeNoLeader           = "no_leader"
	CodeShuttingDown       = "shutting_down"
	CodeUnknownOutcome     = "unknown_outcome"
	// CodeLearnerLagging: a promotion was refused because the learner has
	// not caught up within the request's time; nothing changed.
	CodeLearnerLagging = "learner_lagging"
	// CodeNotReady: /readyz while the member has not applied up to its commit.
	CodeNotReady = "not_ready"
	// CodeInternal: a failure of the member itself (a stopped node, a disk error).
	CodeInternal = "internal"
	// CodeCompacted (410): the revision asked for is compacted; the answer
	// carries the compacted revision (CompactedBody).
	CodeCompacted = "compacted"
	// CodeFutureRevision (400): a revision after the store's.
	CodeFutureRevision = "future_revision"
	// CodeLeaseNotFound (404): no such lease.
	CodeLeaseNotFound = "lease_not_found"
	// CodeLeaseExists (409): a grant of an id in use.
	CodeLeaseExists = "lease_exists"
	// CodeBadTTL (400): a lease TTL out of range.
	CodeBadTTL = "bad_ttl"
	// CodeTooManyOps (400): a transaction over the operation limit.
	CodeTooManyOps = "too_many_ops"
	// CodeNoSpace: a write refused, before it was proposed or by the state
	// machine's quota, because a member's disk or the state's quota is
	// full (a no_space alarm is raised). Nothing was applied; reads and
	// deletes still work.
	CodeNoSpace = "no_space"
)

// Status returns the HTTP status that goes with an error code.
func Status(code string) int {
	switch code {
	case CodeBadRequest, CodeBadKey, CodeBadJSON, CodeFutureRevision, CodeBadTTL, CodeTooManyOps:
		return http.StatusBadRequest
	case CodeNotFound, CodeLeaseNotFound:
		return http.StatusNotFound
	case CodeChangeInProgress, CodeLearnerLagging, CodeLeaseExists:
		return http.StatusConflict
	case CodeCompacted:
		return http.StatusGone
	case CodePreconditionFailed:
		return http.StatusPreconditionFailed
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeBusy:
		return http.StatusTooManyRequests
	case CodeNoLeader, CodeShuttingDown, CodeNotReady:
		return http.StatusServiceUnavailable
	case CodeUnknownOutcome:
		return http.StatusGatewayTimeout
	case CodeNoSpace:
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

// MayHaveApplied reports whether a write answered with code may still take
// effect. Only unknown_outcome (and a failure of the member itself, which
// says nothing either way) leaves it open.
func MayHaveApplied(code string) bool {
	return code == CodeUnknownOutcome || code == CodeInternal
}

// ErrorBody is every error answer.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// WriteResponse answers a successful PUT, POST ?op=append or DELETE.
type WriteResponse struct {
	// Index is the log index of the command.
	Index uint64 `json:"index"`
	// Rev is the key's mod revision after the write (its new ETag); for a
	// delete, the revision of the delete.
	Rev uint64 `json:"rev"`
	// Revision is the store revision after the write.
	Revision uint64 `json:"revision"`
}

// Item is one key of a listing. Key and Value are text when both are valid
// UTF-8; otherwise Encoding is "base64" and both are base64 (std encoding),
// so that binary keys and values survive JSON.
type Item struct {
	Key      string `json:"key"`
	Value    string `json:"value"`
	Rev      uint64 `json:"rev"`
	Encoding string `json:"encoding,omitempty"`
}

// EncodingBase64 marks an Item whose key and value are base64.
const EncodingBase64 = "base64"

// NewItem encodes one key for a listing.
func NewItem(key string, value []byte, rev uint64) Item {
	if utf8.ValidString(key) && utf8.Valid(value) {
		return Item{Key: key, Value: string(value), Rev: rev}
	}
	return Item{
		Key:      base64.StdEncoding.EncodeToString([]byte(key)),
		Value:    base64.StdEncoding.EncodeToString(value),
		Rev:      rev,
		Encoding: EncodingBase64,
	}
}

// Decode returns the item's raw key and value.
func (it Item) Decode() (key string, value []byte, err error) {
	if it.Encoding != EncodingBase64 {
		return it.Key, []byte(it.Value), nil
	}
	k, err := base64.StdEncoding.DecodeString(it.Key)
	if err != nil {
		return "", nil, err
	}
	v, err := base64.StdEncoding.DecodeString(it.Value)
	return string(k), v, err
}

// ListResponse answers GET /v1/kv/?prefix=p&limit=n.
type ListResponse struct {
	Items []Item `json:"items"`
	More  bool   `json:"more"`
}

// Member is one member in GET /v1/cluster and the body of
// POST /v1/cluster/members.
type Member struct {
	ID         uint64 `json:"id"`
	PeerAddr   string `json:"peer_addr"`
	ClientAddr string `json:"client_addr,omitempty"`
	Voter      bool   `json:"voter"`
	// Alarm is the alarm the member has raised (AlarmNoSpace), if any, and
	// AlarmCause why (AlarmCauseDisk, AlarmCauseQuota).
	Alarm      string `json:"alarm,omitempty"`
	AlarmCause string `json:"alarm_cause,omitempty"`
}

// AlarmNoSpace is raised by a member whose disk (cause AlarmCauseDisk) or
// whose state's quota (AlarmCauseQuota) is full. Every member refuses puts
// and appends with 507 no_space while a quota alarm is raised, or while
// the voters without a disk alarm are not a majority (the cluster could
// not commit them).
const (
	AlarmNoSpace    = "no_space"
	AlarmCauseDisk  = "disk"
	AlarmCauseQuota = "quota"
)

// Alarm actions of POST /v1/cluster/alarms.
const (
	AlarmArm    = "arm"
	AlarmDisarm = "disarm"
)

// AlarmRequest is the body of POST /v1/cluster/alarms. Disarm with Member
// 0 clears every member's alarm.
type AlarmRequest struct {
	Action string `json:"action"`
	Member uint64 `json:"member,omitempty"`
	Alarm  string `json:"alarm,omitempty"`
	Cause  string `json:"cause,omitempty"`
}

// Alarm is one raised alarm.
type Alarm struct {
	Member uint64 `json:"member"`
	Alarm  string `json:"alarm"`
	Cause  string `json:"cause"`
}

// AlarmsResponse answers GET and POST /v1/cluster/alarms.
type AlarmsResponse struct {
	Alarms []Alarm `json:"alarms"`
}

// Self is the answering member's own state in GET /v1/cluster.
type Self struct {
	ID            uint64 `json:"id"`
	Role          string `json:"role"`
	Term          uint64 `json:"term"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	SnapshotIndex uint64 `json:"snapshot_index"`
	// SpaceOK is false while this member's disk has no room for the next
	// log segment.
	SpaceOK bool `json:"space_ok"`
	// StateBytes is the state machine's size as its quota counts it, and
	// QuotaBytes that quota.
	StateBytes int64 `json:"state_bytes"`
	QuotaBytes int64 `json:"quota_bytes"`
}

// Roles reported in Self.Role.
const (
	RoleLeader    = "leader"
	RoleFollower  = "follower"
	RoleCandidate = "candidate"
	RoleLearner   = "learner"
	RoleRemoved   = "removed"
)

// Cluster answers GET /v1/cluster.
type Cluster struct {
	ClusterID string   `json:"cluster_id"`
	Leader    uint64   `json:"leader"`
	Term      uint64   `json:"term"`
	Members   []Member `json:"members"`
	Self      Self     `json:"self"`
}

// Member returns the member with the given id.
func (c *Cluster) Member(id uint64) (Member, bool) {
	for _, m := range c.Members {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// VotersRequest is the body of PUT /v1/cluster/voters.
type VotersRequest struct {
	Voters []uint64 `json:"voters"`
}

// ClientAddrRequest is the body of PUT /v1/cluster/members/{id}/client-addr:
// a member publishing the address it serves clients on. Members send it to
// the leader themselves; an operator rarely needs it.
type ClientAddrRequest struct {
	ClientAddr string `json:"client_addr"`
}

// TransferRequest is the body of POST /v1/cluster/transfer-leadership. ID 0
// lets the leader choose the most caught-up voter.
type TransferRequest struct {
	ID uint64 `json:"id"`
}

// TransferResponse names the member that leads after a transfer.
type TransferResponse struct {
	Leader uint64 `json:"leader"`
}

// SnapshotResponse answers POST /v1/cluster/snapshot.
type SnapshotResponse struct {
	Index uint64 `json:"index"`
}

// HealthResponse answers /healthz and /readyz when they succeed.
type HealthResponse struct {
	Status string `json:"status"`
}

// Operations of a batch (BatchOp.Op).
const (
	BatchPut    = "put"
	BatchAppend = "append"
	BatchDelete = "delete"
	BatchGet    = "get"
)

// BatchRequest is the body of POST /v1/batch[?consistency=level]: several
// independent single-key operations in one HTTP request, each answered on
// its own as if sent alone. They are concurrent with each other (no order
// among them is promised); the gets are read at the request's consistency
// level. The Go client sends one when calls queue up behind others.
type BatchRequest struct {
	Ops []BatchOp `json:"ops"`
}

// BatchOp is one operation of a batch. Value is base64 in JSON (binary
// safe). IfMatch (a revision) and IfNoneMatch are the headers of a single
// write; IdempotencyKey is its Idempotency-Key.
type BatchOp struct {
	Op             string `json:"op"`
	Key            string `json:"key"`
	Value          []byte `json:"value,omitempty"`
	IfMatch        uint64 `json:"if_match,omitempty"`
	IfNoneMatch    bool   `json:"if_none_match,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// BatchResponse answers a batch with one result per op, in order.
type BatchResponse struct {
	Results []BatchResult `json:"results"`
}

// BatchResult is one op's answer: Status is the HTTP status it would have
// had alone; Code and Error are set when it failed; Index for a write, Rev
// (the ETag's revision) and Value for a get.
type BatchResult struct {
	Status int    `json:"status"`
	Code   string `json:"code,omitempty"`
	Error  string `json:"error,omitempty"`
	Index  uint64 `json:"index,omitempty"`
	Rev    uint64 `json:"rev,omitempty"`
	Value  []byte `json:"value,omitempty"`
}

// FormatETag renders a revision as an ETag: "<rev>".
func FormatETag(rev uint64) string { return `"` + strconv.FormatUint(rev, 10) + `"` }

// ParseETag parses "<rev>" (quotes required, as in docs/api.md).
func ParseETag(s string) (uint64, bool) {
	s = strings.TrimSpace(s)
	if len(s) < 3 || s[0] != '"' || s[len(s)-1] != '"' {
		return 0, false
	}
	rev, err := strconv.ParseUint(s[1:len(s)-1], 10, 64)
	if err != nil || rev == 0 {
		return 0, false
	}
	return rev, true
}
