package server

import (
	"hash/crc32"
	"net/http"
	"strconv"
	"sync"

	"github.com/raftkv/raftkv/node"
	pb "github.com/raftkv/raftkv/raftpb"
)

// PathDebugApplied answers GET with the checksums of the commands this
// member applied most recently, for black-box tests (test/cluster) that
// check State Machine Safety from outside: every member must have applied
// the same command at each index. Read-only, bounded, and no secret: a
// CRC32C of each command, not the command.
//
//	GET /debug/applied?from=N  →  {"first":F,"crc":[c_F, c_F+1, ...]}
//
// F is the larger of N and the oldest index still remembered; the list
// runs to the last applied index, in index order, with no gaps (an index
// a snapshot skipped, or one not a command, has no entry and restarts the
// list: see appliedLog.record).
const PathDebugApplied = "/debug/applied"

// appliedLogEntries bounds the remembered checksums (4 bytes each).
const appliedLogEntries = 1 << 16

// appliedLog is a ring of the checksums of the last applied commands.
// Apply runs on the node's apply goroutine; the handler reads under mu.
type appliedLog struct {
	mu    sync.Mutex
	first pb.Index // index of crc[0]; 0 while empty
	crc   []uint32 // contiguous indexes first, first+1, ...
}

// record notes cmd applied at index. A jump (a snapshot restored, or a
// restart) starts the list afresh so that it never has gaps.
func (l *appliedLog) record(index pb.Index, cmd []byte) {
	sum := crc32.Checksum(cmd, crcTable)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.first == 0 || index != l.first+pb.Index(len(l.crc)) {
		l.first, l.crc = index, l.crc[:0]
	}
	if len(l.crc) == appliedLogEntries {
		copy(l.crc, l.crc[appliedLogEntries/2:])
		l.crc = l.crc[:appliedLogEntries/2]
		l.first += appliedLogEntries / 2
	}
	l.crc = append(l.crc, sum)
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// recordingFSM passes everything to the store and notes each Apply.
type recordingFSM struct {
	node.FSM
	log *appliedLog
}

func (f recordingFSM) Apply(index pb.Index, cmd []byte) any {
	f.log.record(index, cmd)
	return f.FSM.Apply(index, cmd)
}

func (s *Server) debugApplied(w http.ResponseWriter, r *http.Request) {
	from, _ := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
	l := s.applied
	l.mu.Lock()
	first := max(l.first, pb.Index(from))
	var out []uint32
	if l.first != 0 && first < l.first+pb.Index(len(l.crc)) {
		out = append(out, l.crc[first-l.first:]...)
	}
	l.mu.Unlock()
	s.writeJSON(w, http.StatusOK, struct {
		First uint64   `json:"first"`
		CRC   []uint32 `json:"crc"`
	}{uint64(first), out})
}
