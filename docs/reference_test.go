package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// references are the documents that name flags, endpoints, error codes and
// metrics, checked against the code. Chinese editions are checked when they
// exist.
var references = []string{
	"docs/api.md", "docs/api.zh-CN.md",
	"docs/operations.md", "docs/operations.zh-CN.md",
}

// mentions are documents held to the first half of the check only: what
// they name must exist, but they need not name everything.
var mentions = []string{
	"README.md", "README.zh-CN.md",
	"docs/guide.md", "docs/guide.zh-CN.md",
	"docs/lab.md", "docs/lab.zh-CN.md",
}

// codeFacts is what the code defines.
type codeFacts struct {
	flags    map[string]bool // long flag names of every raftkv command
	routes   map[string]bool // exact paths the server routes
	prefixes []string        // path prefixes the server routes (keys, members, ...)
	codes    map[string]bool // error codes of package api
	metrics  map[string]bool // metric names the server exports
}

// goSources returns the non-test Go files of a directory, from the root.
func goSources(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = string(b)
	}
	if len(out) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return out
}

var (
	flagDefRE   = regexp.MustCompile(`\w+VarP?\(&[\w.]+, "([a-z][a-z0-9-]*)"`)
	pathConstRE = regexp.MustCompile(`(?m)^\s*(?:const\s+)?(Path\w*)\s*=\s*"(/[^"]*)"`)
	prefixRE    = regexp.MustCompile(`strings\.HasPrefix\(path, ([^)]+)\)`)
	exactRE     = regexp.MustCompile(`path == ([\w.]+)`)
	codeConstRE = regexp.MustCompile(`(?m)^\s*Code\w+\s*=\s*"([a-z_]+)"`)
	metricDefRE = regexp.MustCompile(`"(raftkv_[a-z_]+)"`)
)

// readCode gathers the facts from cmd/raftkv, api and server.
func readCode(t *testing.T) codeFacts {
	t.Helper()
	f := codeFacts{flags: map[string]bool{"help": true}, routes: map[string]bool{},
		codes: map[string]bool{}, metrics: map[string]bool{}}
	for _, src := range goSources(t, "cmd/raftkv") {
		for _, m := range flagDefRE.FindAllStringSubmatch(src, -1) {
			f.flags[m[1]] = true
		}
	}
	consts := map[string]string{}
	api, server := goSources(t, "api"), goSources(t, "server")
	for pkg, files := range map[string]map[string]string{"api": api, "server": server} {
		for _, src := range files {
			for _, m := range pathConstRE.FindAllStringSubmatch(src, -1) {
				consts[m[1]] = m[2]
				consts[pkg+"."+m[1]] = m[2]
			}
		}
	}
	resolve := func(expr string) string {
		var b strings.Builder
		for _, part := range strings.Split(expr, "+") {
			part = strings.TrimSpace(part)
			if strings.HasPrefix(part, `"`) {
				b.WriteString(strings.Trim(part, `"`))
				continue
			}
			v, ok := consts[part]
			if !ok {
				t.Fatalf("server routes on %s, which is not a Path constant of api or server", part)
			}
			b.WriteString(v)
		}
		return b.String()
	}
	routing := server["server.go"]
	for _, m := range exactRE.FindAllStringSubmatch(routing, -1) {
		if _, ok := consts[m[1]]; ok {
			f.routes[resolve(m[1])] = true
		}
	}
	for _, m := range prefixRE.FindAllStringSubmatch(routing, -1) {
		f.prefixes = append(f.prefixes, resolve(m[1]))
	}
	if len(f.routes) < 10 || len(f.prefixes) < 2 {
		t.Fatalf("found only routes %v and prefixes %v in server/server.go: has routing moved?", f.routes, f.prefixes)
	}
	for _, m := range codeConstRE.FindAllStringSubmatch(api["api.go"], -1) {
		f.codes[m[1]] = true
	}
	for _, src := range server {
		for _, m := range metricDefRE.FindAllStringSubmatch(src, -1) {
			f.metrics[m[1]] = true
		}
	}
	if len(f.flags) < 20 || len(f.codes) < 10 || len(f.metrics) < 10 {
		t.Fatalf("found only %d flags, %d codes, %d metrics in the code", len(f.flags), len(f.codes), len(f.metrics))
	}
	return f
}

// docFacts is what a document names.
type docFacts struct {
	flags, paths, codes, metrics []string
}

var (
	codeSpanRE  = regexp.MustCompile("`([^`]+)`")
	docFlagRE   = regexp.MustCompile(`(?:^|[\s\x60(])--([a-z][a-z0-9-]*)`)
	docPathRE   = regexp.MustCompile(`(?:^|[\s\x60(])(/(?:v1|debug|healthz|readyz|metrics|ui)\b[^\s\x60?"),\[]*)`)
	statusRowRE = regexp.MustCompile(`^\|\s*[1-5]\d\d\s*\|`)
	statusRefRE = regexp.MustCompile("\\b[2-5]\\d\\d `?([a-z]+(?:_[a-z]+)+)`?")
	docMetricRE = regexp.MustCompile(`raftkv_[a-z_]+`)
)

// readDocFacts extracts what a Markdown document names: flags written
// --name (in prose, or on raftkv command lines in code blocks), API paths,
// error codes (in the Errors table, or after a status such as 503), and
// metric names.
func readDocFacts(text string) docFacts {
	var d docFacts
	fenced := false
	var logical []string // lines of code blocks joined across backslashes
	pending := ""
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			if strings.HasSuffix(line, `\`) {
				pending += strings.TrimSuffix(line, `\`) + " "
				continue
			}
			logical = append(logical, pending+line)
			pending = ""
			continue
		}
		for _, m := range codeSpanRE.FindAllStringSubmatch(line, -1) {
			for _, f := range docFlagRE.FindAllStringSubmatch(" "+m[1], -1) {
				d.flags = append(d.flags, f[1])
			}
			for _, p := range docPathRE.FindAllStringSubmatch(" "+m[1], -1) {
				d.paths = append(d.paths, p[1])
			}
			if statusRowRE.MatchString(line) && regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`).MatchString(m[1]) {
				d.codes = append(d.codes, m[1])
			}
		}
		for _, m := range statusRefRE.FindAllStringSubmatch(line, -1) {
			d.codes = append(d.codes, m[1])
		}
		d.metrics = append(d.metrics, docMetricRE.FindAllString(line, -1)...)
	}
	for _, line := range logical {
		d.metrics = append(d.metrics, docMetricRE.FindAllString(line, -1)...)
		if !regexp.MustCompile(`(^|[\s/])raftkv\s`).MatchString(line) {
			continue // another program's command line (openssl, docker)
		}
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		for _, f := range docFlagRE.FindAllStringSubmatch(line, -1) {
			d.flags = append(d.flags, f[1])
		}
	}
	return d
}

// metricBase strips what a query adds to an exported name.
func metricBase(name string, known map[string]bool) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && known[base] {
			return base
		}
	}
	return name
}

// routed reports whether the server answers a documented path.
func (f codeFacts) routed(path string) bool {
	path = strings.TrimRight(path, ".:;")
	if group, ok := strings.CutSuffix(path, "*"); ok {
		// A family of endpoints (/v1/debug/*): some route must be in it.
		for r := range f.routes {
			if strings.HasPrefix(r, group) {
				return true
			}
		}
		return false
	}
	if f.routes[path] || f.routes[strings.TrimSuffix(path, "/")] {
		return true
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(path, p) || path+"/" == p {
			return true
		}
	}
	return false
}

// TestReferenceMatchesCode shows that docs/api.md and docs/operations.md
// (and their Chinese editions, the READMEs, the guides and the lab) name
// only flags, endpoints, error codes and metrics that exist, and that every
// flag, endpoint and error code the code defines is documented in api.md or
// operations.md, and every exported metric in operations.md.
func TestReferenceMatchesCode(t *testing.T) {
	code := readCode(t)
	documented := docFacts{}
	var metricsDoc []string
	for _, rel := range slices.Concat(references, mentions) {
		text, ok := readDoc(t, rel, strings.Contains(rel, ".zh-CN."))
		if !ok {
			t.Logf("%s does not exist yet; not checked", rel)
			continue
		}
		d := readDocFacts(text)
		t.Logf("%s: %d flags, %d paths, %d error codes, %d metrics named", rel,
			len(d.flags), len(d.paths), len(d.codes), len(d.metrics))
		for _, f := range d.flags {
			if !code.flags[f] {
				t.Errorf("%s names --%s, which no raftkv command defines", rel, f)
			}
		}
		for _, p := range d.paths {
			if !code.routed(p) {
				t.Errorf("%s names %s, which the server does not route", rel, p)
			}
		}
		for _, c := range d.codes {
			if !code.codes[c] {
				t.Errorf("%s names the error code %s, which package api does not define", rel, c)
			}
		}
		for _, m := range d.metrics {
			if !code.metrics[metricBase(m, code.metrics)] {
				t.Errorf("%s names the metric %s, which the server does not export", rel, m)
			}
		}
		if strings.Contains(rel, ".zh-CN.") || slices.Contains(mentions, rel) {
			continue // the English references are the ones held to coverage
		}
		documented.flags = append(documented.flags, d.flags...)
		documented.paths = append(documented.paths, d.paths...)
		documented.codes = append(documented.codes, d.codes...)
		if rel == "docs/operations.md" {
			metricsDoc = d.metrics
		}
	}
	for f := range code.flags {
		if f != "help" && !slices.Contains(documented.flags, f) {
			t.Errorf("the flag --%s is documented in neither docs/api.md nor docs/operations.md", f)
		}
	}
	for _, r := range append(mapKeys(code.routes), code.prefixes...) {
		found := false
		for _, p := range documented.paths {
			if p == r || strings.HasPrefix(p, r) || p == r+"/" {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("the endpoint %s is documented in neither docs/api.md nor docs/operations.md", r)
		}
	}
	for c := range code.codes {
		if !slices.Contains(documented.codes, c) {
			t.Errorf("the error code %s is not in docs/api.md's Errors table", c)
		}
	}
	for m := range code.metrics {
		if !slices.ContainsFunc(metricsDoc, func(d string) bool { return metricBase(d, code.metrics) == m }) {
			t.Errorf("the metric %s is not named in docs/operations.md", m)
		}
	}
}

func mapKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestReferenceCheckCatchesMistakes shows that the reference check can
// tell: a misspelt flag, an unknown path, an unknown code and an unknown
// metric are found, and a flag on another program's command line is not
// taken for raftkv's.
func TestReferenceCheckCatchesMistakes(t *testing.T) {
	code := readCode(t)
	d := readDocFacts("Use `--data-dirr` and `GET /v1/nosuch`.\n\n" +
		"| 503 | `no_leaderr` | x |\n\nAlert on `raftkv_raft_nosuch_total`; a 409 change_in_progres.\n\n" +
		"```sh\ndocker compose up -d --build\nraftkv server \\\n  --id 1 --data-dir d # --not-a-flag\n```\n")
	if !slices.Equal(d.flags, []string{"data-dirr", "id", "data-dir"}) {
		t.Errorf("flags %q, want data-dirr, id, data-dir (not docker's --build, not a comment)", d.flags)
	}
	if code.flags["data-dirr"] || !code.flags["data-dir"] {
		t.Error("flag lookup wrong")
	}
	if len(d.paths) != 1 || code.routed(d.paths[0]) {
		t.Errorf("paths %q: /v1/nosuch should be found and not routed", d.paths)
	}
	for _, p := range []string{"/v1/kv/a//b", "/v1/cluster/members/4/promote", "/ui/", "/metrics", "/debug/pprof/"} {
		if !code.routed(p) {
			t.Errorf("%s is routed by the server but the check says it is not", p)
		}
	}
	if !slices.Equal(d.codes, []string{"no_leaderr", "change_in_progres"}) {
		t.Errorf("codes %q, want the two misspelt ones", d.codes)
	}
	for _, c := range d.codes {
		if code.codes[c] {
			t.Errorf("code %s taken as defined", c)
		}
	}
	if len(d.metrics) != 1 || code.metrics[metricBase(d.metrics[0], code.metrics)] {
		t.Errorf("metrics %q: raftkv_raft_nosuch_total should be found and unknown", d.metrics)
	}
	if metricBase("raftkv_wal_fsync_duration_seconds_bucket", code.metrics) != "raftkv_wal_fsync_duration_seconds" {
		t.Error("a histogram's _bucket series is not traced to its metric")
	}
}
