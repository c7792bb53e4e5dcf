package server

import (
	"net/http"
	"net/http/pprof"
	"strings"
)

// servePprof serves Go's profiler (only with Config.EnablePprof): the
// handlers are mounted here rather than on http.DefaultServeMux so that
// nothing is exposed unless asked for.
func servePprof(w http.ResponseWriter, r *http.Request) {
	switch name := strings.TrimPrefix(r.URL.Path, "/debug/pprof/"); name {
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	case "":
		pprof.Index(w, r)
	default:
		pprof.Handler(name).ServeHTTP(w, r)
	}
}
