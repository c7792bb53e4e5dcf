package playground

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/sim"
)

// The playground is tested in headless Chromium, driven over the DevTools
// protocol (cdp_test.go): the test builds the WebAssembly module, serves
// the folder as make playground writes it, and calls the page's
// window.raftkvPlayground and window.playgroundUI. Screenshots go to
// results/playground/, or to $RAFTKV_PLAYGROUND_SHOTS (make
// playground-shots renews docs/img with it).

var site struct {
	once sync.Once
	dir  string
	err  error
}

// buildSite builds the module as make playground does (with the mutation
// tag) and assembles the static folder, once per test binary.
func buildSite(t *testing.T) string {
	t.Helper()
	site.once.Do(func() {
		dir, err := os.MkdirTemp("", "raftkv-playground-")
		if err != nil {
			site.err = err
			return
		}
		site.dir = dir
		build := exec.Command("go", "build", "-tags", "mutation", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, ModuleName),
			"github.com/raftkv/raftkv/cmd/playground")
		build.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm", "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			site.err = fmt.Errorf("building the module: %v\n%s", err, out)
			return
		}
		root, err := exec.Command("go", "env", "GOROOT").Output()
		if err != nil {
			site.err = fmt.Errorf("go env GOROOT: %v", err)
			return
		}
		goroot := strings.TrimSpace(string(root))
		var wasmExec []byte
		for _, p := range []string{"lib/wasm/wasm_exec.js", "misc/wasm/wasm_exec.js"} {
			if wasmExec, err = os.ReadFile(filepath.Join(goroot, p)); err == nil {
				break
			}
		}
		if err != nil {
			site.err = fmt.Errorf("wasm_exec.js: %v", err)
			return
		}
		files := map[string][]byte{"wasm_exec.js": wasmExec}
		for _, name := range []string{"index.html", "app.js", "i18n.js", "style.css"} {
			data, err := fs.ReadFile(os.DirFS("web"), name)
			if err != nil {
				site.err = err
				return
			}
			files[name] = data
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				site.err = err
				return
			}
		}
	})
	if site.err != nil {
		t.Fatal(site.err)
	}
	return site.dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if site.dir != "" {
		os.RemoveAll(site.dir)
	}
	os.Exit(code)
}

func serveSite(t *testing.T) string {
	srv := httptest.NewServer(http.FileServer(http.Dir(buildSite(t))))
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

func shotDir(t *testing.T) string {
	dir := os.Getenv("RAFTKV_PLAYGROUND_SHOTS")
	if dir == "" {
		dir = filepath.Join("..", "results", "playground")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (b *browser) state() (sim.PlaygroundState, string) {
	b.t.Helper()
	var text string
	b.eval(`raftkvPlayground.state()`, &text)
	var st sim.PlaygroundState
	if err := json.Unmarshal([]byte(text), &st); err != nil {
		b.t.Fatalf("state(): %v\n%s", err, text)
	}
	return st, text
}

// do evaluates a call that returns null on success or an error message.
func (b *browser) do(expr string) {
	b.t.Helper()
	var errText *string
	b.eval(expr, &errText)
	if errText != nil {
		b.t.Fatalf("%s: %s", expr, *errText)
	}
}

func leaders(st sim.PlaygroundState) []uint64 {
	var out []uint64
	for _, m := range st.Members {
		if m.Role == "leader" {
			out = append(out, m.ID)
		}
	}
	return out
}

func termAt(m sim.PlaygroundMember, i uint64) uint64 {
	for _, c := range m.Log {
		if c.Index == i {
			return c.Term
		}
	}
	return 0
}

// TestPlaygroundInBrowser shows, in a real browser, that the page loads the
// module; stepping a fresh cluster elects exactly one leader; crashing it
// yields a new leader within 2E+4D ticks of virtual time (a randomized
// election timeout, then a PreVote and a vote round); the Figure 8 scene
// reaches the paper's states (c) and (d); a saved link replays to an
// identical state(); a what-if scene makes the page name the property it
// breaks; and undo returns to the state before it.
func TestPlaygroundInBrowser(t *testing.T) {
	bin := chromium(t)
	url := serveSite(t)
	b := startBrowser(t, bin, "--lang=en-US")
	b.open(url)
	b.waitReady()
	var load struct {
		Ms    float64 `json:"ms"`
		Bytes int     `json:"bytes"`
	}
	b.eval(`window.raftkvPlaygroundLoad`, &load)
	t.Logf("module %d bytes, fetched, compiled and started in %.0f ms", load.Bytes, load.Ms)

	b.do(`playgroundUI.reset({seed: 1, voters: 5, spares: 0}) ? null : "reset failed"`)
	st, _ := b.state()
	if got := leaders(st); len(got) != 0 || st.Now != 0 {
		t.Fatalf("fresh cluster: leaders %v at tick %d", got, st.Now)
	}
	b.do(`raftkvPlayground.step(400)`)
	st, _ = b.state()
	if got := leaders(st); len(got) != 1 {
		t.Fatalf("after 400 events: leaders %v, want exactly one", got)
	}
	var drawn int
	b.eval(`playgroundUI.refresh(), document.querySelectorAll('#ring g.server[data-role="leader"]').length`, &drawn)
	if drawn != 1 {
		t.Fatalf("the page draws %d leaders", drawn)
	}

	// Play runs virtual time on its own; pause stops it.
	b.eval(`document.getElementById("play").click()`, nil)
	time.Sleep(1500 * time.Millisecond)
	b.eval(`document.getElementById("play").click()`, nil)
	played, _ := b.state()
	if played.Now <= st.Now || len(leaders(played)) != 1 {
		t.Fatalf("after playing for 1.5 s: tick %d (from %d), leaders %v", played.Now, st.Now, leaders(played))
	}
	st = played
	old, t0 := st.Leader, st.Now
	b.do(fmt.Sprintf(`raftkvPlayground.act({op: "crash", id: %d})`, old))
	bound := uint64(2*sim.PlaygroundElectionTicks + 4*sim.PlaygroundMaxDelay)
	b.eval(fmt.Sprintf(`(() => { const end = %d;
		for (;;) { const s = JSON.parse(raftkvPlayground.state());
			if (s.leader || s.now > end) return s.now; raftkvPlayground.step(1); } })()`, t0+bound), nil)
	st, _ = b.state()
	if st.Leader == 0 || st.Leader == old || st.Now-t0 > bound {
		t.Fatalf("no new leader within %d ticks of crashing %d (leader %d at tick %d, crash at %d)", bound, old, st.Leader, st.Now, t0)
	}
	t.Logf("leader S%d crashed at tick %d; S%d elected at tick %d, %d ticks later (bound %d)", old, t0, st.Leader, st.Now, st.Now-t0, bound)

	uiActions(t, b)

	shots := shotDir(t)
	b.do(`playgroundUI.startScene("election")`)
	b.do(`playgroundUI.nextStage()`)
	b.do(`raftkvPlayground.run(3)`)
	b.eval(`playgroundUI.refresh()`, nil)
	b.screenshot(filepath.Join(shots, "playground-election.png"))

	b.do(`playgroundUI.startScene("replication")`)
	b.do(`playgroundUI.nextStage()`)
	b.do(`raftkvPlayground.run(1)`)
	b.eval(`playgroundUI.refresh()`, nil)
	b.screenshot(filepath.Join(shots, "playground-replication.png"))

	// Figure 8.
	b.do(`playgroundUI.startScene("figure8")`)
	b.do(`playgroundUI.nextStage()`)
	b.do(`playgroundUI.nextStage()`)
	st, _ = b.state()
	s1 := st.Members[0]
	if s1.Role != "leader" || s1.Term != 4 || s1.Commit >= 3 {
		t.Fatalf("Figure 8 (c): S1 %s of term %d with commit %d; want the term-4 leader, index 3 not committed", s1.Role, s1.Term, s1.Commit)
	}
	for _, m := range st.Members[:3] {
		if termAt(m, 3) != 2 {
			t.Fatalf("Figure 8 (c): S%d holds index 3 of term %d, want 2 (a majority holds it)", m.ID, termAt(m, 3))
		}
	}
	var narration string
	b.eval(`document.getElementById("narration-text").textContent`, &narration)
	if !strings.HasPrefix(narration, "(c)") || !strings.Contains(narration, "elected for term 4") {
		t.Errorf("narration at (c): %q", narration)
	}
	b.screenshot(filepath.Join(shots, "playground-figure8.png"))
	b.do(`playgroundUI.nextStage()`)
	st, _ = b.state()
	if st.Leader != 5 || st.Violation != "" {
		t.Fatalf("Figure 8 (d): leader %d, violation %q", st.Leader, st.Violation)
	}
	for _, m := range st.Members[1:] {
		if termAt(m, 3) != 3 {
			t.Fatalf("Figure 8 (d): S%d holds index 3 of term %d, want S5's term 3", m.ID, termAt(m, 3))
		}
	}
	for _, c := range st.Checks {
		if !c.OK {
			t.Fatalf("Figure 8 (d): %s reported broken", c.Name)
		}
	}

	// More actions, then the link.
	b.do(`raftkvPlayground.run(7)`)
	b.do(`raftkvPlayground.act({op: "cut", id: 2, to: 3})`)
	b.do(`raftkvPlayground.act({op: "propose", n: 3})`)
	b.do(`raftkvPlayground.step(5)`)
	var msgs int
	b.eval(`JSON.parse(raftkvPlayground.state()).messages.length`, &msgs)
	if msgs > 0 {
		b.do(`raftkvPlayground.act({op: "drop", msg: JSON.parse(raftkvPlayground.state()).messages[0].id})`)
	}
	var link string
	b.eval(`playgroundUI.link()`, &link)
	_, want := b.state()
	b.open(link)
	b.waitReady()
	_, got := b.state()
	if got != want {
		t.Fatalf("the link replays to a different state:\nwant %s\ngot  %s", want, got)
	}
	t.Logf("link of %d characters replays to an identical state (%d bytes of JSON)", len(link), len(got))

	b.do(`playgroundUI.startScene("joint")`)
	for range 2 {
		b.do(`playgroundUI.nextStage()`)
	}
	st, _ = b.state()
	if lead := st.Members[st.Leader-1]; len(lead.Conf.Outgoing) == 0 {
		t.Fatalf("joint scene, stage 3: configuration %+v is not joint", lead.Conf)
	}
	b.eval(`playgroundUI.refresh()`, nil)
	b.screenshot(filepath.Join(shots, "playground-joint.png"))

	b.do(`playgroundUI.startScene("snapshot")`)
	b.do(`playgroundUI.nextStage()`)
	b.do(`playgroundUI.nextStage()`)
	var sawSnapshot bool
	b.eval(`JSON.parse(raftkvPlayground.state()).messages.some((m) => m.type === "InstallSnapshot")`, &sawSnapshot)
	if !sawSnapshot {
		t.Fatal("snapshot scene: no InstallSnapshot in flight after the follower restarted")
	}
	b.screenshot(filepath.Join(shots, "playground-snapshot.png"))
	b.do(`playgroundUI.nextStage()`)
	st, _ = b.state()
	for _, m := range st.Members {
		if m.Applied != st.Members[st.Leader-1].Applied || m.Value == "" {
			t.Fatalf("snapshot scene: S%d applied %d (x=%q); the leader %d", m.ID, m.Applied, m.Value, st.Members[st.Leader-1].Applied)
		}
	}

	// A what-if: the checkers stop the run and the page names the property.
	b.do(`playgroundUI.startScene("whatif-lost-log")`)
	b.do(`playgroundUI.nextStage()`)
	_, beforeLast := b.state()
	b.do(`playgroundUI.nextStage()`)
	var broken []string
	b.eval(`[...document.querySelectorAll("#checks li.bad")].map((li) => li.dataset.check)`, &broken)
	var report string
	b.eval(`document.querySelector("#checks .violation").textContent`, &report)
	if len(broken) != 1 || broken[0] != "Leader Completeness" || !strings.Contains(report, "leader 3 of term") {
		t.Fatalf("what-if scene: page shows broken %v, report %q", broken, report)
	}
	b.eval(`document.getElementById("whatif").open = true`, nil)
	b.screenshot(filepath.Join(shots, "playground-whatif.png"))
	// What if the core committed by counting an older term's entry? The
	// module is built with the mutation tag; the page offers the bug.
	b.do(`playgroundUI.startScene("whatif-figure8")`)
	b.do(`playgroundUI.nextStage()`)
	b.eval(`playgroundUI.nextStage()`, nil) // stops at the violation and reports it
	b.eval(`[...document.querySelectorAll("#checks li.bad")].map((li) => li.dataset.check)`, &broken)
	var banner string
	b.eval(`document.querySelector("#checks .mutation").textContent`, &banner)
	if len(broken) != 1 || broken[0] != "commitment rule" || !strings.Contains(banner, "older term") {
		t.Fatalf("Figure 8 what-if: page shows broken %v, banner %q", broken, banner)
	}
	b.screenshot(filepath.Join(shots, "playground-whatif-figure8.png"))
	// Every bug the module offers has words on the page.
	var unnamed []string
	b.eval(`[...document.querySelectorAll("#mutation option")].map((o) => o.textContent).filter((s) => s.startsWith("mut-"))`, &unnamed)
	var offered int
	b.eval(`document.querySelectorAll("#mutation option").length`, &offered)
	if len(unnamed) > 0 || offered < 2 {
		t.Fatalf("what-if menu: %d bugs offered, without a label: %v (add them to i18n.js)", offered-1, unnamed)
	}
	b.do(`playgroundUI.startScene("whatif-lost-log")`)
	b.do(`playgroundUI.nextStage()`)
	b.do(`playgroundUI.nextStage()`)

	// Undo replays all but the last action: the state before the violation.
	b.eval(`playgroundUI.undo()`, nil)
	if _, undone := b.state(); undone != beforeLast {
		t.Fatalf("undo: state differs from the one before the last stage:\nwant %s\ngot  %s", beforeLast, undone)
	}
	t.Logf("screenshots in %s", shots)
}

// uiActions breaks the cluster through the page's own controls, as a
// learner clicks them: a link cut and healed, one direction cut by a
// Shift-drag, a server crashed and restarted, a message dropped, a value
// proposed.
func uiActions(t *testing.T, b *browser) {
	t.Helper()
	click := func(selector string) {
		t.Helper()
		var found bool
		b.eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false;
			e.dispatchEvent(new MouseEvent("click", {bubbles: true})); return true; })()`, selector), &found)
		if !found {
			t.Fatalf("nothing on the page matches %s", selector)
		}
	}
	b.eval(`playgroundUI.refresh()`, nil)
	click(`#ring line.link[data-a="1"][data-b="2"]`)
	st, _ := b.state()
	if len(st.Cut) != 2 {
		t.Fatalf("clicking the link S1-S2: cut links %v, want both directions", st.Cut)
	}
	click(`#ring line.link[data-a="1"][data-b="2"]`)
	if st, _ = b.state(); len(st.Cut) != 0 {
		t.Fatalf("clicking it again: cut links %v, want none", st.Cut)
	}
	// Shift-drag from S1 to S3 cuts S1 -> S3 only; a click on the line heals it.
	b.eval(`(() => { const g = (id) => document.querySelector('#ring g.server[data-id="' + id + '"]');
		g(1).dispatchEvent(new MouseEvent("mousedown", {bubbles: true}));
		g(3).dispatchEvent(new MouseEvent("mouseup", {bubbles: true, shiftKey: true})); })()`, nil)
	if st, _ = b.state(); len(st.Cut) != 1 || st.Cut[0] != [2]uint64{1, 3} {
		t.Fatalf("Shift-drag S1 to S3: cut links %v, want [[1 3]]", st.Cut)
	}
	click(`#ring line.link[data-a="1"][data-b="3"]`)
	if st, _ = b.state(); len(st.Cut) != 0 {
		t.Fatalf("clicking the one-way cut link: cut links %v, want none", st.Cut)
	}
	click(`#ring g.server[data-id="2"]`)
	click(`#panel button[data-act="crash"]`)
	if st, _ = b.state(); st.Members[1].Up {
		t.Fatal("the crash button left S2 running")
	}
	click(`#panel button[data-act="restart"]`)
	if st, _ = b.state(); !st.Members[1].Up {
		t.Fatal("the restart button left S2 down")
	}
	b.do(`raftkvPlayground.run(6)`)
	b.eval(`playgroundUI.refresh()`, nil)
	before, _ := b.state()
	if len(before.Messages) == 0 {
		t.Fatal("no message in flight to drop")
	}
	id := before.Messages[0].ID
	click(fmt.Sprintf(`#ring g.msgg[data-id="%d"]`, id))
	click(`#panel button[data-act="drop"]`)
	st, _ = b.state()
	for _, m := range st.Messages {
		if m.ID == id {
			t.Fatalf("message %d still in flight after Drop", id)
		}
	}
	click(`#ring`) // deselect: the panel offers proposals to the leader
	last := st.Members[st.Leader-1].Last
	click(`#panel button[data-act="propose"]`)
	if st, _ = b.state(); st.Members[st.Leader-1].Last != last+1 {
		t.Fatalf("Propose: the leader's log ends at %d, want %d", st.Members[st.Leader-1].Last, last+1)
	}
}

// TestPlaygroundChinese shows that a browser whose language is Chinese
// gets the page in Chinese, with the glossary's terms.
func TestPlaygroundChinese(t *testing.T) {
	bin := chromium(t)
	url := serveSite(t)
	b := startBrowser(t, bin, "--lang=zh-CN")
	b.open(url + "?scene=figure8")
	b.waitReady()
	var lang, title string
	b.eval(`playgroundUI.lang()`, &lang)
	b.eval(`document.querySelector("h1").textContent`, &title)
	if lang != "zh" || title != "Raft 演练场" {
		t.Fatalf("language %q, title %q; want zh and Raft 演练场", lang, title)
	}
	var opened string
	b.eval(`document.getElementById("narration-text").textContent`, &opened)
	if !strings.HasPrefix(opened, "(a)") {
		t.Fatalf("?scene=figure8 opened with narration %q, want stage (a)", opened)
	}
	b.do(`playgroundUI.nextStage()`)
	b.do(`playgroundUI.nextStage()`)
	var page string
	b.eval(`document.body.innerText + " " + [...document.querySelectorAll("#ring text")].map((e) => e.textContent).join(" ")`, &page)
	for _, want := range []string{"领导者", "跟随者", "任期", "提交索引", "选举安全", "领导者完整性", "状态机安全", "图 8", "下一步"} {
		if !strings.Contains(page, want) {
			t.Errorf("the Chinese page lacks %q", want)
		}
	}
	b.screenshot(filepath.Join(shotDir(t), "playground-figure8.zh-CN.png"))
}
