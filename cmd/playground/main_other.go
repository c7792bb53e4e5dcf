//go:build !(js && wasm)

package main

import (
	"fmt"
	"os"
)

// Built for anything but the browser, the command says how to build it.
func main() {
	fmt.Fprintln(os.Stderr, "playground: a WebAssembly module; build it with `make playground` (GOOS=js GOARCH=wasm)")
	os.Exit(2)
}
