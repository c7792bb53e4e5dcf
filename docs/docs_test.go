package docs

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// repoRoot is the repository root, seen from this package's directory.
const repoRoot = ".."

// guides are the documents whose links and symbols are checked, as paths
// from the repository root.
var guides = []string{"docs/guide.md", "docs/guide.zh-CN.md"}

// readmes are checked for links that resolve (their symbols too, if any).
var readmes = []string{"README.md", "README.zh-CN.md"}

// others are the rest of the documents whose links and symbols are
// checked.
var others = []string{
	"docs/lab.md", "docs/lab.zh-CN.md",
	"docs/api.md", "docs/api.zh-CN.md",
	"docs/operations.md", "docs/operations.zh-CN.md",
	"docs/playground.md", "docs/playground.zh-CN.md",
}

// editions pairs each English document with its Chinese edition.
var editions = [][2]string{
	{"README.md", "README.zh-CN.md"},
	{"docs/guide.md", "docs/guide.zh-CN.md"},
	{"docs/lab.md", "docs/lab.zh-CN.md"},
	{"docs/api.md", "docs/api.zh-CN.md"},
	{"docs/operations.md", "docs/operations.zh-CN.md"},
	{"docs/playground.md", "docs/playground.zh-CN.md"},
}

// uiAnchors are the sections the live view (/ui) links to, by role and
// topic. Both guides must define them.
var uiAnchors = []string{
	"terms-and-roles", "leader-election", "log-replication", "safety",
	"figure-8", "joint-consensus", "log-compaction", "client-interaction",
}

// link is one inline Markdown link.
type link struct {
	file   string // document, from the repository root
	line   int
	text   string
	target string
}

func (l link) String() string {
	return fmt.Sprintf("%s:%d: [%s](%s)", l.file, l.line, l.text, l.target)
}

var (
	linkRE   = regexp.MustCompile(`\[([^\[\]]*)\]\(([^)\s]+)\)`)
	anchorRE = regexp.MustCompile(`<a\s+(?:id|name)="([^"]+)"`)
	// symbolRE is the form of a link text that names Go code: `name`,
	// `Type.name`, `(*Type).name` or `pkg.Name`, optionally followed by ().
	symbolRE = regexp.MustCompile(`^` + "`" + `(?:\(\*)?([A-Za-z_]\w*)\)?(?:\.([A-Za-z_]\w*))?(?:\(\))?` + "`" + `$`)
)

// readDoc returns a document's text, skipping the test if it does not exist
// yet only when missingOK.
func readDoc(t *testing.T, rel string, missingOK bool) (string, bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if errors.Is(err, os.ErrNotExist) && missingOK {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b), true
}

// parseLinks returns the inline links of a Markdown document, outside
// fenced code blocks and code spans that are not link texts.
func parseLinks(rel, text string) []link {
	var out []link
	fenced := false
	for i, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		for _, m := range linkRE.FindAllStringSubmatch(line, -1) {
			out = append(out, link{file: rel, line: i + 1, text: m[1], target: m[2]})
		}
	}
	return out
}

// anchors returns the fragment names a Markdown document defines: explicit
// <a id> tags and GitHub's slugs of its headings.
func anchors(text string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	fenced := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
		}
		if fenced {
			continue
		}
		for _, m := range anchorRE.FindAllStringSubmatch(line, -1) {
			out[m[1]] = true
		}
		if !strings.HasPrefix(line, "#") {
			continue
		}
		s := slug(strings.TrimLeft(line, "#"))
		if n := seen[s]; n > 0 {
			out[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

// slug is GitHub's heading anchor: lower case, punctuation dropped, spaces
// to hyphens.
func slug(heading string) string {
	heading = anchorRE.ReplaceAllString(heading, "")
	heading = regexp.MustCompile(`</?a[^>]*>`).ReplaceAllString(heading, "")
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

func isExternal(target string) bool {
	return strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") ||
		strings.HasPrefix(target, "mailto:")
}

// resolve returns the link's path from the repository root and its fragment.
func resolve(l link) (path, frag string) {
	path, frag, _ = strings.Cut(l.target, "#")
	if path == "" {
		return l.file, frag
	}
	return filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(l.file), path))), frag
}

// checkLink reports what is wrong with a relative link ("" if nothing).
func checkLink(l link) string {
	path, frag := resolve(l)
	if strings.HasPrefix(path, "../") {
		return "points outside the repository"
	}
	full := filepath.Join(repoRoot, path)
	st, err := os.Stat(full)
	if err != nil {
		return fmt.Sprintf("%s does not exist", path)
	}
	if frag != "" {
		if !strings.HasSuffix(path, ".md") {
			return "a fragment is only checkable on a Markdown file; link the file and name the symbol instead"
		}
		b, err := os.ReadFile(full)
		if err != nil {
			return err.Error()
		}
		if !anchors(string(b))[frag] {
			return fmt.Sprintf("%s has no heading or anchor %q", path, frag)
		}
	}
	if m := symbolRE.FindStringSubmatch(l.text); m != nil && (st.IsDir() || strings.HasSuffix(path, ".go")) {
		if !declared(full, st.IsDir(), m[1], m[2]) {
			return fmt.Sprintf("%s declares no %s", path, l.text)
		}
	}
	return ""
}

// declared reports whether the Go file (or any Go file of the directory)
// declares the symbol: name alone, or a method or field name of type (or
// a Name of package pkg) when second is set.
func declared(full string, isDir bool, first, second string) bool {
	files := []string{full}
	if isDir {
		files, _ = filepath.Glob(filepath.Join(full, "*.go"))
	}
	var pats []*regexp.Regexp
	if second == "" {
		pats = declPatterns(first)
	} else {
		q := regexp.QuoteMeta
		pats = []*regexp.Regexp{
			regexp.MustCompile(`(?m)^func \(\w+ \*?` + q(first) + `\) ` + q(second) + `[\[(]`),
		}
		// pkg.Name: the file's package is first.
		pkgLine := regexp.MustCompile(`(?m)^package ` + q(first) + `(_test)?$`)
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && pkgLine.Match(b) {
				pats = append(pats, declPatterns(second)...)
				break
			}
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, p := range pats {
			if p.Match(b) {
				return true
			}
		}
	}
	return false
}

func declPatterns(name string) []*regexp.Regexp {
	q := regexp.QuoteMeta(name)
	return []*regexp.Regexp{
		regexp.MustCompile(`(?m)^func (\([^)]*\) )?` + q + `[\[(]`),
		regexp.MustCompile(`(?m)^(type|var|const) ` + q + `\b`),
		// in a type, const or var block, or a struct field
		regexp.MustCompile(`(?m)^\t` + q + `(\s+[\w*\[\]]|\s*=)`),
	}
}

// TestGuideLinks shows that every relative link in the guides, the
// READMEs, the lab, api.md, operations.md and playground.md (and their
// Chinese editions) resolves: files and directories exist, anchors name headings,
// and backquoted identifiers are declared in the file they link to.
func TestGuideLinks(t *testing.T) {
	for _, rel := range slices.Concat(guides, readmes, others) {
		text, ok := readDoc(t, rel, slices.Contains(readmes, rel))
		if !ok {
			t.Logf("%s does not exist yet; not checked", rel)
			continue
		}
		// A README that was never committed is a draft being written: its
		// broken links are reported but do not fail the suite until the
		// first commit. The guides are always held to it.
		report := t.Errorf
		if slices.Contains(readmes, rel) && untracked(rel) {
			report = func(format string, args ...any) {
				t.Logf("draft, not yet committed: "+format, args...)
			}
		}
		n := 0
		for _, l := range parseLinks(rel, text) {
			if isExternal(l.target) {
				continue
			}
			n++
			if msg := checkLink(l); msg != "" {
				report("%s: %s", l, msg)
			}
		}
		t.Logf("%s: %d relative links checked", rel, n)
	}
}

// untracked reports whether git knows the file is not committed (false
// when git cannot tell: then the file is held to every check).
func untracked(rel string) bool {
	cmd := exec.Command("git", "ls-files", "--error-unmatch", "--", rel)
	cmd.Dir = repoRoot
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		return errors.As(err, &exit) && exit.ExitCode() == 1
	}
	return false
}

// TestGuideAnchorsAndTranscripts shows that both guides define the anchors
// the live view links to, and link every golden transcript.
func TestGuideAnchorsAndTranscripts(t *testing.T) {
	transcripts, err := filepath.Glob(filepath.Join(repoRoot, "docs", "transcripts", "*.txt"))
	if err != nil || len(transcripts) == 0 {
		t.Fatalf("no transcripts in docs/transcripts (%v)", err)
	}
	for _, rel := range guides {
		text, _ := readDoc(t, rel, false)
		defined := anchors(text)
		for _, a := range uiAnchors {
			if !defined[a] {
				t.Errorf("%s: no anchor #%s (the live view links to it)", rel, a)
			}
		}
		linked := map[string]bool{}
		for _, l := range parseLinks(rel, text) {
			p, _ := resolve(l)
			linked[p] = true
		}
		for _, f := range transcripts {
			p := "docs/transcripts/" + filepath.Base(f)
			if !linked[p] {
				t.Errorf("%s does not link the transcript %s", rel, p)
			}
		}
	}
}

// TestEditionsLinkTheSameTargets shows that each Chinese edition links the
// same files, anchors and symbols as its English original: a section added
// to one and not the other shows up here.
func TestEditionsLinkTheSameTargets(t *testing.T) {
	for _, pair := range editions {
		en, okEN := readDoc(t, pair[0], true)
		zh, okZH := readDoc(t, pair[1], true)
		if !okEN || !okZH {
			t.Logf("%s or %s does not exist yet; not compared", pair[0], pair[1])
			continue
		}
		targets := func(rel, text string) []string {
			var out []string
			for _, l := range parseLinks(rel, text) {
				p, frag := resolve(l)
				switch {
				case isExternal(l.target):
					p = l.target
				case p == rel:
					p = "" // a link within the document itself
				case p == pair[0] || p == pair[1]:
					continue // the link from one edition to the other
				}
				// A Chinese edition links the Chinese edition of a document
				// where there is one: count it as the same target.
				for _, other := range editions {
					if p == other[1] {
						p = other[0]
					}
				}
				// So does a localized image (name.zh-CN.svg for name.svg).
				if dir, base := path.Split(p); strings.Contains(base, ".zh-CN.") {
					p = dir + strings.Replace(base, ".zh-CN.", ".", 1)
				}
				key := p + "#" + frag
				if symbolRE.MatchString(l.text) {
					key += " " + l.text
				}
				out = append(out, key)
			}
			slices.Sort(out)
			return slices.Compact(out)
		}
		a, b := targets(pair[0], en), targets(pair[1], zh)
		for _, x := range a {
			if _, found := slices.BinarySearch(b, x); !found {
				t.Errorf("%s links %q, %s does not", pair[0], x, pair[1])
			}
		}
		for _, x := range b {
			if _, found := slices.BinarySearch(a, x); !found {
				t.Errorf("%s links %q, %s does not", pair[1], x, pair[0])
			}
		}
	}
}

// TestEditionsChangedTogether shows, from git history, that the Chinese
// editions are kept in step: the last commit that touched an English
// document must also touch its Chinese edition, or be older than the last
// commit that did. Outside a git checkout, in a shallow clone that lacks
// the history, or while a document is not committed yet, it skips (and
// fails when CI is set, except for an uncommitted document).
func TestEditionsChangedTogether(t *testing.T) {
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = repoRoot
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, errb.String())
		}
		return strings.TrimSpace(out.String()), nil
	}
	// Under CI a check that silently did not run would pass unseen.
	skip := func(why string) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatal("CI is set, but the check cannot run: " + why)
		}
		t.Skip(why)
	}
	if _, err := exec.LookPath("git"); err != nil {
		skip("git is not installed")
	}
	if _, err := git("rev-parse", "--git-dir"); err != nil {
		skip("not a git checkout")
	}
	if s, _ := git("rev-parse", "--is-shallow-repository"); s == "true" {
		// The check still runs, but only over the history that is here.
		t.Log("shallow clone: editions are compared over the commits present (git fetch --unshallow for all)")
	}
	for _, pair := range editions {
		en, err := git("log", "-1", "--format=%H", "--", pair[0])
		if err != nil {
			t.Fatal(err)
		}
		zh, err := git("log", "-1", "--format=%H", "--", pair[1])
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case en == "":
			t.Logf("%s is not committed yet", pair[0])
		case zh == "":
			t.Errorf("%s was committed (%.12s) but %s never was: translate it in the same commit",
				pair[0], en, pair[1])
		case en == zh:
		default:
			// en must be an ancestor of zh: the Chinese edition was
			// updated after (or with) the last English change.
			if _, err := git("merge-base", "--is-ancestor", en, zh); err != nil {
				t.Errorf("%s last changed in %.12s, after the last change to %s (%.12s): "+
					"update the Chinese edition (git log -p %.12s -- %s shows what changed)",
					pair[0], en, pair[1], zh, en, pair[0])
			}
		}
	}
}

// TestCheckLinkCatchesMistakes shows that the link check can tell: a
// misspelt symbol, a missing file, a missing anchor and a line anchor on a
// Go file are each reported, and correct links are not.
func TestCheckLinkCatchesMistakes(t *testing.T) {
	for _, c := range []struct {
		text, target string
		ok           bool
	}{
		{"`handleAppendEntries`", "../raft/follower.go", true},
		{"`Raft.handleAppendEntries`", "../raft/follower.go", true},
		{"`Progress.MaybeDecrTo`", "../raft/tracker/progress.go", true},
		{"`driver.PersistBatch`", "../driver/driver.go", true},
		{"`TestFigure8NotCommitted`", "../raft/figure8_test.go", true},
		{"`raftLog`", "../raft/log.go", true},
		{"`MaxPendingReads`", "../raft/read.go", true},
		{"guide", "guide.md#figure-8", true},
		{"`handleAppendEntry`", "../raft/follower.go", false},
		{"`handleAppendEntries`", "../raft/replication.go", false},
		{"`Progress.MaybeDecr`", "../raft/tracker/progress.go", false},
		{"file", "../raft/nosuch.go", false},
		{"guide", "guide.md#no-such-section", false},
		{"line", "../raft/follower.go#L10", false},
	} {
		msg := checkLink(link{file: "docs/guide.md", text: c.text, target: c.target})
		if (msg == "") != c.ok {
			t.Errorf("[%s](%s): got %q, want ok=%v", c.text, c.target, msg, c.ok)
		}
	}
}

// TestImagesAreWellFormed shows that the hand-written SVG diagrams in
// docs/img parse as XML with an <svg> root that has a viewBox (a browser
// shows a broken image otherwise), and that each Chinese image
// (name.zh-CN.svg) has its English original.
func TestImagesAreWellFormed(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot, "docs", "img", "*.svg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if msg := checkSVG(b); msg != "" {
			t.Errorf("%s: %s", f, msg)
		}
		if base := filepath.Base(f); strings.Contains(base, ".zh-CN.") {
			en := filepath.Join(filepath.Dir(f), strings.Replace(base, ".zh-CN.", ".", 1))
			if _, err := os.Stat(en); err != nil {
				t.Errorf("%s has no English original: %v", f, err)
			}
		}
	}
	t.Logf("%d SVG images checked", len(files))
}

// checkSVG reports what is wrong with an SVG document ("" if nothing).
func checkSVG(b []byte) string {
	d := xml.NewDecoder(bytes.NewReader(b))
	root := true
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Sprintf("not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && root {
			root = false
			if se.Name.Local != "svg" {
				return fmt.Sprintf("root element is <%s>, not <svg>", se.Name.Local)
			}
			if !slices.ContainsFunc(se.Attr, func(a xml.Attr) bool { return a.Name.Local == "viewBox" }) {
				return "the <svg> element has no viewBox"
			}
		}
	}
	if root {
		return "no root element"
	}
	return ""
}

// TestCheckSVGCatchesMistakes shows that checkSVG can tell.
func TestCheckSVGCatchesMistakes(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"><text>a</text></svg>`, ""},
		{`<svg viewBox="0 0 1 1"><text>a</svg>`, "not well-formed"},
		{`<svg viewBox="0 0 1 1"><text>a & b</text></svg>`, "not well-formed"},
		{`<svg width="1"></svg>`, "no viewBox"},
		{`<html></html>`, "not <svg>"},
		{``, "no root element"},
	} {
		got := checkSVG([]byte(c.doc))
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("checkSVG(%q) = %q, want %q", c.doc, got, c.want)
		}
	}
}

// TestDiagramsMatchTheirMermaid shows that each SVG diagram drawn above a
// Mermaid block in the guides carries every participant and message of
// that block, word for word: the Mermaid text is the source, and a change
// to it must be drawn too.
func TestDiagramsMatchTheirMermaid(t *testing.T) {
	imageRE := regexp.MustCompile(`^!\[[^\]]*\]\(([^)\s]+\.svg)\)$`)
	for _, rel := range guides {
		text, _ := readDoc(t, rel, false)
		lines := strings.Split(text, "\n")
		image := "" // the last SVG image above, not yet paired
		n := 0
		for i := 0; i < len(lines); i++ {
			if m := imageRE.FindStringSubmatch(strings.TrimSpace(lines[i])); m != nil {
				image = m[1]
				continue
			}
			if strings.TrimSpace(lines[i]) != "```mermaid" {
				continue
			}
			var labels []string
			for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
				l := strings.TrimSpace(lines[i])
				if p, ok := strings.CutPrefix(l, "participant "); ok {
					_, label, _ := strings.Cut(p, " as ")
					labels = append(labels, label)
				} else if _, msg, ok := strings.Cut(l, ": "); ok && strings.Contains(l, "->>") {
					labels = append(labels, msg)
				}
			}
			if image == "" {
				continue // a Mermaid block with no drawing
			}
			p, _ := resolve(link{file: rel, target: image})
			b, err := os.ReadFile(filepath.Join(repoRoot, p))
			if err != nil {
				t.Errorf("%s:%d: %v", rel, i+1, err)
				continue
			}
			drawn, err := svgText(b)
			if err != nil {
				t.Errorf("%s: %v", p, err)
				continue
			}
			for _, l := range labels {
				if !strings.Contains(drawn, squeeze(l)) {
					t.Errorf("%s does not draw %q from the Mermaid block in %s", p, l, rel)
				}
			}
			image = ""
			n++
		}
		t.Logf("%s: %d diagrams compared with their Mermaid text", rel, n)
	}
}

// svgText returns the text of an SVG's <text> elements in document order,
// without white space, so a label wrapped over two lines still matches.
func svgText(b []byte) (string, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	var out strings.Builder
	in := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return squeeze(out.String()), nil
		}
		if err != nil {
			return "", err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			in = tok.Name.Local == "text"
		case xml.EndElement:
			in = false
		case xml.CharData:
			if in {
				out.Write(tok)
			}
		}
	}
}

func squeeze(s string) string {
	return strings.Join(strings.Fields(s), "")
}
