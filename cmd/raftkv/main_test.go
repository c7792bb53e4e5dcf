package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/raftkv/raftkv/api"
)

// TestErrorNamesProgramOnce shows a failed command printing one line that
// starts with the program's name once: the client's errors carry "raftkv:"
// already, and the line used to read "raftkv: raftkv: 404 not_found: ...".
func TestErrorNamesProgramOnce(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(api.HeaderTerm, "1")
		w.Header().Set(api.HeaderLeader, "1")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":"no such key","code":"not_found"}`))
	}))
	defer srv.Close()
	var stderr bytes.Buffer
	code := run([]string{"get", "missing", "--endpoints", strings.TrimPrefix(srv.URL, "http://")}, &stderr)
	if code != 1 {
		t.Fatalf("exit code %d, want 1; stderr %q", code, stderr.String())
	}
	if got := stderr.String(); !strings.HasPrefix(got, "raftkv: 404 not_found") || strings.Count(got, "raftkv:") != 1 ||
		strings.Count(got, "\n") != 1 {
		t.Fatalf("stderr %q, want one line \"raftkv: 404 not_found: ...\"", got)
	}

	// A usage error, which does not come from the client, is named once too.
	stderr.Reset()
	if code := run([]string{"get"}, &stderr); code != 2 || !strings.HasPrefix(stderr.String(), "raftkv: ") ||
		strings.Count(stderr.String(), "raftkv:") != 1 {
		t.Fatalf("usage error: exit %d, stderr %q", code, stderr.String())
	}
}
