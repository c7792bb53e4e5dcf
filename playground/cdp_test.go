package playground

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A minimal client of the Chrome DevTools Protocol over
// --remote-debugging-pipe: chromium reads NUL-terminated JSON commands on
// fd 3 and writes answers and events on fd 4. It is enough to open a
// page, evaluate JavaScript in it and take screenshots, with nothing
// beyond the standard library.
type browser struct {
	t       *testing.T
	cmd     *exec.Cmd
	in      io.WriteCloser
	out     *bufio.Reader
	nextID  int
	stderr  *strings.Builder
	session string
}

// chromium finds the browser. Without one the test skips, except under CI
// (CI set, as .ci/run does), where a missing browser is a failure: .ci/run
// installs it.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("RAFTKV_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no headless browser found: install Debian's chromium (apt-get install -y chromium) or set RAFTKV_CHROMIUM"
	if os.Getenv("CI") != "" {
		t.Fatal("CI is set, but " + msg)
	}
	t.Skip(msg)
	return ""
}

func startBrowser(t *testing.T, bin string, args ...string) *browser {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	toChrome, chromeIn, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	chromeOut, fromChrome, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--hide-scrollbars", "--remote-debugging-pipe", "--user-data-dir=" + t.TempDir(), "about:blank"}
	for _, a := range args {
		// Headless chromium on Linux leaves navigator.language alone under
		// --lang; --accept-lang sets it.
		if l, ok := strings.CutPrefix(a, "--lang="); ok {
			base = append(base, "--accept-lang="+l)
		}
	}
	cmd := exec.CommandContext(ctx, bin, append(args, base...)...)
	cmd.ExtraFiles = []*os.File{toChrome, fromChrome} // fd 3: its input, fd 4: its output
	b := &browser{t: t, cmd: cmd, in: chromeIn, out: bufio.NewReader(chromeOut), stderr: &strings.Builder{}}
	cmd.Stderr = b.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	toChrome.Close()
	fromChrome.Close()
	t.Cleanup(func() {
		b.in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return b
}

// call sends one command and waits for its answer, skipping events.
func (b *browser) call(method string, params any, result any) error {
	b.nextID++
	msg := map[string]any{"id": b.nextID, "method": method, "params": params}
	if b.session != "" && !strings.HasPrefix(method, "Target.") {
		msg["sessionId"] = b.session
	}
	data, _ := json.Marshal(msg)
	if _, err := b.in.Write(append(data, 0)); err != nil {
		return fmt.Errorf("%s: %w (chromium: %s)", method, err, b.stderr)
	}
	for {
		line, err := b.out.ReadBytes(0)
		if err != nil {
			return fmt.Errorf("%s: reading the answer: %w (chromium: %s)", method, err, b.stderr)
		}
		var resp struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(line[:len(line)-1], &resp); err != nil {
			return fmt.Errorf("%s: %w", method, err)
		}
		if resp.ID != b.nextID {
			continue // an event, or the answer to nothing we wait for
		}
		if resp.Error != nil {
			return fmt.Errorf("%s: %s", method, resp.Error.Message)
		}
		if result != nil {
			return json.Unmarshal(resp.Result, result)
		}
		return nil
	}
}

// open makes a new page at url and attaches to it.
func (b *browser) open(url string) {
	b.t.Helper()
	var created struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call("Target.createTarget", map[string]any{"url": "about:blank"}, &created); err != nil {
		b.t.Fatal(err)
	}
	var attached struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call("Target.attachToTarget", map[string]any{"targetId": created.TargetID, "flatten": true}, &attached); err != nil {
		b.t.Fatal(err)
	}
	b.session = attached.SessionID
	if err := b.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": 1280, "height": 1180,
		"deviceScaleFactor": 1, "mobile": false}, nil); err != nil {
		b.t.Fatal(err)
	}
	if err := b.call("Page.navigate", map[string]any{"url": url}, nil); err != nil {
		b.t.Fatal(err)
	}
}

// eval evaluates a JavaScript expression in the page and decodes its
// value into out (if not nil).
func (b *browser) eval(expr string, out any) {
	b.t.Helper()
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception *struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := b.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &res); err != nil {
		b.t.Fatalf("%s: %v", expr, err)
	}
	if e := res.ExceptionDetails; e != nil {
		desc := e.Text
		if e.Exception != nil {
			desc = e.Exception.Description
		}
		b.t.Fatalf("%s: %s", expr, desc)
	}
	if out != nil && len(res.Result.Value) > 0 {
		if err := json.Unmarshal(res.Result.Value, out); err != nil {
			b.t.Fatalf("%s: %v (value %s)", expr, err, res.Result.Value)
		}
	}
}

// waitReady waits until the page has loaded its module.
func (b *browser) waitReady() {
	b.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var ready string
		b.eval(`document.body ? (document.body.dataset.ready || "") : ""`, &ready)
		switch ready {
		case "1":
			return
		case "nowasm":
			b.t.Fatal("the page found no WebAssembly module")
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatal("the playground did not become ready within 60 s")
}

// screenshot writes the page as a PNG.
func (b *browser) screenshot(path string) {
	b.t.Helper()
	var shot struct {
		Data string `json:"data"`
	}
	if err := b.call("Page.captureScreenshot", map[string]any{"format": "png"}, &shot); err != nil {
		b.t.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}
