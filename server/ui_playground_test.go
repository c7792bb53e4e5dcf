package server

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/playground"
)

// TestPlaygroundServed shows that /ui/playground/ serves the playground's
// page and, when the binary has it, the WebAssembly module (gzipped for a
// browser that asks, revalidated by ETag); without it, the module's path
// says how to build it.
func TestPlaygroundServed(t *testing.T) {
	s := &Server{}
	get := func(path string, hdr ...string) *http.Response {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		s.serveUI(w, req)
		return w.Result()
	}
	if resp := get(PathPlayground); resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != PathPlayground+"/" {
		t.Fatalf("%s: %s to %q, want a redirect to the folder", PathPlayground, resp.Status, resp.Header.Get("Location"))
	}
	resp := get(PathPlayground + "/")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `<script src="app.js">`) {
		t.Fatalf("%s/: %s\n%s", PathPlayground, resp.Status, body)
	}
	for _, f := range []string{"app.js", "i18n.js", "style.css"} {
		if resp := get(PathPlayground + "/" + f); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s", f, resp.Status)
		}
	}
	if resp := get(PathPlayground + "/nope.js"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("nope.js: %s", resp.Status)
	}
	wasm := PathPlayground + "/" + playground.ModuleName
	resp = get(wasm, "Accept-Encoding", "gzip")
	if !playground.HasModule() {
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "make build") {
			t.Fatalf("module absent: %s %q, want 404 saying how to build it", resp.Status, body)
		}
		t.Log("this binary has no playground module (make playground embeds it); checked the 404")
		return
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("module: %s, encoding %q", resp.Status, resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 4)
	if _, err := io.ReadFull(zr, head); err != nil || string(head) != "\x00asm" {
		t.Fatalf("module does not start with the wasm magic: %q %v", head, err)
	}
	if resp := get(wasm, "If-None-Match", resp.Header.Get("ETag")); resp.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation: %s, want 304", resp.Status)
	}
}
