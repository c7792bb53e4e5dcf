package server

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The live view is tested in a real browser: headless Chromium (Debian's
// `chromium` package) loads /ui/ from a running cluster, runs the page's
// script, and the test reads the DOM it rendered. A screenshot is kept
// under results/ui/ (RAFTKV_RESULTS_DIR overrides) for people to look at.

// chromiumPath finds the browser, or skips (fails when CI is set): the
// rest of the suite must not need one.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("RAFTKV_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const msg = "no headless browser found: install Debian's chromium (apt-get install -y chromium) or set RAFTKV_CHROMIUM to run the browser test of /ui/"
	if os.Getenv("CI") != "" {
		// CI installs chromium (.ci/run); a test that silently did not
		// run there would pass unseen.
		t.Fatal("CI is set, but " + msg)
	}
	t.Skip(msg)
	return ""
}

// runChromium runs one headless session; virtual time lets the page's
// polling run to completion before the DOM is dumped or the shot taken.
func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--hide-scrollbars", "--user-data-dir=" + t.TempDir(),
		"--virtual-time-budget=4000", "--window-size=1280,960"}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr)
	}
	return out
}

func resultsDir(t *testing.T) string {
	dir := os.Getenv("RAFTKV_RESULTS_DIR")
	if dir == "" {
		dir = filepath.Join("..", "results")
	}
	dir = filepath.Join(dir, "ui")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("results dir: %v", err)
	}
	return dir
}

var memberBoxRE = regexp.MustCompile(`<div class="member[^"]*"[^>]*>`)
var attrRE = regexp.MustCompile(`data-(id|role|leader)="([^"]*)"`)

// TestUIInBrowser shows that the live view, served by a follower of a
// three-member cluster and rendered by a real browser, draws one box per
// member, marks exactly the leader, and draws every member's log.
func TestUIInBrowser(t *testing.T) {
	bin := chromiumPath(t)
	c := newCluster(t, 3, nil)
	lead := c.leader()
	for i := 0; i < 12; i++ {
		expect(t, put(c, lead, fmt.Sprintf("k%d", i), "v"), http.StatusOK, "")
	}
	f := c.follower()
	waitFullView(t, c, f)

	dom := string(runChromium(t, bin, "--dump-dom", url(f, PathUI+"/")))
	boxes := memberBoxRE.FindAllString(dom, -1)
	if len(boxes) != 3 {
		t.Fatalf("page shows %d member boxes, want 3; DOM:\n%s", len(boxes), dom)
	}
	leaders := 0
	for _, b := range boxes {
		attrs := map[string]string{}
		for _, m := range attrRE.FindAllStringSubmatch(b, -1) {
			attrs[m[1]] = m[2]
		}
		if attrs["leader"] == "true" {
			leaders++
			if attrs["id"] != fmt.Sprint(lead.cfg.ID) || attrs["role"] != "leader" {
				t.Errorf("box %s is marked leader; the leader is %d", b, lead.cfg.ID)
			}
		} else if attrs["role"] != "follower" {
			t.Errorf("box %s: want a follower", b)
		}
	}
	if leaders != 1 {
		t.Errorf("%d boxes marked leader, want 1", leaders)
	}
	for _, want := range []string{`id="member-count">3<`, fmt.Sprintf(`id="leader-id">%d<`, lead.cfg.ID),
		`class="logrow`, `class="cell`, `docs/guide.md#`} {
		if !regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(dom) {
			t.Errorf("page lacks %s", want)
		}
	}

	shot := filepath.Join(resultsDir(t), "ui-3-members.png")
	abs, _ := filepath.Abs(shot)
	runChromium(t, bin, "--screenshot="+abs, url(f, PathUI+"/"))
	if fi, err := os.Stat(abs); err != nil || fi.Size() == 0 {
		t.Fatalf("no screenshot at %s: %v", abs, err)
	}
	t.Logf("screenshot: %s", abs)

	// A member down: the others go on, and its box says so.
	var down uint64
	for id := range c.servers {
		if id != lead.cfg.ID && id != f.cfg.ID {
			down = id
		}
	}
	c.kill(down)
	for i := 0; i < 20; i++ {
		expect(t, put(c, lead, fmt.Sprintf("more%d", i), "v"), http.StatusOK, "")
	}
	shot = filepath.Join(resultsDir(t), "ui-member-down.png")
	abs, _ = filepath.Abs(shot)
	runChromium(t, bin, "--screenshot="+abs, url(f, PathUI+"/"))
	dom = string(runChromium(t, bin, "--dump-dom", url(f, PathUI+"/")))
	if !regexp.MustCompile(fmt.Sprintf(`data-id="%d" data-role="unreachable"`, down)).MatchString(dom) {
		t.Errorf("member %d is down, its box does not say unreachable; DOM:\n%s", down, dom)
	}
	t.Logf("screenshot: %s", abs)
}

// waitFullView waits until s's view has every member's state: followers
// announce their client addresses to the leader shortly after it is known.
func waitFullView(t *testing.T, c *tcluster, s *Server) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		v := decode[DebugView](t, expect(t, c.do(http.MethodGet, url(s, PathDebugView), nil), http.StatusOK, ""))
		full := len(v.Members) == len(c.servers)
		for _, m := range v.Members {
			full = full && m.State != nil
		}
		if full {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the view never showed every member's state")
}

// TestUIGuideFollowsBrowserLanguage shows that the live view links each
// member to the Chinese edition of the guide when the browser's first
// language is Chinese, and to the English one otherwise.
func TestUIGuideFollowsBrowserLanguage(t *testing.T) {
	bin := chromiumPath(t)
	c := newCluster(t, 3, nil)
	f := c.follower()
	waitFullView(t, c, f)
	for _, lang := range []struct{ flag, want, not string }{
		{"zh-CN", `docs/guide.zh-CN.md#`, `docs/guide.md#`},
		{"en-US", `docs/guide.md#`, `docs/guide.zh-CN.md#`},
	} {
		dom := string(runChromium(t, bin, "--lang="+lang.flag, "--accept-lang="+lang.flag,
			"--dump-dom", url(f, PathUI+"/")))
		if !strings.Contains(dom, lang.want) || strings.Contains(dom, lang.not) {
			t.Errorf("browser language %s: the page should link %s and not %s; DOM:\n%s", lang.flag, lang.want, lang.not, dom)
		}
	}
}
