package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/raftkv/raftkv/playground"
)

// PathPlayground is where every member serves the Raft playground: the
// page of package playground, with the WebAssembly module when the binary
// was built with it (make build). The page runs the simulator in the
// browser; the member serves files only.
const PathPlayground = PathUI + "/playground"

// playgroundFiles is the playground's folder, read once: each file's
// bytes, an ETag (browsers revalidate the 5 MB module instead of fetching
// it again) and, where make playground wrote one (name.gz), its gzip copy,
// about a quarter of the module's size.
type playgroundFiles struct {
	once  sync.Once
	files map[string]playgroundFile
}

type playgroundFile struct {
	data, gz []byte
	etag     string
}

var playgroundAssets playgroundFiles

func (p *playgroundFiles) load() map[string]playgroundFile {
	p.once.Do(func() {
		p.files = map[string]playgroundFile{}
		root := playground.Files()
		_ = fs.WalkDir(root, ".", func(name string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := fs.ReadFile(root, name)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			f := playgroundFile{data: data, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
			if gz, err := fs.ReadFile(root, name+".gz"); err == nil {
				f.gz = gz
			}
			p.files[name] = f
			return nil
		})
	})
	return p.files
}

func (s *Server) servePlayground(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == PathPlayground {
		http.Redirect(w, r, PathPlayground+"/", http.StatusMovedPermanently)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, PathPlayground+"/")
	if name == "" {
		name = "index.html"
	}
	f, ok := playgroundAssets.load()[name]
	if !ok {
		msg := "no such file in the playground"
		if name == playground.ModuleName {
			msg = "this binary was built without the playground's WebAssembly module: run `make build` (or `make playground`, then rebuild)"
		}
		http.Error(w, msg, http.StatusNotFound)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", f.etag)
	data := f.data
	if f.gz != nil {
		w.Header().Set("Vary", "Accept-Encoding")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			data = f.gz
		}
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
}
