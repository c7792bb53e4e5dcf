// Package stagetrace timestamps the stages a write passes through on its
// way from a client's request to the answer: the leader's hand-offs, the
// AppendEntries and its acknowledgement on the wire, each member's WAL
// write and fdatasync, the commit and the apply. bench/stages joins the
// marks of every member of a cluster into a stage-by-stage account of a
// single client's put.
//
// The marks are compiled in only with the build tag stagetrace, and are
// recorded only when RAFTKV_STAGES_DIR names a directory; without the tag
// Mark is an empty function and every call site costs nothing. A mark
// carries the log index it reached ("entries up to index"), 0 where the
// stage knows none (a request before it is proposed, an answer after it
// is applied), and the peer a message went to or came from.
package stagetrace

// Stage is one point on a write's path.
type Stage uint8

// The stages, in the order a replicated write reaches them.
const (
	RequestRead     Stage = iota + 1 // the server read a request (index 0)
	Proposed                         // the leader appended proposals up to index
	AppendSent                       // the writer began writing an AppendEntries with entries up to index to peer
	AppendReceived                   // an AppendEntries with entries up to index was read from peer
	AppendStepped                    // the run loop stepped that AppendEntries into the core
	PersistStart                     // the persister began writing entries up to index
	PersistDone                      // and they are durable (written and fdatasynced)
	AckSent                          // the writer began writing an acknowledgement of entries up to index to peer
	AckReceived                      // an acknowledgement up to index was read from peer
	AckStepped                       // the run loop stepped that acknowledgement into the core
	Committed                        // entries up to index were handed to the applier, committed
	Applied                          // entries up to index were applied to the state machine
	ResponseWritten                  // the server wrote an answer (index 0)
	stageEnd
)

var names = [stageEnd]string{
	RequestRead: "request-read", Proposed: "proposed", AppendSent: "append-sent",
	AppendReceived: "append-received", AppendStepped: "append-stepped", PersistStart: "persist-start",
	PersistDone: "persist-done", AckSent: "ack-sent", AckReceived: "ack-received", AckStepped: "ack-stepped",
	Committed: "committed", Applied: "applied", ResponseWritten: "response-written",
}

func (s Stage) String() string {
	if s > 0 && s < stageEnd {
		return names[s]
	}
	return "unknown"
}

// ParseStage is the stage named name, as String prints it.
func ParseStage(name string) (Stage, bool) {
	for s := RequestRead; s < stageEnd; s++ {
		if names[s] == name {
			return s, true
		}
	}
	return 0, false
}

// DirEnv names the directory the marks are written to, one file per
// process: stages-<pid>.txt, a line per mark: "unixnano stage index peer".
const DirEnv = "RAFTKV_STAGES_DIR"
