package server

import (
	"context"
	"crypto/tls"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/node"
	pb "github.com/raftkv/raftkv/raftpb"
)

// The live view of the cluster (/ui/). The page is static, embedded in the
// binary, and polls one endpoint of the member that served it,
// /v1/debug/view. That member gathers every member's state and log window
// itself (/v1/debug/log on each), rather than the browser calling each
// member: members' advertised client addresses are often reachable only
// from inside the cluster's network (container names in a compose file),
// and one origin needs no CORS.
const (
	PathUI        = "/ui"
	PathDebugLog  = "/v1/debug/log"
	PathDebugView = "/v1/debug/view"
	// PathDebugAnnounce is where followers tell the leader their client
	// address (see announceLoop).
	PathDebugAnnounce = "/v1/debug/announce"
	// DefaultDebugLogEntries is the window /v1/debug/log returns when n
	// is not given; node.MaxLogTerms bounds n.
	DefaultDebugLogEntries = 64
	// maxViewMembers bounds the members one view request fans out to.
	maxViewMembers = 32
	// viewFetchTimeout bounds the wait for one member's answer: a member
	// that is down shows as unreachable instead of stalling the page.
	viewFetchTimeout = 800 * time.Millisecond
	// maxDebugLogBytes bounds a member's /v1/debug/log answer we read.
	maxDebugLogBytes = 256 << 10
)

//go:embed ui
var uiFiles embed.FS

var uiHandler = func() http.Handler {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return http.StripPrefix(PathUI+"/", http.FileServerFS(sub))
}()

func (s *Server) serveUI(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == PathUI {
		http.Redirect(w, r, PathUI+"/", http.StatusMovedPermanently)
		return
	}
	if r.URL.Path == PathPlayground || strings.HasPrefix(r.URL.Path, PathPlayground+"/") {
		s.servePlayground(w, r)
		return
	}
	// The page changes with the binary; never let a browser keep an old one.
	w.Header().Set("Cache-Control", "no-cache")
	uiHandler.ServeHTTP(w, r)
}

// DebugLog is the answer of GET /v1/debug/log: one member's state and a
// window of its durable log as index/term pairs.
type DebugLog struct {
	ID            uint64 `json:"id"`
	Role          string `json:"role"`
	Term          uint64 `json:"term"`
	Leader        uint64 `json:"leader"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	SnapshotIndex uint64 `json:"snapshot_index"`
	// FirstIndex..LastIndex is the log on disk; earlier entries are in
	// the snapshot.
	FirstIndex uint64       `json:"first_index"`
	LastIndex  uint64       `json:"last_index"`
	Entries    []DebugEntry `json:"entries"`
	// Progress is the leader's view of each member, on the leader only.
	Progress map[string]DebugProgress `json:"progress,omitempty"`
}

// DebugEntry is one log entry's position.
type DebugEntry struct {
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
}

// DebugProgress is the leader's replication state for one member.
type DebugProgress struct {
	Match    uint64 `json:"match"`
	Next     uint64 `json:"next"`
	State    string `json:"state"`
	Inflight int    `json:"inflight"`
	Lag      uint64 `json:"lag"`
}

// debugLog answers GET /v1/debug/log?from=&n=: n entries (default
// DefaultDebugLogEntries, at most node.MaxLogTerms) from index from
// (default: the last n).
func (s *Server) debugLog(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, err := queryUint(q.Get("from"), 0)
	if err != nil {
		s.fail(w, api.CodeBadRequest, "from: "+err.Error())
		return
	}
	n, err := queryUint(q.Get("n"), DefaultDebugLogEntries)
	if err != nil {
		s.fail(w, api.CodeBadRequest, "n: "+err.Error())
		return
	}
	s.writeJSON(w, http.StatusOK, s.debugLogOf(pb.Index(from), int(min(n, node.MaxLogTerms))))
}

func queryUint(v string, def uint64) (uint64, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a non-negative integer", v)
	}
	return n, nil
}

func (s *Server) debugLogOf(from pb.Index, n int) DebugLog {
	st := s.node.Status()
	win := s.node.LogTerms(from, n)
	d := DebugLog{
		ID: s.cfg.ID, Role: roleName(st.Role), Term: uint64(st.Term), Leader: uint64(st.Lead),
		CommitIndex: uint64(st.Commit), AppliedIndex: uint64(st.Applied),
		SnapshotIndex: uint64(st.SnapshotIndex),
		FirstIndex:    uint64(win.FirstIndex), LastIndex: uint64(win.LastIndex),
		Entries: make([]DebugEntry, len(win.Terms)),
	}
	for i, t := range win.Terms {
		d.Entries[i] = DebugEntry{Index: uint64(win.From) + uint64(i), Term: uint64(t)}
	}
	if len(st.Progress) > 0 {
		d.Progress = make(map[string]DebugProgress, len(st.Progress))
		for id, pr := range st.Progress {
			p := DebugProgress{Match: uint64(pr.Match), Next: uint64(pr.Next), State: pr.State, Inflight: pr.InflightMsgs}
			if st.LastIndex > pr.Match {
				p.Lag = uint64(st.LastIndex - pr.Match)
			}
			d.Progress[strconv.FormatUint(uint64(id), 10)] = p
		}
	}
	return d
}

// DebugView is the answer of GET /v1/debug/view: the cluster as the
// serving member sees it, with every member's own state and log window.
type DebugView struct {
	Self      uint64 `json:"self"`
	ClusterID string `json:"cluster_id"`
	Leader    uint64 `json:"leader"`
	Term      uint64 `json:"term"`
	// From..To is the log window drawn for every member.
	From    uint64            `json:"from"`
	To      uint64            `json:"to"`
	Members []DebugViewMember `json:"members"`
	// Progress is the leader's view of replication, if it answered.
	Progress map[string]DebugProgress `json:"progress,omitempty"`
}

// DebugViewMember is one member: its place in the configuration and, if
// it answered, its own state.
type DebugViewMember struct {
	api.Member
	Error string    `json:"error,omitempty"`
	State *DebugLog `json:"state,omitempty"`
}

// debugView answers GET /v1/debug/view?n=: the window is the last n
// entries (default DefaultDebugLogEntries) of the longest log.
func (s *Server) debugView(w http.ResponseWriter, r *http.Request) {
	n, err := queryUint(r.URL.Query().Get("n"), DefaultDebugLogEntries)
	if err != nil || n == 0 {
		s.fail(w, api.CodeBadRequest, "n: want a positive integer")
		return
	}
	n = min(n, node.MaxLogTerms)
	if r.URL.Query().Get("local") == "" && s.proxyView(w, r, n) {
		return
	}
	st := s.node.Status()
	cv := s.clusterView(st)
	v := DebugView{Self: s.cfg.ID, ClusterID: cv.ClusterID, Leader: cv.Leader, Term: cv.Term}
	for i, m := range cv.Members {
		if i == maxViewMembers {
			break
		}
		if a, ok := s.announced.Load(m.ID); ok {
			m.ClientAddr = a.(string)
		}
		v.Members = append(v.Members, DebugViewMember{Member: m})
	}
	// First round: every member's tail. Logs usually end together, so
	// the tails are the window; members whose tail differs are asked
	// again for the common window.
	s.gatherViews(r.Context(), v.Members, func(*DebugViewMember) (pb.Index, bool) { return 0, true }, int(n))
	var hi uint64
	for _, m := range v.Members {
		if m.State != nil {
			hi = max(hi, m.State.LastIndex)
		}
	}
	v.To = hi
	v.From = 1
	if hi >= n {
		v.From = hi - n + 1
	}
	s.gatherViews(r.Context(), v.Members, func(m *DebugViewMember) (pb.Index, bool) {
		if m.State == nil || m.State.LastIndex < v.From {
			return 0, false // nothing of it in the window, or unreachable
		}
		return pb.Index(v.From), len(m.State.Entries) == 0 || m.State.Entries[0].Index != v.From
	}, int(n))
	for _, m := range v.Members {
		if m.State != nil && m.State.Progress != nil && m.ID == v.Leader {
			v.Progress = m.State.Progress
		}
	}
	s.writeJSON(w, http.StatusOK, v)
}

// gatherViews fetches, concurrently, the log window of every member for
// which want says so.
func (s *Server) gatherViews(ctx context.Context, ms []DebugViewMember, want func(*DebugViewMember) (pb.Index, bool), n int) {
	var wg sync.WaitGroup
	for i := range ms {
		m := &ms[i]
		from, ok := want(m)
		if !ok {
			continue
		}
		if m.ID == s.cfg.ID {
			d := s.debugLogOf(from, n)
			m.State, m.Error = &d, ""
			continue
		}
		if m.ClientAddr == "" {
			m.Error = "no client address published"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := s.fetchDebugLog(ctx, m.ClientAddr, from, n)
			if err != nil {
				m.Error = err.Error()
				return
			}
			m.State, m.Error = d, ""
		}()
	}
	wg.Wait()
}

func (s *Server) fetchDebugLog(ctx context.Context, addr string, from pb.Index, n int) (*DebugLog, error) {
	ctx, cancel := context.WithTimeout(ctx, viewFetchTimeout)
	defer cancel()
	u := fmt.Sprintf("%s://%s%s?from=%d&n=%d", s.scheme, addr, PathDebugLog, from, n)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.peerHTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("answered %s", resp.Status)
	}
	var d DebugLog
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDebugLogBytes)).Decode(&d); err != nil {
		return nil, fmt.Errorf("bad answer: %w", err)
	}
	return &d, nil
}

// newPeerHTTP is the client a member uses to reach other members' client
// addresses: with mutual TLS it presents this member's own certificate.
func newPeerHTTP(cfg *tls.Config) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	if cfg != nil {
		tr.TLSClientConfig = cfg.Clone()
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second,
		// A member answers debug requests itself; a redirect would be a bug.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
