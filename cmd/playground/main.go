//go:build js && wasm

// Command playground is the Raft playground's WebAssembly module: the
// simulator's cluster (sim.Playground: the real raft core, driver and kv
// state machine) in the browser, driven in virtual time by the page in
// playground/web. It installs window.raftkvPlayground:
//
//	reset(options)  start a cluster (sim.PlaygroundOptions, as an object or JSON)
//	state()         the cluster as JSON (sim.PlaygroundState)
//	step(n)         play n events; run(ticks): advance virtual time
//	act(action)     apply a sim.Action (object or JSON)
//	actions()       the actions applied so far, as JSON
//	scenes(seed)    the scenes, as JSON
//	mutations()     the core's named bugs the what-if menu offers, as JSON
//
// Every call returns null on success or an error message; state, actions,
// scenes and mutations return JSON text. Build: make playground (with the
// mutation tag, so that the what-if menu can put a named bug of the core in
// force; without it the menu offers none).
package main

import (
	"encoding/json"
	"fmt"
	"syscall/js"

	"github.com/raftkv/raftkv/sim"
)

var current *sim.Playground

func main() {
	api := map[string]any{
		"reset":     js.FuncOf(reset),
		"state":     js.FuncOf(state),
		"step":      js.FuncOf(step),
		"run":       js.FuncOf(run),
		"act":       js.FuncOf(act),
		"actions":   js.FuncOf(actions),
		"scenes":    js.FuncOf(scenes),
		"mutations": js.FuncOf(mutations),
	}
	js.Global().Set("raftkvPlayground", js.ValueOf(api))
	if ready := js.Global().Get("raftkvPlaygroundReady"); ready.Type() == js.TypeFunction {
		ready.Invoke()
	}
	select {} // the exported functions run on this program's goroutines
}

// jsonArg reads args[0] as JSON: a string is taken as is, an object is
// stringified.
func jsonArg(args []js.Value, v any) error {
	if len(args) == 0 {
		return fmt.Errorf("missing argument")
	}
	text := args[0]
	if text.Type() != js.TypeString {
		text = js.Global().Get("JSON").Call("stringify", text)
	}
	return json.Unmarshal([]byte(text.String()), v)
}

func result(err error) any {
	if err != nil {
		return err.Error()
	}
	return nil
}

func reset(_ js.Value, args []js.Value) any {
	var opt sim.PlaygroundOptions
	if err := jsonArg(args, &opt); err != nil {
		return "reset: " + err.Error()
	}
	p, err := sim.NewPlayground(opt)
	if err != nil {
		return err.Error()
	}
	current = p
	return nil
}

func started() error {
	if current == nil {
		return fmt.Errorf("playground: call reset first")
	}
	return nil
}

func state(js.Value, []js.Value) any {
	if err := started(); err != nil {
		return nil
	}
	b, err := json.Marshal(current.State())
	if err != nil {
		return nil
	}
	return string(b)
}

func intArg(args []js.Value) int {
	if len(args) == 0 || args[0].Type() != js.TypeNumber {
		return 1
	}
	return args[0].Int()
}

func step(_ js.Value, args []js.Value) any {
	if err := started(); err != nil {
		return err.Error()
	}
	return result(current.Step(intArg(args)))
}

func run(_ js.Value, args []js.Value) any {
	if err := started(); err != nil {
		return err.Error()
	}
	return result(current.Run(intArg(args)))
}

func act(_ js.Value, args []js.Value) any {
	if err := started(); err != nil {
		return err.Error()
	}
	var a sim.Action
	if err := jsonArg(args, &a); err != nil {
		return "act: " + err.Error()
	}
	return result(current.Act(a))
}

func actions(js.Value, []js.Value) any {
	if started() != nil {
		return "[]"
	}
	b, _ := json.Marshal(current.Actions())
	return string(b)
}

func scenes(_ js.Value, args []js.Value) any {
	seed := uint64(1)
	if len(args) > 0 && args[0].Type() == js.TypeNumber {
		seed = uint64(args[0].Float())
	}
	b, _ := json.Marshal(sim.PlaygroundScenes(seed))
	return string(b)
}

func mutations(js.Value, []js.Value) any {
	b, _ := json.Marshal(sim.PlaygroundMutations())
	return string(b)
}
