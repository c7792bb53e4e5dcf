// Package playground holds the Raft playground's page: the static files in
// web/ (HTML, CSS and a little plain JavaScript that draws) and, once built,
// the WebAssembly module of cmd/playground that runs the simulator's
// cluster (sim.Playground) in the browser.
//
// The module is generated, not committed: `make playground` builds
// web/raftkv.wasm and copies Go's wasm_exec.js beside it (both ignored by
// git), then writes the whole folder to bin/playground for any static host.
// Files embeds web/ as it is when the binary is built, so a server built by
// `make build` serves a working playground at /ui/playground/; one built
// without the module serves the page, which says how to build it.
//
// Nothing here is mutable after init; Files is safe for concurrent use.
package playground

import (
	"embed"
	"io/fs"
)

// ModuleName is the WebAssembly module's file name in the folder.
const ModuleName = "raftkv.wasm"

//go:embed web
var web embed.FS

// Files returns the page's folder as built into this binary.
func Files() fs.FS {
	sub, err := fs.Sub(web, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}

// HasModule reports whether the WebAssembly module was built into this
// binary.
func HasModule() bool {
	_, err := fs.Stat(Files(), ModuleName)
	return err == nil
}
